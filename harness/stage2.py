"""Compatibility shim: DeepFloyd IF's stage II moved into its architecture module,
`harness.models.deepfloyd_if`. Delete once no branch imports from here."""

from __future__ import annotations

from harness.models.deepfloyd_if import (
                                         DEFAULT_STAGE_II,
                                         TEXT_METRICS,
                                         TINY_STAGE_II,
                                         StageII,
                                         check_stage_i_metrics,
                                         load_stage_ii,
                                         stage_ii_id,
)

__all__ = ["DEFAULT_STAGE_II", "TEXT_METRICS", "TINY_STAGE_II", "StageII", "attach", "check_stage_i_metrics",
           "load_stage_ii", "stage_ii_id"]


def attach(adapter, job) -> None:
    """What the worker calls now: `adapter.prepare_for_job(job)` (IF: attach the job's stage II; any other
    architecture: refuse a `stage_ii` key)."""
    adapter.prepare_for_job(job)
