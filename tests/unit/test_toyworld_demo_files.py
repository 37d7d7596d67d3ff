"""The demo's shipped jobs and prompt files are valid and say what they mean: every job loads with the
probe metric, every prompt names its concept as the probes read it, every LocoGen/patching target
changes exactly the attribute the row is about, and the edit's evaluation sets are what their names say."""

import csv

import pytest

from harness.jobs import load_job
from harness.metrics.probe import probe_attribute
from harness.toyworld import world
from harness.toyworld.demo import DEMOS, HERE, SWEEPS, demo_jobs
from harness.toyworld.probes.labels import caption_labels


def rows(name):
    with (HERE / name).open(newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.mark.parametrize("job", SWEEPS.values())
def test_every_demo_job_loads_on_the_toyworld_model_and_is_scored_by_the_probes(job):
    spec = load_job(HERE / job)
    assert spec.model == "toyworld" and "probe" in spec.metrics
    assert {p.attribute for p in spec.prompts} <= {"color", "shape", "background", "text"}


@pytest.mark.parametrize("name", ["objects.csv", "words.csv", "dit/prompts.csv"])
def test_each_target_changes_only_the_rows_attribute_to_another_label(name):
    for row in rows(name):
        head = probe_attribute(row["attribute"])
        a, b = caption_labels(row["prompt"]), caption_labels(row["target"])
        assert set(a) == set(b) and a[head] != b[head], row
        assert {k: v for k, v in a.items() if k != head} == {k: v for k, v in b.items() if k != head}, row
        # the concept (what causal tracing corrupts) is the words naming that label: "red", "striped", "CAT"
        assert row["concept"] in row["prompt"]
        assert caption_labels(row["concept"] + " background")[head] == a[head], row


@pytest.mark.parametrize("name", ["objects.csv", "trace.csv", "dit/prompts.csv"])
def test_demo_scenes_come_from_the_training_split(name):
    train = set(world.object_combos("train"))
    for row in rows(name):
        if row["attribute"] == "text":
            continue
        for caption in (row["prompt"], row.get("target") or row["prompt"]):
            labels = caption_labels(caption)
            assert (labels["shape"], labels["color"], labels["background"]) in train, caption


def test_the_edit_evaluation_sets_red_prompts_to_move_and_other_colours_to_stay():
    sets = {}
    for row in rows("edit_eval.csv"):
        sets.setdefault(row["set"], []).append(caption_labels(row["prompt"])["color"])
    assert set(sets["efficacy"]) == set(sets["generalization"]) == {"red"}
    assert "red" not in sets["specificity"] and set(sets["specificity"]) == set(world.COLOR_NAMES) - {"red"}


def test_loco_demo_with_a_missing_model_is_one_line_and_exit_2_before_anything_runs(tmp_path, capsys):
    from harness.cli import main

    assert main(["demo", "--out", str(tmp_path / "demo"), "--model", str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"loco: error: model '{tmp_path / 'nope'}': no such directory"]
    assert not (tmp_path / "demo").exists()


def test_causal_tracing_has_a_validation_split_per_attribute_and_only_labels_a_corruption_can_remove():
    # 12 prompts per attribute: the threshold's validation split gets 4, the candidates are tested on 8.
    # Noising the word makes the model draw its default (yellow, a circle, a grid or dots: causal_trace.yaml),
    # so those labels are not traced; each other label has 4 prompts, and the concept is the word naming it.
    spec = load_job(HERE / "causal_trace.yaml")
    assert spec.noise_std == "subject" and spec.effective_branch == "both"
    by_attribute: dict[str, list[str]] = {}
    for row in rows("trace.csv"):
        head = probe_attribute(row["attribute"])
        label = caption_labels(row["prompt"])[head]
        assert caption_labels(row["concept"] + " background")[head] == label, row
        by_attribute.setdefault(row["attribute"], []).append(label)
    assert {a: sorted(set(labels)) for a, labels in by_attribute.items()} == {
        "color": ["blue", "green", "red"], "shape": ["cross", "square", "triangle"],
        "background": ["dots", "plain", "stripes"]}
    assert all(labels.count(label) == 4 for labels in by_attribute.values() for label in labels)
    assert len({r["prompt"] for r in rows("trace.csv")}) == 36


def test_the_dit_demo_runs_four_localizers_on_one_prompt_set_over_the_same_blocks():
    # Agreement (Kendall τ, top-K overlap) needs the same prompts and the same sites in every run: one prompt
    # file, and every intervention on single blocks' cross-attention (LocoGen at window 1).
    jobs, override = demo_jobs("toyworld-dit")
    assert override is None and jobs is DEMOS["toyworld-dit"]
    specs = {name: load_job(jobs.job(name)) for name in jobs.sweeps}
    assert {s.method for s in specs.values()} == {"locogen", "attn_patch", "causal_trace", "attn_contrib"}
    assert all(s.model == "toyworld-dit" and "probe" in s.metrics for s in specs.values())
    assert len({tuple(p.prompt for p in s.prompts) for s in specs.values()}) == 1
    assert specs["locogen"].window == 1
    assert {p.attribute for p in specs["locogen"].prompts} == {"color", "shape", "background", "text"}
    assert demo_jobs("random:sd15") == (DEMOS["toyworld"], "random:sd15")  # other models: the UNet's jobs
