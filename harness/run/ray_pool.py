"""The Ray backend: generation actors (one per GPU, or per free core for tiny models on CPU), scoring
actors beside them, and a pool that keeps every actor busy with one unit and re-queues the unit of an
actor that dies (up to ``max_retries``)."""

from __future__ import annotations

import logging
import os

from harness.errors import UserError
from harness.run.dispatch import progress
from harness.run.plan import WorkUnit
from harness.run.scoring import ScoringWorker, UnitResult, needs_scoring_actors
from harness.run.worker import Worker

log = logging.getLogger("loco")
SCORER_GPU_SHARE = 0.2  # of each GPU, for the scoring actor beside the generation worker


def init_ray(address: str | None) -> None:
    """Join `address`, or start a private Ray on this machine bound to localhost, without the dashboard."""
    import ray

    if ray.is_initialized():
        return
    if address:
        ray.init(address=address, log_to_driver=False, logging_level=logging.ERROR)
    else:
        ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False,
                 logging_level=logging.ERROR)


def ray_workers(job) -> list:
    """One actor per GPU in the cluster (or `workers`), each holding the model; CPU-only: the cores are
    split between the actors so torch threads are not limited to one."""
    import ray

    resources = ray.cluster_resources()
    gpus = int(resources.get("GPU", 0))
    cpus = int(resources.get("CPU", 1))
    scoring = needs_scoring_actors(job)
    if job.executor.workers != "auto":
        count = job.executor.workers
    elif gpus:
        count = gpus
    else:  # CPU: one single-threaded worker per free core for tiny models; one for real ones (RAM)
        count = max(1, min(cpus - scoring, 4)) if job.model.startswith("tiny:") else 1
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
    actor = ray.remote(max_restarts=job.executor.max_retries)(RemoteWorker)
    return [actor.options(**options).remote(job, threads, not scoring) for _ in range(count)]


def ray_scorers(job) -> list:
    """Scoring actors (one per GPU, or one on CPU) when the job asks for model-backed metrics."""
    import ray

    if not needs_scoring_actors(job):
        return []
    gpus = int(ray.cluster_resources().get("GPU", 0))
    options = {"num_gpus": SCORER_GPU_SHARE, "num_cpus": 1} if gpus else {"num_cpus": 1}
    actor = ray.remote(max_restarts=job.executor.max_retries)(ScoringWorker)
    return [actor.options(**options).remote(job) for _ in range(max(1, gpus))]


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

    def describe(self) -> dict:
        if self.error:
            raise self.error
        return self.worker.describe()

    def run_unit(self, unit: WorkUnit) -> UnitResult:
        if self.error:
            raise self.error
        return self.worker.run_unit(unit)


class Pool:
    """Actors that take one task at a time; a task whose actor dies is re-queued (at most `retries`
    times), and an actor that dies twice in a row is dropped."""

    def __init__(self, actors: list, call, retries: int):
        self.idle = list(actors)
        self.call = call  # (actor, item) -> ObjectRef
        self.retries = retries
        self.queue: list = []
        self.running: dict = {}  # ref -> (actor, item, key)
        self.tries: dict = {}
        self.strikes = {id(a): 0 for a in actors}

    def submit(self, item, key: str) -> None:
        self.queue.append((item, key))

    def dispatch(self) -> None:
        while self.queue and self.idle:
            actor, (item, key) = self.idle.pop(0), self.queue.pop(0)
            self.running[self.call(actor, item)] = (actor, item, key)
        if self.queue and not self.idle and not self.running:
            raise RuntimeError("every loco worker died; see the Ray logs (`ray logs`) for the cause")

    def collect(self, ref):
        """The task's result, or None when its actor died and the task was re-queued."""
        import ray
        from ray.exceptions import RayActorError

        actor, item, key = self.running.pop(ref)
        try:
            result = ray.get(ref)
        except RayActorError:
            self.tries[key] = self.tries.get(key, 0) + 1
            if self.tries[key] > self.retries:
                raise
            log.warning("a worker died while running unit %s; re-queued", key)
            self.queue.insert(0, (item, key))
            self.strikes[id(actor)] += 1
            if self.strikes[id(actor)] < 2:
                self.idle.append(actor)
            return None
        except ray.exceptions.RayTaskError as exc:  # an error inside the task: surface the original
            raise unwrap(exc) from None
        self.strikes[id(actor)] = 0
        self.idle.append(actor)
        return result


def run_ray(job, units: list[WorkUnit], workers: list, on_result, scorers: list | None = None) -> None:
    """Keep every generation actor busy with one unit; hand each generated unit to a scoring actor (if
    the job has model-backed metrics) while generation goes on; write each finished unit at once."""
    import ray

    generate = Pool(workers, lambda actor, unit: actor.run_unit.remote(unit), job.executor.max_retries)
    score = Pool(scorers or [], lambda actor, result: actor.score.remote(result), job.executor.max_retries)
    for unit in units:
        generate.submit(unit, unit.unit_id)
    with progress(len(units), job.name) as bar:
        while generate.queue or generate.running or score.queue or score.running:
            generate.dispatch()
            score.dispatch()
            done, _ = ray.wait([*generate.running, *score.running], num_returns=1)
            if done[0] in generate.running:
                result = generate.collect(done[0])
                if result is not None and result.pending is not None and scorers:
                    score.submit(result, result.unit_id)
                    continue
            else:
                result = score.collect(done[0])
            if result is not None:
                on_result(result)
                bar.update(1)


def remote_call(ref):
    """`ray.get` that re-raises a remote user error as itself."""
    import ray

    try:
        return ray.get(ref)
    except ray.exceptions.RayTaskError as exc:
        raise unwrap(exc) from None


def unwrap(exc: Exception) -> Exception:
    cause = getattr(exc, "cause", None)
    return cause if isinstance(cause, Exception) else exc


class RayBackend:
    """Generation and scoring actors on a Ray cluster (joined at `executor.address`, else started here)."""

    name = "ray"

    def __init__(self, job):
        self.job = job
        self.workers: list = []
        self.scorers: list = []
        init_ray(job.executor.address)
        try:
            self.workers = ray_workers(job)
            self.scorers = ray_scorers(job)
        except BaseException:
            self.close()
            raise

    def describe(self) -> dict:
        info = remote_call(self.workers[0].describe.remote())
        if self.scorers:
            remote_call([s.ready.remote() for s in self.scorers])
        return info

    def run(self, units: list[WorkUnit], on_result) -> None:
        run_ray(self.job, units, self.workers, on_result, self.scorers)

    def close(self) -> None:
        import ray

        for actor in [*self.workers, *self.scorers]:
            ray.kill(actor)
