"""Prompts against the encoders' 77-token limit (issue #20 item 7): a causal-tracing concept the encoder
never sees is refused when the job is validated — one line, no run directory, no retries — and a LocoGen
prompt or target the pipeline cuts is allowed but said."""

import logging

import pytest

from harness.errors import JobError
from harness.jobs import load_job
from harness.sweep import run_sweep

LONG = "a house " + "with a garden " * 30 + "in the style of van gogh"
SMALL = {"steps": 1, "height": 16, "width": 16, "metrics": ["mse"], "sites": "cross_attn#15"}


def test_a_concept_past_token_77_is_refused_before_any_unit_runs(tmp_path):
    job = load_job({"name": "long", "method": "causal_trace", **SMALL,
                    "prompts": [{"prompt": LONG, "concept": "van gogh"}]})
    with pytest.raises(JobError, match=r"prompts\[0\].concept: 'van gogh' falls past token 77 of the prompt"):
        run_sweep(job, out=tmp_path / "run", backend="local")
    assert not (tmp_path / "run").exists()


def test_a_locogen_target_longer_than_77_tokens_is_cut_and_said(tmp_path, caplog):
    job = load_job({"name": "long", "method": "locogen", **SMALL,
                    "prompts": [{"prompt": "a house", "target": LONG}]})
    with caplog.at_level(logging.WARNING, logger="loco"):
        summary = run_sweep(job, out=tmp_path / "run", backend="local")
    assert summary.rows_written == 3
    assert any("prompts[0].target: 100 tokens; text_encoder reads the first 77" in m for m in caplog.messages), caplog.messages
