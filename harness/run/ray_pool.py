"""The Ray backend: generation actors (one per GPU, or per free core for tiny models on CPU), scoring
actors beside them, each kind in an `ActorPool` (`harness.run.pool`) that feeds every actor one unit at a
time from a shared queue, brings back or replaces an actor that dies and re-runs its unit, and reports a
unit that keeps failing on its own.

Where Ray runs: ``executor.address`` (``loco sweep --address auto``), else ``RAY_ADDRESS``, joins an
existing cluster and leaves it running; without either a private Ray is started on this machine (bound to
127.0.0.1, no dashboard, workers in this environment) and stopped when the sweep ends or is interrupted,
so no Ray process outlives it (`harness.run.ray_session`).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from harness.errors import UserError
from harness.run.plan import WorkUnit
from harness.run.pool import ActorPool, Failed, wait_from
from harness.run.ray_logs import route_ray_errors
from harness.run.ray_session import check_node, init_ray  # noqa: F401  (init_ray: where the sweep's Ray comes from)
from harness.run.scoring import ScoringWorker, UnitResult, needs_scoring_actors
from harness.run.worker import Worker

log = logging.getLogger("loco")
SCORER_GPU_SHARE = 0.2  # of each GPU, for the scoring actor beside the generation worker


def ray_address(job) -> str | None:
    """The cluster to join: the job's `executor.address`, else ``RAY_ADDRESS``, else None (start one)."""
    return job.executor.address or os.environ.get("RAY_ADDRESS") or None


