"""Real sweeps shared by the analysis integration tests, on the tiny SD1.x model whose text reaches the image
only through cross-attention layer 8 (so layer 8 is the known answer), with saved images: LocoGen on eight
prompts (two could not tell the planted layer from 0 after correcting for the 16 layers tried: t with one
degree of freedom), and causal tracing over the cross-attention layers on twelve (a third of them hold out
the threshold, and eight prompts leave the chosen state an interval that means something)."""

import pytest

from harness.jobs import load_job
from harness.sweep import run_sweep

TARGETS = ["a red bicycle on a beach", "a green car", "a bowl of soup", "a mountain lake"]
STYLED = [(o, a) for o in ("a house", "a cat", "a boat", "a tree") for a in ("van gogh", "monet")]
PLANTED_JOB = {"model": "tiny:sd15+planted=cross_attn#8", "method": "locogen", "sites": {"kind": "cross_attn"},
               "prompts": [{"prompt": f"{o} in the style of {a}", "target": TARGETS[i % 4], "attribute": "style",
                            "concept": a} for i, (o, a) in enumerate(STYLED)],
               "seeds": [0], "metrics": ["mse", "ssim"], "steps": 2, "height": 32, "width": 32, "save_images": True}


@pytest.fixture(scope="session")
def planted_run(tmp_path_factory):
    job = load_job({"name": "planted-base", **PLANTED_JOB})
    return run_sweep(job, out=tmp_path_factory.mktemp("planted") / "base", backend="local").run_dir


CONTRIB_JOB = {**PLANTED_JOB, "method": "attn_contrib", "save_images": False}  # the same prompts, measured


@pytest.fixture(scope="session")
def planted_contrib_run(tmp_path_factory):
    """attn_contrib on LocoGen's planted model and prompts: its sweep summary."""
    job = load_job({"name": "planted-contrib", **CONTRIB_JOB})
    return run_sweep(job, out=tmp_path_factory.mktemp("planted") / "contrib", backend="local")


OBJECTS = ["a house", "a cat", "a boat", "a tree", "a bridge", "a horse"]
ARTISTS = ["van gogh", "monet"]
TRACE_JOB = {"model": "tiny:sd15+planted=cross_attn#8", "method": "causal_trace", "sites": {"kind": "cross_attn"},
             "prompts": [{"prompt": f"{o} in the style of {a}", "attribute": "style", "concept": a}
                         for o in OBJECTS for a in ARTISTS],
             "seeds": [0], "metrics": ["mse"], "steps": 2, "height": 32, "width": 32, "save_images": True}


@pytest.fixture(scope="session")
def planted_trace_run(tmp_path_factory):
    job = load_job({"name": "planted-trace", **TRACE_JOB})
    return run_sweep(job, out=tmp_path_factory.mktemp("planted") / "trace", backend="local").run_dir



# Tracing's twelve prompts with LocoGen / patching targets: enough prompts that the planted layer's image
# distance is distinguishable from 0 after Holm over 16 layers at the default bootstrap (with eight it sits
# at the edge: t ≈ 4 on 7 degrees of freedom), for the agreement between localizers.
AGREE_JOB = {**TRACE_JOB, "method": "locogen", "metrics": ["mse"], "save_images": False,
             "prompts": [{**row, "target": TARGETS[i % 4]} for i, row in enumerate(TRACE_JOB["prompts"])]}


@pytest.fixture(scope="session")
def planted_agree_runs(tmp_path_factory):
    """attn_contrib and LocoGen on the planted model and `AGREE_JOB`'s prompts: method -> run directory."""
    root = tmp_path_factory.mktemp("planted-agree")
    return {method: run_sweep(load_job({**AGREE_JOB, "name": f"agree-{method}", "method": method}), out=root / method,
                              backend="local").run_dir for method in ("attn_contrib", "locogen")}
