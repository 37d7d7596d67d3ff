"""`loco sweep`: plan units → dispatch → collect rows → write, with resume.

    from harness.jobs import load_job
    from harness.sweep import run_sweep
    summary = run_sweep(load_job("jobs/locogen_tiny_sdxl.yaml"), out="runs/x")

The driver is the same for every backend (`harness.run.dispatch.open_backend` picks it): open the run
directory, ask the backend for the plan, verify the parts already written and skip the whole ones, run
the rest, writing each unit as it finishes and each unit that failed for good to `failures.parquet`,
and keep the manifest's `status` honest (running, stopped, incomplete — some units failed — or complete).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

from harness.jobs import JobSpec
from harness.methods import references
from harness.results import provenance
from harness.results.failures import UnitFailure
from harness.results.store import RunStore
from harness.run.dispatch import open_backend
from harness.run.plan import plan_units, planned_rows
from harness.run.progress import SweepProgress

log = logging.getLogger("loco")


@dataclass(frozen=True)
class SweepSummary:
    run_dir: Path
    units_total: int
    units_run: int
    units_skipped: int
    rows_written: int
    seconds: float
    units_repaired: int = 0  # finished parts found damaged on resume and run again
    failures: tuple[UnitFailure, ...] = ()  # units that failed for good (also in failures.parquet)
    model: str = ""  # the model swept (one run directory per model in a multi-model sweep)

    @property
    def units_failed(self) -> int:
        return len(self.failures)


class SweepRun:
    """One model's run directory through a sweep: `start` (open the directory, plan the units, verify the
    parts already written, write the manifest) → the backend runs `todo`, handing each unit to `on_result`
    or `on_failure` → `finish` (or `stop` on an interruption). `run_sweep` drives one; a multi-model sweep
    (`harness.multisweep`) drives one per model, side by side."""

    def __init__(self, job: JobSpec, out: str | Path | None = None, force: bool = False, group: str | None = None):
        self.job, self.force, self.group = job, force, group
        self.store = RunStore(Path(out) if out else Path("runs") / job.name)  # absolute: the cwd's, now
        self.fingerprint = job.fingerprint()
        self.layout = {"prompts_per_unit": job.executor.prompts_per_unit,
                       "variants_per_unit": job.executor.variants_per_unit}
        self.manifest: dict = {}
        self.failures: dict[str, UnitFailure] = {}
        self.units: list = []
        self.todo: list = []
        self.rows_per_unit: dict[str, int] = {}
        self.damaged: list = []
        self.written = 0
        self.progress: SweepProgress | None = None
        self.started = time.perf_counter()
        self.ended = False  # finished or stopped: the directory is released

    def open(self) -> None:
        """Claim the run directory for this job: its lock, and refused when it holds another job's
        results — before any model loads. Nothing is written until `plan` has the model's description."""
        self.store.open(self.job, self.fingerprint, self.layout, force=self.force)
        self.failures = {f.unit_id: f for f in self.store.read_failures()}

    def plan(self, runner) -> None:
        """Plan the units from the backend's description of the model, skip the whole parts, and write
        job.yaml, the site table and the manifest (status running)."""
        self.started = time.perf_counter()  # a model's time starts with its own backend (models run in waves)
        info = runner.describe()
        for warning in info.get("warnings", ()):  # found by the worker that loaded the model (it may be remote)
            log.warning("%s", warning)
        self.store.start()
        self.failures = {f.unit_id: f for f in self.store.read_failures()}  # none left after --force
        self.store.write_sites(info["sites"])
        self.units = plan_units(self.job, info["variants"])
        self.rows_per_unit = planned_rows(self.units, len(references(self.job)))
        done, self.damaged = self.store.verify_units(self.rows_per_unit)
        for problem in self.damaged:
            log.warning("re-running a damaged unit: %s", problem)
        self.todo = [u for u in self.units if u.unit_id not in done]
        self.failures = {k: f for k, f in self.failures.items() if k not in done}
        job = self.job
        self.manifest = {
            "job_name": job.name, "job_fingerprint": self.fingerprint, "unit_layout": self.layout,
            "method": job.method, "backend": runner.name, "model": info["model"].__dict__,
            "generation": info["config"].__dict__, "mode": info["mode"], "batch_size": info["batch_size"],
            "variants": len(info["variants"]), "units_total": len(self.units),
            "units_done_before": len(self.units) - len(self.todo), "status": "running",
            "units_damaged": len(self.damaged), "unit_rows": self.rows_per_unit,
            "started_at": provenance.now(), **provenance.versions(),
        }
        self.store.write_manifest(self.manifest)

    @property
    def todo_rows(self) -> int:
        return sum(self.rows_per_unit[u.unit_id] for u in self.todo)

    def on_result(self, result) -> None:
        self.store.write_unit(self.job.method, result.unit_id, result.rows, result.images)
        self.written += len(result.rows)
        if self.failures.pop(result.unit_id, None):  # failed in an earlier run, fine now
            self.store.write_failures(list(self.failures.values()))
        if self.progress is not None:
            self.progress.unit_done(len(result.rows), self.group)

    def on_failure(self, failure: UnitFailure) -> None:
        self.failures[failure.unit_id] = failure
        self.store.write_failures(list(self.failures.values()))
        if self.progress is not None:
            self.progress.unit_failed(failure.unit_id, failure.error, self.group)

    def stop(self) -> None:
        """Interrupted or crashed: finished units stay; the manifest says the run stopped short. Before
        anything was written (a bad site, a refused model): the directory is left as it was."""
        if self.ended:
            return
        self.ended = True
        if not self.manifest:
            self.store.abandon()
            return
        try:
            self.store.write_manifest({**self.manifest, "status": "stopped", "rows_written": self.written,
                                       "units_failed": len(self.failures)})
        except Exception as exc:  # noqa: BLE001 - the error that stopped the sweep is the one to report
            log.warning("could not mark %s stopped: %s", self.store.root, exc)
        finally:
            self.store.close()

    def finish(self) -> SweepSummary:
        self.ended = True
        try:
            self.store.write_failures(list(self.failures.values()))  # always there, empty when none failed
            seconds = time.perf_counter() - self.started
            self.store.write_manifest({**self.manifest, "status": "incomplete" if self.failures else "complete",
                                       "finished_at": provenance.now(), "seconds": round(seconds, 3),
                                       "rows_written": self.written, "units_failed": len(self.failures)})
        finally:
            self.store.close()
        return SweepSummary(self.store.root, len(self.units), len(self.todo), len(self.units) - len(self.todo),
                            self.written, seconds, len(self.damaged),
                            tuple(sorted(self.failures.values(), key=lambda f: f.unit_id)), self.job.model)


