"""`loco sweep`: plan units → dispatch → collect rows → write, with resume.

    from harness.jobs import load_job
    from harness.sweep import run_sweep
    summary = run_sweep(load_job("jobs/locogen_tiny_sdxl.yaml"), out="runs/x")
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

from harness import provenance
from harness.execution import WorkUnit, Worker, init_ray, plan_units, ray_scorers, ray_workers, remote_call, run_local, run_ray
from harness.jobs import JobSpec
from harness.methods import references
from harness.storage import RunStore

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
    backend = backend or job.executor.backend
    workers, scorers, manifest, written = [], [], {}, 0

    def on_result(result) -> None:
        nonlocal written
        store.write_unit(job.method, result.unit_id, result.rows, result.images)
        written += len(result.rows)

    try:
        if backend == "ray":
            init_ray(job.executor.address)
            workers = ray_workers(job)
            scorers = ray_scorers(job)
            info = remote_call(workers[0].describe.remote())
            if scorers:
                remote_call([s.ready.remote() for s in scorers])
        else:
            worker = Worker(job)
            info = worker.describe()
        store.write_sites(info["sites"])
        units = plan_units(job, info["variants"])
        rows_per_unit = planned_rows(units, len(references(job)))
        done, damaged = store.verify_units(rows_per_unit)
        for problem in damaged:
            log.warning("re-running a damaged unit: %s", problem)
        todo = [u for u in units if u.unit_id not in done]
        manifest = {
            "job_name": job.name, "job_fingerprint": fingerprint, "unit_layout": layout, "method": job.method,
            "backend": backend, "model": info["model"].__dict__, "generation": info["config"].__dict__,
            "mode": info["mode"], "batch_size": info["batch_size"], "variants": len(info["variants"]),
            "units_total": len(units), "units_done_before": len(units) - len(todo), "status": "running",
            "units_damaged": len(damaged), "unit_rows": rows_per_unit,
            "started_at": provenance.now(), **provenance.versions(),
        }
        store.write_manifest(manifest)
        if backend == "ray":
            run_ray(job, todo, workers, on_result, scorers)
        else:
            run_local(job, todo, worker, on_result)
    except BaseException:
        if manifest:  # finished units stay; the manifest says the run stopped short
            store.write_manifest({**manifest, "status": "stopped", "rows_written": written})
        raise
    finally:
        if backend == "ray":
            import ray

            for actor in [*workers, *scorers]:
                ray.kill(actor)
    seconds = time.perf_counter() - start
    store.write_manifest({**manifest, "status": "complete", "finished_at": provenance.now(),
                          "seconds": round(seconds, 3), "rows_written": written})
    return SweepSummary(store.root, len(units), len(todo), len(units) - len(todo), written, seconds, len(damaged))


def planned_rows(units: list[WorkUnit], references: int) -> dict[str, int]:
    """Rows each unit writes: prompts × seeds × its variants, plus the reference rows (control, target,
    corrupted) in the first variant chunk of a prompt shard — what a whole part file must hold."""
    return {u.unit_id: len(u.prompt_indices) * len(u.seeds) * (len(u.variant_indices) + (references if u.variant_indices[0] == 0 else 0))
            for u in units}
