"""Scoring a generated unit: the model-backed scorers (CLIP, OCR, ...) and the unit they fill in."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from harness.errors import UserError
from harness.metrics import ScoreBatch, build_scorers, score_all


@dataclass
class UnitResult:
    """A generated unit: its rows, saved images, and — until a scorer actor has filled in the
    model-backed metrics — the batch those scorers still have to see."""

    unit_id: str
    rows: list[dict]
    images: dict[str, np.ndarray] = field(default_factory=dict)
    seconds: float = 0.0
    pending: ScoreBatch | None = None


def needs_scoring_actors(job) -> bool:
    """Whether the job's metrics include model-backed scorers (run in their own actors on Ray)."""
    return bool(build_scorers(job.metrics, instantiate=False, heavy=True))


def finish_scores(result: UnitResult, scorers: list) -> UnitResult:
    """Run `scorers` on the unit's pending batch and write their columns into its rows."""
    if result.pending is None or not scorers:
        result.pending = None
        return result
    t0 = time.perf_counter()
    columns = score_all(scorers, result.pending)
    per_row = (time.perf_counter() - t0) / max(1, len(result.rows))
    for i, row in enumerate(result.rows):
        row.update({k: v[i] for k, v in columns.items()})
        row["score_seconds"] = (row.get("score_seconds") or 0.0) + per_row
    result.pending = None
    return result


class ScoringWorker:
    """Holds the model-backed scorers (CLIP, OCR, ...) of a sweep; as a Ray actor it scores one unit
    while the generation workers already run the next. A user error while loading them (weights not
    found, a bad option) is kept and raised by the first call, as `RemoteWorker` does."""

    def __init__(self, job):
        self.error: Exception | None = None
        try:
            self.scorers = build_scorers(job.metrics, job.scorers, heavy=True)
        except UserError as exc:
            self.error = exc

    def ready(self) -> bool:
        if self.error:
            raise self.error
        return True

    def score(self, result: UnitResult) -> UnitResult:
        self.ready()
        return finish_scores(result, self.scorers)