def ray_workers(job, budget: dict | None = None) -> tuple[Callable[[], Any], int]:
    """How to start a generation actor, and how many: one per GPU in the cluster (or `workers`), each
    holding the model; CPU-only: the cores are split between the actors so torch threads are not limited
    to one. Actors restart without limit (`max_restarts=-1`) — the pool bounds the retries per unit.
    `budget` ({"GPU": n, "CPU": n}, default the whole cluster) is this model's share in a multi-model sweep."""
    import ray

    resources = budget or ray.cluster_resources()
    gpus = int(resources.get("GPU", 0))
    cpus = int(resources.get("CPU", 1))
    scoring = needs_scoring_actors(job)
    if job.executor.workers != "auto":
        count = job.executor.workers
    elif gpus:
        count = gpus
    else:  # CPU: one single-threaded worker per free core for tiny and built-in models; one for real ones (RAM)
        from harness.models.builtin import BUILTIN_DIRS

        small = job.model.startswith("tiny:") or job.model.removeprefix("builtin:") in BUILTIN_DIRS
        count = max(1, min(cpus - scoring, 4)) if small else 1
    if gpus and count > gpus:  # each actor pins a whole GPU: the extra ones would wait forever
        raise UserError(f"executor.workers: {count} workers need {count} GPUs; the Ray cluster has {gpus}")
    if not gpus and count + scoring > cpus:
        raise UserError(f"executor.workers: {count} generation worker(s){' + 1 scorer' if scoring else ''} need "
                        f"{count + scoring} CPUs; the Ray cluster has {cpus}")
    if gpus:  # scorers share each GPU with its generation worker
        options = {"num_gpus": 1 - SCORER_GPU_SHARE if scoring else 1, "num_cpus": 1}
        threads = None
    else:
        threads = 1 if job.reproducible else max(1, (cpus - scoring) // count)
        options = {"num_cpus": threads}
    actor = ray.remote(max_restarts=-1, max_task_retries=0)(RemoteWorker).options(**options)
    return (lambda: actor.remote(job, threads, not scoring)), count


def ray_scorers(job, budget: dict | None = None) -> tuple[Callable[[], Any], int]:
    """How to start a scoring actor and how many (one per GPU, or one on CPU; none when the job has no
    model-backed metrics)."""
    import ray

    if not needs_scoring_actors(job):
        return (lambda: None), 0
    gpus = int((budget or ray.cluster_resources()).get("GPU", 0))
    options = {"num_gpus": SCORER_GPU_SHARE, "num_cpus": 1} if gpus else {"num_cpus": 1}
    actor = ray.remote(max_restarts=-1, max_task_retries=0)(ScoringWorker).options(**options)
    return (lambda: actor.remote(job)), max(1, gpus)


class RemoteWorker:
    """The Ray actor around `Worker`. A user error while building the worker (a bad site selection, an
    uncached model) is kept and raised by the first call: Ray drops the original exception of an actor
    whose constructor fails, and the user would see an actor crash instead of the one-line message."""

    def __init__(self, job, threads: int | None = None, score_heavy: bool = True):
        self.error: Exception | None = None
        try:
            self.worker = Worker(job, threads, score_heavy)
        except UserError as exc:
            self.error = exc

    def ready(self) -> dict:
        """Raise the constructor's user error, else say where this actor runs (for the progress display)."""
        if self.error:
            raise self.error
        return identity()

    def describe(self) -> dict:
        self.ready()
        return self.worker.describe()

    def run_unit(self, unit: WorkUnit) -> UnitResult:
        if self.error:
            raise self.error
        return self.worker.run_unit(unit)


def identity() -> dict:
    """This actor's process id and Ray node: the pool shows them and the fault tests kill by them."""
    import ray

    return {"pid": os.getpid(), "node": ray.get_runtime_context().get_node_id()}


@dataclass
class PoolGroup:
    """One model's pools in a sweep and where its units go: each unit is generated by `generate`, scored by
    `score` when the job has model-backed metrics, then handed to `on_result` (or, failed for good, to
    `on_failure`)."""

    units: list[WorkUnit]
    generate: ActorPool
    score: ActorPool | None
    on_result: Callable
    on_failure: Callable

    @property
    def pools(self) -> list[ActorPool]:
        return [self.generate, *([self.score] if self.score else [])]


def run_ray(job, units: list[WorkUnit], generate: ActorPool, score: ActorPool | None, on_result, on_failure,
            progress=None) -> None:
    """Feed `units` to the generation pool; hand each generated unit to the scoring pool (if the job has
    model-backed metrics) while generation goes on; pass each finished unit to `on_result` and each unit
    that failed for good to `on_failure` at once."""
    run_groups([PoolGroup(units, generate, score, on_result, on_failure)], progress)


def run_groups(groups: list[PoolGroup], progress=None) -> None:
    """`run_ray` for several models at once (a multi-model sweep): every group's actors work side by
    side, each event routed back to the group whose pool produced it."""
    owner = {id(pool): group for group in groups for pool in group.pools}
    for group in groups:
        for unit in group.units:
            group.generate.submit(unit, unit.unit_id)
    pools = [pool for group in groups for pool in group.pools]
    while any(pool.busy for pool in pools):
        check_node()
        for pool, event in wait_from(pools):
            group = owner[id(pool)]
            if isinstance(event, Failed):
                group.on_failure(event.failure)
            elif group.score and pool is group.generate and event.result.pending is not None:
                group.score.submit(event.result, event.key)
            else:
                group.on_result(event.result)
        if progress is not None:
            progress.workers([row for pool in pools for row in pool_states(pool)])


def pool_states(pool: ActorPool) -> list[tuple[str, str, str]]:
    """(name, state, detail) of every worker, for the progress display; while units wait with no worker
    able to run them, how long they have waited of `executor.node_wait`."""
    rows = []
    waited = pool.waiting()
    for slot in pool.slots:
        where = f"pid {slot.pid}" if slot.pid else ""
        unit = f"unit {slot.key}" if slot.key else ""
        wait = (f"waiting for a node {waited:.0f} s of {pool.stall_seconds:.0f} s (executor.node_wait)"
                if waited is not None and slot.state in ("restarting", "starting") else "")
        rows.append((slot.name, slot.state, " · ".join(x for x in (unit, f"{slot.done} done", where, wait) if x)))
    return rows


def remote_call(ref):
    """`ray.get` that re-raises a remote user error as itself, and gives up at once when the private
    Ray's only node dies (`check_node`) instead of waiting for an actor that cannot come back."""
    import ray

    refs = ref if isinstance(ref, list) else [ref]
    while ray.wait(refs, num_returns=len(refs), timeout=1.0)[1]:
        check_node()
    try:
        return ray.get(ref)
    except ray.exceptions.RayTaskError as exc:
        raise unwrap(exc) from None


def unwrap(exc: Exception) -> Exception:
    cause = getattr(exc, "cause", None)
    return cause if isinstance(cause, Exception) else exc


class RayBackend:
    """Generation and scoring actors on a Ray cluster (joined at `executor.address` or ``RAY_ADDRESS``,
    else started here and stopped by `close`). In a multi-model sweep each model has its own backend with
    its `budget` of the cluster and its actors named after it (`label`), so the models run side by side."""

    name = "ray"

    def __init__(self, job, budget: dict | None = None, label: str = "", log_dir=None):
        self.job = job
        self.generate: ActorPool | None = None
        self.score: ActorPool | None = None
        self.started_ray = init_ray(ray_address(job))
        route_ray_errors(log_dir)  # Ray's "(raylet) worker died" lines: into the run directory, not the output
        prefix = f"{label}/" if label else ""
        try:
            retries = job.executor.max_retries
            spawn, count = ray_workers(job, budget)
            wait = job.executor.node_wait
            self.generate = ActorPool(spawn, count, _run_unit, retries=retries, name=f"{prefix}worker",
                                      stall_seconds=wait)
            spawn, count = ray_scorers(job, budget)
            if count:
                self.score = ActorPool(spawn, count, _score, retries=retries, name=f"{prefix}scorer",
                                       stall_seconds=wait)
        except BaseException:
            self.close()
            raise

    def describe(self) -> dict:
        info = remote_call(self.generate.slots[0].actor.describe.remote())
        if self.score:
            remote_call([slot.actor.ready.remote() for slot in self.score.slots])
        return info

    def run(self, units: list[WorkUnit], on_result, on_failure, progress=None) -> None:
        run_ray(self.job, units, self.generate, self.score, on_result, on_failure, progress)

    def close(self) -> None:
        """Kill every actor; stop Ray if this backend started it (Ctrl-C included: no orphan processes)."""
        import ray

        for pool in (self.generate, self.score):
            if pool is not None:
                pool.shutdown()
        if self.started_ray and ray.is_initialized():
            ray.shutdown()


def _run_unit(actor, unit: WorkUnit):
    return actor.run_unit.remote(unit)


def _score(actor, result: UnitResult):
    return actor.score.remote(result)
