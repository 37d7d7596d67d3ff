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

    @property
    def units_failed(self) -> int:
        return len(self.failures)


def run_sweep(job: JobSpec, out: str | Path | None = None, force: bool = False,
              backend: str | None = None, quiet: bool = False) -> SweepSummary:
    """Run `job` into `out` (default ``runs/<name>``), skipping units a previous run already finished.
    A unit that fails for a reason of its own lands in ``failures.parquet`` and the rest goes on; the
    returned summary lists those failures (the CLI exits non-zero for them)."""
    start = time.perf_counter()
    store = RunStore(Path(out) if out else Path("runs") / job.name)
    fingerprint = job.fingerprint()
    layout = {"prompts_per_unit": job.executor.prompts_per_unit,
              "variants_per_unit": job.executor.variants_per_unit}
    store.open(job, fingerprint, layout, force=force)
    failures = {f.unit_id: f for f in store.read_failures()}
    runner, manifest, written, progress = None, {}, 0, None

    def on_result(result) -> None:
        nonlocal written
        store.write_unit(job.method, result.unit_id, result.rows, result.images)
        written += len(result.rows)
        if failures.pop(result.unit_id, None):  # failed in an earlier run, fine now
            store.write_failures(list(failures.values()))
        progress.unit_done(len(result.rows))

    def on_failure(failure: UnitFailure) -> None:
        failures[failure.unit_id] = failure
        store.write_failures(list(failures.values()))
        progress.unit_failed(failure.unit_id, failure.error)

    try:
        runner = open_backend(job, backend)
        info = runner.describe()
        store.write_sites(info["sites"])
        units = plan_units(job, info["variants"])
        rows_per_unit = planned_rows(units, len(references(job)))
        done, damaged = store.verify_units(rows_per_unit)
        for problem in damaged:
            log.warning("re-running a damaged unit: %s", problem)
        todo = [u for u in units if u.unit_id not in done]
        failures = {k: f for k, f in failures.items() if k not in done}
        manifest = {
            "job_name": job.name, "job_fingerprint": fingerprint, "unit_layout": layout, "method": job.method,
            "backend": runner.name, "model": info["model"].__dict__, "generation": info["config"].__dict__,
            "mode": info["mode"], "batch_size": info["batch_size"], "variants": len(info["variants"]),
            "units_total": len(units), "units_done_before": len(units) - len(todo), "status": "running",
            "units_damaged": len(damaged), "unit_rows": rows_per_unit,
            "started_at": provenance.now(), **provenance.versions(),
        }
        store.write_manifest(manifest)
        with SweepProgress(job.name, len(todo), sum(rows_per_unit[u.unit_id] for u in todo), quiet) as progress:
            runner.run(todo, on_result, on_failure, progress)
    except BaseException:
        if manifest:  # finished units stay; the manifest says the run stopped short
            store.write_manifest({**manifest, "status": "stopped", "rows_written": written,
                                  "units_failed": len(failures)})
        raise
    finally:
        if runner is not None:
            runner.close()
    store.write_failures(list(failures.values()))  # always there after a sweep, empty when none failed
    seconds = time.perf_counter() - start
    store.write_manifest({**manifest, "status": "incomplete" if failures else "complete",
                          "finished_at": provenance.now(), "seconds": round(seconds, 3), "rows_written": written,
                          "units_failed": len(failures)})
    return SweepSummary(store.root, len(units), len(todo), len(units) - len(todo), written, seconds, len(damaged),
                        tuple(sorted(failures.values(), key=lambda f: f.unit_id)))
