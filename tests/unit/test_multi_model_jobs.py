"""A job with several models: `model: [a, b]` or `models:`, one single-model job (and run directory) per
model, fingerprints that make resume work per model, and the placement arithmetic of a wave."""

import pytest

from harness.errors import JobError
from harness.jobs import load_job, model_slug
from harness.multisweep import waves

BASE = {"name": "two", "method": "locogen",
        "prompts": [{"prompt": "a house in the style of van gogh", "target": "a house", "concept": "van gogh"}]}
PLANTED = "tiny:sd15+planted=cross_attn#8"


def test_a_model_list_is_the_models_key_and_model_names_the_first():
    job = load_job({**BASE, "model": ["tiny:sd15", PLANTED]})
    assert job.models == ["tiny:sd15", PLANTED] and job.model == "tiny:sd15" and job.multi_model
    assert load_job({**BASE, "models": ["tiny:sd15", PLANTED]}) == job


def test_each_model_gets_the_single_model_job_and_its_fingerprint():
    job = load_job({**BASE, "model": ["tiny:sd15", PLANTED]})
    alone = [load_job({**BASE, "model": m}) for m in ("tiny:sd15", PLANTED)]
    assert [j.model for j in job.per_model()] == ["tiny:sd15", PLANTED]
    assert [j.fingerprint() for j in job.per_model()] == [j.fingerprint() for j in alone]
    assert alone[0].fingerprint() != alone[1].fingerprint()
    assert not any(j.multi_model for j in job.per_model())


def test_a_one_model_list_is_that_model():
    job = load_job({**BASE, "models": [PLANTED]})
    assert not job.multi_model and job.per_model()[0].fingerprint() == load_job({**BASE, "model": PLANTED}).fingerprint()


@pytest.mark.parametrize("extra, message", [
    ({"model": "tiny:sd15", "models": ["tiny:sdxl"]}, "`model` and `models` both given"),
    ({"models": ["tiny:sd15", "tiny:sd15"]}, "'tiny:sd15' is listed twice"),
    ({"models": ["a/b:c", "a/b c"]}, "would share the run directory 'a-b-c'"),
    ({"models": []}, "expected at least one model"),
])
def test_model_list_mistakes_are_one_line(extra, message):
    with pytest.raises(JobError, match=message) as info:
        load_job({**BASE, **extra})
    assert "\n" not in str(info.value) and str(info.value).startswith("job: model")


def test_run_directories_are_named_without_hive_separators():
    assert model_slug("tiny:sd15") == "tiny-sd15"
    assert model_slug(PLANTED) == "tiny-sd15-planted-cross_attn-8"
    assert model_slug("/ckpt/2026-11-22/") == "ckpt-2026-11-22"


@pytest.mark.parametrize("count, resources, need, expected", [
    (2, {"GPU": 8, "CPU": 64}, {"GPU": 1}, 2),   # two models, eight GPUs: side by side, four GPUs each
    (3, {"GPU": 2, "CPU": 64}, {"GPU": 1}, 2),   # three models, two GPUs: two at a time
    (2, {"GPU": 0, "CPU": 2}, {"CPU": 1}, 2),    # CPU: one core per generation worker
    (2, {"GPU": 0, "CPU": 2}, {"CPU": 2}, 1),    # + a scorer each: one model at a time on two cores
    (2, {"GPU": 1, "CPU": 8}, {"GPU": 2}, 1),    # more than the cluster holds: one (refused later, by name)
])
def test_models_run_in_waves_of_what_the_cluster_holds(count, resources, need, expected):
    assert waves(count, resources, need) == expected
