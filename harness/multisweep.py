"""Several models in one sweep: the same job on a list of checkpoints (a nightly regression over the new
checkpoints, a method compared across SD1.5/SD2.1/SDXL), their actors side by side on the cluster.

    model: [tiny:sd15, /checkpoints/2026-11-22]     # or `models: [...]`
    # → RUN_ROOT/models.json, RUN_ROOT/tiny-sd15/, RUN_ROOT/checkpoints-2026-11-22/

Each model gets its own run directory under the run root (`harness.jobs.model_slug`), holding a complete
single-model run — its own job.yaml (with `model:` that model), plan, manifest, failures and Parquet parts —
so everything that reads a run (`loco rank`, `loco regress`, DuckDB) reads one model's, resume works per
model (a model whose units are all done is skipped; adding a model to the list re-runs nothing), and every
row carries its model's `model_id` and `model_fingerprint`.

Placement on Ray: the models run in *waves* of as many as the cluster holds at once — one GPU per model
(each model's generation actors pinned to GPUs of their own, `num_gpus`) or, on a CPU-only machine, one
core per generation worker plus one per scorer — and the cluster's GPUs/cores are divided between the
models of a wave (`RayBackend(budget=...)`). One event loop (`harness.run.ray_pool.run_groups`) feeds all
their pools, and the progress display shows a line per model and each model's workers by name. In-process
(``backend: local``) the models run one after another, one model in memory at a time.
"""

from __future__ import annotations

import json
from pathlib import Path

from harness.errors import UserError
from harness.jobs import JobSpec, model_slug
from harness.results.store import RunStore
from harness.run.progress import SweepProgress
from harness.sweep import SweepRun, SweepSummary

INDEX = "models.json"  # at the run root: which model is in which subdirectory


def model_dirs(job: JobSpec, root: Path) -> list[tuple[JobSpec, Path]]:
    """Each model's single-model job and its run directory under `root`."""
    return [(one, root / model_slug(one.model)) for one in job.per_model()]


def waves(count: int, resources: dict, per_model: dict) -> int:
    """How many models run at once: as many as the cluster's `resources` hold `per_model` needs (at least
    one: a model that needs more than the cluster has is refused by `ray_workers` with its own message)."""
    fits = [int(resources.get(k, 0) // v) for k, v in per_model.items() if v > 0]
    return max(1, min([count, *fits]))


def run_multi_sweep(job: JobSpec, out: str | Path | None = None, force: bool = False,
                    backend: str | None = None, quiet: bool = False) -> list[SweepSummary]:
    """Run every model of `job` into its own directory under `out` (default ``runs/<name>``); one summary
    per model, in the job's order."""
    root = Path(out) if out else Path("runs") / job.name
    if (root / "manifest.json").is_file():
        if not force:
            raise UserError(f"run directory '{root}' holds a single-model run; a multi-model sweep writes one "
                            "directory per model under its root: choose another --out or pass --force")
        RunStore(root).clear()  # --force: the single-model run goes, the models' directories take its place
    sweeps = [SweepRun(one, where, force, group=where.name) for one, where in model_dirs(job, root)]
    made_root = not root.exists()
    try:
        for sweep in sweeps:  # a directory of another job (or one in use) is refused before any model loads
            sweep.open()
        index = {"job_name": job.name, "models": [{"model": s.job.model, "dir": s.store.root.name} for s in sweeps]}
        if (backend or job.executor.backend) == "local":
            return [summary for sweep in sweeps
                    for summary in _run_wave([sweep], job, quiet, lambda one, label: _local(one), root, index)]
        return _run_on_ray(job, sweeps, quiet, root, index)
    except BaseException:
        for sweep in sweeps:  # models not reached keep their directories as they were
            sweep.stop()
        if made_root and root.is_dir() and not any(root.iterdir()):
            root.rmdir()
        raise


def _local(job: JobSpec):
    from harness.run.dispatch import LocalBackend

    return LocalBackend(job)


def _run_on_ray(job: JobSpec, sweeps: list[SweepRun], quiet: bool, root: Path, index: dict) -> list[SweepSummary]:
    import ray

    from harness.run.ray_pool import RayBackend, init_ray, ray_address
    from harness.run.scoring import needs_scoring_actors

    started = init_ray(ray_address(job))  # once for all models; each backend then joins it
    try:
        resources = ray.cluster_resources()
        gpus, cpus = int(resources.get("GPU", 0)), int(resources.get("CPU", 1))
        workers = 1 if job.executor.workers == "auto" else job.executor.workers
        need = {"GPU": workers} if gpus else {"CPU": workers + needs_scoring_actors(job)}
        size = waves(len(sweeps), {"GPU": gpus, "CPU": cpus}, need)
        budget = {"GPU": gpus // size, "CPU": max(1, cpus // size)}
        summaries = []
        for i in range(0, len(sweeps), size):
            summaries += _run_wave(sweeps[i:i + size], job, quiet,
                                   lambda one, label: RayBackend(one, budget, label, log_dir=root), root, index)
    finally:
        if started and ray.is_initialized():
            ray.shutdown()
    return summaries


def _run_wave(sweeps: list[SweepRun], job: JobSpec, quiet: bool, open_backend, root: Path,
              index: dict) -> list[SweepSummary]:
    """Plan and run the models of one wave side by side, then finish their manifests; on any error or
    interruption every model of the wave keeps its finished units and its manifest says it stopped."""
    runners = []
    try:
        for sweep in sweeps:
            runners.append(open_backend(sweep.job, sweep.group))
            sweep.plan(runners[-1])
        (root / INDEX).write_text(json.dumps(index, indent=2))  # once a model has started writing
        groups = {s.group: (len(s.todo), s.todo_rows) for s in sweeps} if len(sweeps) > 1 else None
        name = job.name if len(sweeps) > 1 else f"{job.name} · {sweeps[0].group}"
        with SweepProgress(name, sum(len(s.todo) for s in sweeps), sum(s.todo_rows for s in sweeps), quiet,
                           groups=groups) as progress:
            for sweep in sweeps:
                sweep.progress = progress
            if len(runners) == 1:
                runners[0].run(sweeps[0].todo, sweeps[0].on_result, sweeps[0].on_failure, progress)
            else:
                from harness.run.ray_pool import PoolGroup, run_groups

                run_groups([PoolGroup(s.todo, r.generate, r.score, s.on_result, s.on_failure)
                            for s, r in zip(sweeps, runners)], progress)
        summaries = [sweep.finish() for sweep in sweeps]  # before Ray stops, which an interrupt may cut
    except BaseException:
        for sweep in sweeps:
            sweep.stop()
        raise
    finally:
        for runner in runners:
            runner.close()
    return summaries
