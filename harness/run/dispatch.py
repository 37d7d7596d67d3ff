"""Dispatch: who runs the work units — this process or Ray actors — chosen in one place, `open_backend`.

The sweep driver (`harness.sweep`) sees one interface: `describe()` (site table, plan, model identity),
`run(units, on_result)` (each finished unit handed to `on_result` at once, so it is written at once) and
`close()`.

* ``backend: local`` runs one `Worker` in this process (debugging, benchmarks);
* ``backend: ray`` starts (or joins) a Ray cluster and runs one `Worker` actor per GPU — one actor per
  free core on a CPU-only machine for tiny models — each holding its pipeline for the whole sweep
  (`harness.run.ray_pool`).
"""

from __future__ import annotations

import sys

from harness.run.plan import WorkUnit
from harness.run.worker import Worker


def progress(total: int, desc: str):
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="unit", file=sys.stderr, disable=None, dynamic_ncols=True)


def run_local(job, units: list[WorkUnit], worker: Worker, on_result) -> None:
    with progress(len(units), job.name) as bar:
        for unit in units:
            on_result(worker.run_unit(unit))
            bar.update(1)


class LocalBackend:
    """One `Worker` in this process."""

    name = "local"

    def __init__(self, job):
        self.job = job
        self.worker = Worker(job)

    def describe(self) -> dict:
        return self.worker.describe()

    def run(self, units: list[WorkUnit], on_result) -> None:
        run_local(self.job, units, self.worker, on_result)

    def close(self) -> None:
        pass


def open_backend(job, backend: str | None = None):
    """The backend that runs `job`'s units: `backend` if given (the CLI's --local), else the job's
    `executor.backend`."""
    name = backend or job.executor.backend
    if name == "ray":
        from harness.run.ray_pool import RayBackend

        return RayBackend(job)
    return LocalBackend(job)
