"""Real sweeps shared by the analysis integration tests, on the tiny SD1.x model whose text reaches the image
only through cross-attention layer 8 (so layer 8 is the known answer), with saved images: LocoGen on two
prompts, and causal tracing over the cross-attention layers on twelve (a third of them hold out the
threshold, and eight prompts leave the chosen state an interval that means something)."""

import pytest

from harness.jobs import load_job
from harness.sweep import run_sweep

PLANTED_JOB = {"model": "tiny:sd15+planted=cross_attn#8", "method": "locogen", "sites": {"kind": "cross_attn"},
               "prompts": [{"prompt": "a house in the style of van gogh", "target": "a red bicycle on a beach",
                            "attribute": "style", "concept": "van gogh"},
                           {"prompt": "a cat in the style of monet", "target": "a green car", "attribute": "style",
                            "concept": "monet"}],
               "seeds": [0], "metrics": ["mse", "ssim"], "steps": 2, "height": 32, "width": 32, "save_images": True}


@pytest.fixture(scope="session")
def planted_run(tmp_path_factory):
    job = load_job({"name": "planted-base", **PLANTED_JOB})
    return run_sweep(job, out=tmp_path_factory.mktemp("planted") / "base", backend="local").run_dir


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

