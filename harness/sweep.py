"""`loco sweep`: plan units → dispatch → collect rows → write, with resume.

    from harness.jobs import load_job
    from harness.sweep import run_sweep
    summary = run_sweep(load_job("jobs/locogen_tiny_sdxl.yaml"), out="runs/x")

The driver is the same for every backend (`harness.run.dispatch.open_backend` picks it): open the run
directory, ask the backend for the plan, skip the units already written, run the rest, writing each unit
as it finishes, and keep the manifest's `status` honest (running, stopped, complete).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

from harness.jobs import JobSpec
from harness.methods import references
from harness.results import provenance
from harness.results.store import RunStore
from harness.run.dispatch import open_backend
from harness.run.plan import plan_units, planned_rows

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


def run_sweep(job: JobSpec, out: str | Path | None = None, force: bool = False,
              backend: str | None = None) -> SweepSummary:
    """Run `job` into `out` (default ``runs/<name>``), skipping units a previous run already finished."""
    start = time.perf_counter()
    store = RunStore(Path(out) if out else Path("runs") / job.name)
    fingerprint = job.fingerprint()
    layout = {"prompts_per_unit": job.executor.prompts_per_unit,
              "variants_per_unit": job.executor.variants_per_unit}
    store.open(job, fingerprint, layout, force=force)
    runner, manifest, written = None, {}, 0

    def on_result(result) -> None:
        nonlocal written
        store.write_unit(job.method, result.unit_id, result.rows, result.images)
        written += len(result.rows)

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
        manifest = {
            "job_name": job.name, "job_fingerprint": fingerprint, "unit_layout": layout, "method": job.method,
            "backend": runner.name, "model": info["model"].__dict__, "generation": info["config"].__dict__,
            "mode": info["mode"], "batch_size": info["batch_size"], "variants": len(info["variants"]),
            "units_total": len(units), "units_done_before": len(units) - len(todo), "status": "running",
            "units_damaged": len(damaged), "unit_rows": rows_per_unit,
            "started_at": provenance.now(), **provenance.versions(),
        }
        store.write_manifest(manifest)
        runner.run(todo, on_result)
    except BaseException:
        if manifest:  # finished units stay; the manifest says the run stopped short
            store.write_manifest({**manifest, "status": "stopped", "rows_written": written})
        raise
    finally:
        if runner is not None:
            runner.close()
    seconds = time.perf_counter() - start
    store.write_manifest({**manifest, "status": "complete", "finished_at": provenance.now(),
                          "seconds": round(seconds, 3), "rows_written": written})
    return SweepSummary(store.root, len(units), len(todo), len(units) - len(todo), written, seconds, len(damaged))

