"""DeepFloyd IF is scored as P3 scores it: stage I (the swept UNet) upsampled by stage II, metrics on the
upsampled image, the scored stage and the absent safety checker/watermarker recorded in every row."""

import numpy as np
import pytest
import torch

from harness.errors import JobError
from harness.jobs import load_job
from harness.models import load_model
from harness.run.plan import plan_units
from harness.run.worker import Worker
from harness.stage2 import StageII, attach
from harness.tiny import build_tiny_if_stage_ii

PROMPT = {"prompt": 'a sign that says "hello".', "target": 'a sign that says "world".'}


def if_job(**changes):
    return load_job({"name": "if2", "model": "tiny:if", "method": "attn_patch", "prompts": [PROMPT],
                     "sites": {"kind": "cross_attn", "index": "16-17"}, "steps": 3, "save_images": True,
                     "executor": {"backend": "local"}, **changes})


@pytest.fixture(scope="module")
def unit_result():
    job = if_job(stage_ii={"steps": 2})
    worker = Worker(job)
    return worker.run_unit(plan_units(job, worker.variants)[0])


def test_rows_are_scored_on_the_stage_ii_image_and_say_so(unit_result):
    rows = unit_result.rows
    assert {r["scored_stage"] for r in rows} == {"stage_ii"}
    assert {(r["height"], r["scored_height"], r["scored_width"]) for r in rows} == {(16, 64, 64)}
    assert all(image.shape == (64, 64, 3) for image in unit_result.images.values())
    assert {r["stage_ii_model"] for r in rows} == {"tiny"}
    assert {(r["safety_checker"], r["watermarker"]) for r in rows} == {("none", "none")}
    control = next(r for r in rows if r["role"] == "control")
    assert control["mse"] == 0 and any(r["mse"] > 0 for r in rows if r["role"] == "variant")


def test_stage_ii_noise_depends_on_the_seed_only_so_rows_stay_pixel_aligned():
    stage = StageII(build_tiny_if_stage_ii(), "tiny", "tiny", steps=2, guidance_scale=4.0, noise_level=250,
                    stage_i_size=16)
    images = torch.rand(1, 3, 16, 16).repeat(3, 1, 1, 1) * 2 - 1
    embeds = torch.randn(1, 77, 32).repeat(3, 1, 1)
    out = stage.upsample(images, embeds, torch.zeros_like(embeds), seeds=[5, 5, 6])
    assert out.shape == (3, 64, 64, 3)
    assert np.array_equal(out[0], out[1]) and not np.array_equal(out[0], out[2])


def test_text_metrics_on_stage_i_images_are_refused_unless_the_job_says_so():
    adapter = load_model("tiny:if", "cpu")
    with pytest.raises(JobError, match=r"stage_ii.model: 'none' scores IF's 64×64 stage-I images, where ocr"):
        attach(adapter, if_job(stage_ii={"model": "none"}, metrics=["mse", "ocr"]))
    attach(adapter, if_job(stage_ii={"model": "none", "text_metrics_on_stage_i": True}, metrics=["mse", "ocr"]))
    assert adapter.stage_ii is None
    assert adapter.scored_columns(adapter.defaults)["scored_stage"] == "stage_i"
    attach(adapter, if_job(stage_ii={"model": "none"}))  # pixel metrics on stage I: allowed
    assert adapter.stage_ii is None


def test_stage_ii_is_refused_on_other_architectures():
    adapter = load_model("tiny:sd15", "cpu")
    with pytest.raises(JobError, match="stage_ii: only DeepFloyd IF has a stage II; model 'tiny:sd15' is sd15"):
        attach(adapter, if_job(model="tiny:sd15", stage_ii={"steps": 2}))
    assert adapter.scored_columns(adapter.defaults)["scored_stage"] == "final"


def test_causal_tracing_upsamples_with_the_clean_prompt_so_a_full_restore_gives_the_clean_image():
    # P3 upsamples stage I with prompt A, without intervention. Restoring the state of stage I's last site
    # makes the corrupted row's stage-I image the clean one; stage II, conditioned on the clean prompt with
    # the seed's noise, must then give the clean row's upsampled image exactly. (Conditioned on the
    # corrupted text, as before, it did not.)
    from harness.generate import GenerationConfig, generate_rows
    from harness.interventions import Corruption, Restore, Sample

    adapter = load_model("tiny:if", "cpu")
    attach(adapter, if_job(stage_ii={"steps": 2}))
    last = [s for s in adapter.sites.sites if s.component == "unet"][-1]
    corrupt = Corruption("hello", 3.0)
    prompt = PROMPT["prompt"]
    rows = [Sample(prompt, 0), Sample(prompt, 0, corruption=corrupt),
            Sample(prompt, 0, corruption=corrupt, restores=(Restore(last.name, what="state"),))]
    clean, corrupted, restored = generate_rows(adapter, rows, GenerationConfig(3, 7.0, 16, 16), as_float=True)
    assert clean.shape == (64, 64, 3)
    assert np.abs(corrupted - clean).max() > 1e-3
    assert np.array_equal(restored, clean)