def run_sweep(job: JobSpec, out: str | Path | None = None, force: bool = False,
              backend: str | None = None, quiet: bool = False) -> SweepSummary:
    """Run `job` into `out` (default ``runs/<name>``), skipping units a previous run already finished.
    A unit that fails for a reason of its own lands in ``failures.parquet`` and the rest goes on; the
    returned summary lists those failures (the CLI exits non-zero for them). A job with several models
    is run by `harness.multisweep.run_multi_sweep` (one summary per model)."""
    if job.multi_model:
        raise ValueError("run_sweep runs one model; use harness.multisweep.run_multi_sweep for a job with models")
    job = job.per_model()[0]  # `models: [one]` is that one model's job
    sweep, runner = SweepRun(job, out, force), None
    sweep.open()
    try:
        runner = open_backend(job, backend, log_dir=sweep.store.root)
        sweep.plan(runner)
        with SweepProgress(job.name, len(sweep.todo), sweep.todo_rows, quiet) as sweep.progress:
            runner.run(sweep.todo, sweep.on_result, sweep.on_failure, sweep.progress)
        summary = sweep.finish()  # every unit accounted for: said before Ray stops, which an interrupt may cut
    except BaseException:
        sweep.stop()
        raise
    finally:
        if runner is not None:
            runner.close()
    return summary
