"""Dispatch: who runs the work units — this process or Ray actors — chosen in one place, `open_backend`.

The sweep driver (`harness.sweep`) sees one interface: `describe()` (site table, plan, model identity),
`run(units, on_result, on_failure, progress)` (each finished unit handed to `on_result` at once, so it is
written at once; each unit that failed ``executor.max_retries + 1`` times for a reason of its own to
`on_failure`, and the sweep goes on) and `close()`.

* ``backend: local`` runs one `Worker` in this process (debugging, benchmarks);
* ``backend: ray`` starts (or joins) a Ray cluster and runs one `Worker` actor per GPU — one actor per
  free core on a CPU-only machine for tiny models — each holding its pipeline for the whole sweep
  (`harness.run.ray_pool`).
"""

from __future__ import annotations

import logging
from traceback import format_exception

from harness.errors import UserError
from harness.results import provenance
from harness.results.failures import UnitFailure, one_line
from harness.run.plan import WorkUnit
from harness.run.worker import Worker

log = logging.getLogger("loco")


def run_local(job, units: list[WorkUnit], worker: Worker, on_result, on_failure, progress=None) -> None:
    """Run `units` one after another in this process, each retried up to `executor.max_retries` times
    when it raises (a `UserError` fails at once: it would fail the same way), as the Ray pool does."""
    for unit in units:
        if progress is not None:
            progress.workers([("in-process", "busy", f"unit {unit.unit_id}")])
        for attempt in range(1, job.executor.max_retries + 2):
            try:
                result = worker.run_unit(unit)
            except Exception as exc:  # noqa: BLE001 - a unit's own failure; the sweep goes on
                if isinstance(exc, UserError) or attempt > job.executor.max_retries:
                    on_failure(UnitFailure(unit.unit_id, one_line(exc), attempt, type(exc).__name__,
                                           "in-process", provenance.now(), "".join(format_exception(exc))))
                    break
                log.warning("unit %s failed (%s); retrying", unit.unit_id, one_line(exc))
            else:
                on_result(result)
                break


class LocalBackend:
    """One `Worker` in this process."""

    name = "local"

    def __init__(self, job):
        self.job = job
        self.worker = Worker(job)

    def describe(self) -> dict:
        return self.worker.describe()

    def run(self, units: list[WorkUnit], on_result, on_failure, progress=None) -> None:
        run_local(self.job, units, self.worker, on_result, on_failure, progress)

    def close(self) -> None:
        pass


def open_backend(job, backend: str | None = None, log_dir=None):
    """The backend that runs `job`'s units: `backend` if given (the CLI's --local), else the job's
    `executor.backend`. `log_dir` (the run directory) receives Ray's own error messages."""
    name = backend or job.executor.backend
    if name == "ray":
        from harness.run.ray_pool import RayBackend

        return RayBackend(job, log_dir=log_dir)
    return LocalBackend(job)
