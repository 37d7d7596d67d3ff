"""Every job shipped in jobs/ plans without loading a model, and runs end to end on its tiny counterpart
(the model swapped for tiny:<arch>, one prompt, one seed, two steps, a few sites, the paper's metric), so no job rots.

The tiny run also checks the plan against the sweep: the rows written equal the rows `loco plan` expects,
and `loco rank` ranks by the paper's metric without being told (CLIP for P1/P2, OCR F1 to B's text for P3).
"""

from pathlib import Path

import pytest
import yaml

from analysis.rank import RankError, rank
from harness.jobs import load_job
from harness.methods import get_method
from harness.models import registry
from harness.preflight import model_arch, plan
from harness.sites import TEXT_KINDS
from harness.sweep import run_sweep

JOBS = sorted((Path(__file__).parents[2] / "jobs").glob("*.yaml"))
PAPER_METRIC = {"locogen": "clip_t_prompt", "causal_trace": "clip_t_prompt", "attn_patch": "ocr_char_f1_target",
                "attn_contrib": "attn_contrib"}
STEPS = 2
PAPER_SCORER = {"locogen": "clip_score", "causal_trace": "clip_score", "attn_patch": "ocr"}  # attn_contrib: measured


def test_the_library_covers_the_three_papers():
    names = [p.stem for p in JOBS]
    for prefix, at_least in (("p1_", 2), ("p2_", 5), ("p3_", 4)):
        assert sum(n.startswith(prefix) for n in names) >= at_least, prefix


@pytest.mark.parametrize("path", JOBS, ids=[p.stem for p in JOBS])
def test_every_job_plans_without_loading_a_model(path):
    job = load_job(path)
    result = plan(job)
    per_prompt_seed = len(job.prompts) * len(job.seeds)
    assert result.expected_rows == per_prompt_seed * (result.variants + result.references) > 0
    assert result.generations == per_prompt_seed * get_method(job.method).generations(result.variants, result.references)
    assert result.denoising_steps >= result.generations
    assert result.gpu_hours > 0
    if not result.tiny:
        assert [c.role for c in result.checkpoints][0] == "model"
        assert all(c.where for c in result.checkpoints)
    metrics = set(job.metrics)
    if path.stem != "nightly":  # the nightly job runs on a tiny planted model: CLIP would read 0 everywhere
        assert PAPER_SCORER.get(job.method, "mse") in metrics | {"mse"}


def tiny_counterpart(path: Path):
    """The job on its tiny counterpart, cut to a few rows: one prompt and seed, few steps and sites."""
    job = load_job(path)
    variant, _ = model_arch(job.model)
    arch = registry.for_variant(variant)  # the architecture of a cost variant (sd21 -> sd15, sd35_large -> sd35)
    data = yaml.safe_load(path.read_text())
    data.update(model=f"tiny:{arch.name}", seeds=[job.seeds[0]], steps=STEPS,
                prompts=[r.model_dump(exclude_none=True) for r in job.prompts[:1]],
                metrics=list(dict.fromkeys([PAPER_SCORER.get(job.method, "mse"), "mse"])),
                step_start=[s for s in job.step_start if s < STEPS][:2] or [0],
                scorers={"clip": {"allow_random": True}}, executor={"backend": "local"})
    data.pop("height", None), data.pop("width", None)
    sel = job.sites
    index = sel.index if sel and sel.index else list(range(job.window + 1))
    if sel and sel.kind:
        data["sites"] = {"kind": sel.kind, "index": index}
    elif job.method != "causal_trace":  # the architecture's first text-reading kind
        data["sites"] = {"kind": next(k for k in TEXT_KINDS if k in arch.tiny_sites), "index": index}
    if job.stage_ii is not None:
        data["stage_ii"] = {"steps": 2}
    return load_job(data, base_dir=path.parent)


@pytest.mark.parametrize("path", JOBS, ids=[p.stem for p in JOBS])
def test_every_job_runs_on_its_tiny_counterpart_as_planned(path, tmp_path):
    job = tiny_counterpart(path)
    expected = plan(job).expected_rows
    summary = run_sweep(job, out=tmp_path / "run", backend="local")
    assert summary.rows_written == expected
    try:  # random CLIP and OCR on a tiny model's noise read 0 on every row: the ranking refuses, naming the metric
        metric = rank(tmp_path / "run", n_boot=20).metric
    except RankError as exc:
        metric = str(exc).partition(" is constant")[0]
    assert metric == PAPER_METRIC[job.method]
