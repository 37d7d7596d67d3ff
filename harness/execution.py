"""Execution: plan work units, run them on workers that each pin one model, collect rows, write them.

The sweep driver is four short steps — plan units → dispatch → collect rows → write — and the only thing
that changes between a laptop and a cluster is who runs `Worker.run_unit`:

* ``backend: local`` runs one `Worker` in this process (debugging, benchmarks);
* ``backend: ray`` starts (or joins) a Ray cluster and runs one `Worker` actor per GPU — one actor on a
  CPU-only machine — each holding its pipeline for the whole sweep. Units go to whichever actor is free;
  a unit whose actor dies is re-queued (up to ``max_retries``), and every finished unit is written at
  once, so an interrupted sweep resumes where it stopped.

A work unit is (prompt shard × seeds × variant chunk). Inside a unit the worker packs rows into batches of
at most `batch_size` rows, keeping each row's donor/clean row in its batch, and generates each batch in
one denoising pass.
"""

from __future__ import annotations

import hashlib
import logging
import os
import sys
import time
from dataclasses import dataclass, field

import numpy as np
import torch

from harness import provenance
from harness.generate import GenerationConfig, PromptCache, generate_rows
from harness.interventions import Row, StepWindow
from harness.jobs import JobError, JobSpec
from harness.methods import Variant, bind, plan_variants, references, resolve_mode
from harness.metrics import ScoreBatch, build_scorers, score_all
from harness.metrics.text import quoted_text
from harness.models import load_model, resolve_device, set_reproducible

log = logging.getLogger("loco")
CPU_BATCH = 16
SCORER_GPU_SHARE = 0.2  # of each GPU, for the scoring actor beside the generation worker


@dataclass(frozen=True)
class WorkUnit:
    """A prompt shard × seeds × variant chunk; `unit_id` is stable across runs of the same job."""

    unit_id: str
    prompt_indices: tuple[int, ...]
    seeds: tuple[int, ...]
    variant_indices: tuple[int, ...]


@dataclass
class UnitResult:
    """A generated unit: its rows, saved images, and — until a scorer actor has filled in the
    model-backed metrics — the batch those scorers still have to see."""

    unit_id: str
    rows: list[dict]
    images: dict[str, np.ndarray] = field(default_factory=dict)
    seconds: float = 0.0
    pending: ScoreBatch | None = None


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

    def __init__(self, job: JobSpec):
        from harness.errors import UserError

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


def plan_units(job: JobSpec, variants: list[Variant]) -> list[WorkUnit]:
    ids = job.prompt_ids()
    shard = job.executor.prompts_per_unit
    chunk = job.executor.variants_per_unit or max(1, len(variants))
    units = []
    for p0 in range(0, len(job.prompts), shard):
        prompts = tuple(range(p0, min(p0 + shard, len(job.prompts))))
        for v0 in range(0, len(variants), chunk):
            vids = tuple(range(v0, min(v0 + chunk, len(variants))))
            key = repr(([ids[i] for i in prompts], [job.prompts[i].prompt for i in prompts], job.seeds,
                        [variants[i].label for i in vids]))
            units.append(WorkUnit(hashlib.sha1(key.encode()).hexdigest()[:12], prompts, tuple(job.seeds), vids))
    return units


def anchors(row: Row) -> list[Row]:
    """Rows that must share `row`'s batch: the donor of every patch swap, the clean row of a restore."""
    need = [Row(s.source, row.seed) for s in row.swaps if s.mode == "patch"]
    if row.denoiser_restores:
        need.append(Row(row.prompt, row.seed))
    return need


@dataclass(frozen=True)
class Job:
    """One image to produce: `row`, measured against `control` generated in the same batch."""

    row: Row
    control: Row

    @property
    def needs(self) -> list[Row]:
        return list(dict.fromkeys([*anchors(self.row), self.control, self.row]))


def pack(items: list[Job], batch_size: int) -> list[list[Row]]:
    """Batches of distinct rows, at most `batch_size` each, such that every item's row, control and
    anchors share a batch (an item that alone exceeds a tiny `batch_size` gets a batch of its own).

    Measuring every row against the control *of its own batch* makes an intervention with no effect
    read exactly zero, whatever the batch size: rows of one batch share their numerics bit for bit.
    """
    batches: list[list[Row]] = []
    current: list[Row] = []
    for item in items:
        new = [r for r in item.needs if r not in current]
        if current and len(current) + len(new) > batch_size:
            batches.append(current)
            current, new = [], item.needs
        current.extend(new)
    if current:
        batches.append(current)
    return batches


class Worker:
    """Holds one model for a whole sweep and runs work units on it (in-process or as a Ray actor)."""

    def __init__(self, job: JobSpec, threads: int | None = None, score_heavy: bool = True):
        if threads:
            torch.set_num_threads(threads)
        device = resolve_device(job.device)
        set_reproducible(job.reproducible, cpu=device == "cpu")
        self.job = job
        self.adapter = load_model(job.model, device, job.dtype)
        from harness.edit.install import prepare_job_model

        self.edit_id = prepare_job_model(self.adapter, job.edit, job.model)
        self.variants = plan_variants(job, self.adapter.sites)
        self.references = references(job)
        self.mode = resolve_mode(job, self.adapter) if job.method != "causal_trace" else None
        d = self.adapter.defaults
        self.config = GenerationConfig(job.steps or d.steps,
                                       d.guidance_scale if job.guidance_scale is None else job.guidance_scale,
                                       job.height or d.height, job.width or d.width)
        self.calls = self.adapter.denoiser_calls(self.config.steps)
        if max(job.step_start) >= self.calls:
            raise JobError(f"step_start: {max(job.step_start)} is not below the {self.calls} denoising steps")
        # Model-backed scorers are loaded here only when running in-process; otherwise ScoringWorker
        # actors hold them and this worker leaves their columns to them.
        self.scorers = build_scorers(job.metrics, job.scorers, heavy=False)
        self.heavy_scorers = build_scorers(job.metrics, job.scorers, heavy=True) if score_heavy else []
        self.defers_scores = not score_heavy and needs_scoring_actors(job)
        self.prompt_ids = job.prompt_ids()
        self.cache = PromptCache(self.adapter)
        self.batch_size = self._batch_size()
        self.static = {"run_id": job.name, "job_name": job.name, "job_fingerprint": job.fingerprint(),
                       "method": job.method, "edit_id": self.edit_id, **provenance.versions(), "model_id": self.adapter.info.model_id,
                       "model_arch": self.adapter.arch, "model_revision": self.adapter.info.revision,
                       "model_fingerprint": self.adapter.info.fingerprint, "dtype": self.adapter.info.dtype,
                       "device": self.adapter.info.device, "device_name": provenance.device_name(self.adapter.info.device),
                       "worker": provenance.worker_name(), "ray_node": provenance.ray_node()}

    def describe(self) -> dict:
        """What the driver needs before dispatching: the site table, the plan and the model's identity."""
        return {"sites": self.adapter.sites.to_records(), "variants": self.variants,
                "model": self.adapter.info, "config": self.config, "mode": self.mode,
                "batch_size": self.batch_size, "static": self.static}

    def _batch_size(self) -> int:
        if self.job.batch_size != "auto":
            return self.job.batch_size
        if self.adapter.device.type != "cuda":
            return CPU_BATCH
        return probe_batch_size(self.adapter, self.config)

    # ---- one unit ----------------------------------------------------------------------------------
    def run_unit(self, unit: WorkUnit) -> UnitResult:
        start = time.perf_counter()
        # The reference rows are written by the first variant chunk of a prompt shard only; the others
        # still generate the control (and donors) their rows are measured against, in their own batches.
        refs = self.references if unit.variant_indices[0] == 0 else []
        entries = []  # (prompt index, seed, variant, row)
        for p in unit.prompt_indices:
            prompt = self.job.prompts[p]
            for seed in unit.seeds:
                for variant in [*refs, *(self.variants[i] for i in unit.variant_indices)]:
                    entries.append((p, seed, variant, bind(variant, self.job, prompt, seed, self.mode)))
        jobs = [Job(row, Row(self.job.prompts[p].prompt, seed)) for p, seed, _, row in entries]
        done = self._generate(jobs)
        t0 = time.perf_counter()
        batch = self._score_batch(entries, [done[j] for j in jobs])
        metrics = score_all(self.scorers, batch)
        score_seconds = (time.perf_counter() - t0) / max(1, len(entries))
        rows, saved = [], {}
        for i, ((p, seed, variant, _), job) in enumerate(zip(entries, jobs)):
            record = self._record(unit, p, seed, variant)
            record.update({k: v[i] for k, v in metrics.items()})
            image, _, seconds, batch_rows = done[job]
            record.update(gen_seconds=seconds, batch_rows=batch_rows, score_seconds=score_seconds)
            if self.job.save_images:
                saved[record["row_id"]] = image
                record["image_path"] = f"images/{unit.unit_id}/{record['row_id']}.png"
            rows.append(record)
        result = UnitResult(unit.unit_id, rows, saved, time.perf_counter() - start, pending=batch)
        return result if self.defers_scores else finish_scores(result, self.heavy_scorers)

    def _generate(self, jobs: list[Job]) -> dict[Job, tuple[np.ndarray, np.ndarray, float, int]]:
        """(image, control image of the same batch, seconds per row, batch rows) for every job."""
        done: dict[Job, tuple[np.ndarray, np.ndarray, float, int]] = {}
        pending = list(dict.fromkeys(jobs))
        batches = pack(pending, self.batch_size)
        while batches:
            batch = batches.pop(0)
            t0 = time.perf_counter()
            try:
                out = generate_rows(self.adapter, batch, self.config, self.cache)
            except torch.cuda.OutOfMemoryError:
                if self.batch_size == 1:
                    raise
                self.batch_size = max(1, self.batch_size // 2)  # kept for the units still to come
                torch.cuda.empty_cache()
                log.warning("out of memory; batch size lowered to %d", self.batch_size)
                batches = pack(pending, self.batch_size)
                continue
            per_row = (time.perf_counter() - t0) / len(batch)
            images = dict(zip(batch, out))
            for job in pending:
                if job.row in images and job.control in images:
                    done[job] = (images[job.row], images[job.control], per_row, len(batch))
            pending = [j for j in pending if j not in done]
        return done

    def _score_batch(self, entries, generated) -> ScoreBatch:
        """Every row — references included — is scored against the same texts: its pair's prompt A and
        text A (`*_prompt`, `*_text` columns) and prompt B and text B (`*_target`). The target row is then
        P3's "swap everything" upper bound on the `*_target` metrics."""
        prompts = [self.job.prompts[p] for p, _, _, _ in entries]
        return ScoreBatch(
            images=np.stack([g[0] for g in generated]),
            references=np.stack([g[1] for g in generated]),
            prompts=[pr.prompt for pr in prompts],
            targets=[pr.target for pr in prompts],
            texts=[_text_of(pr, False) for pr in prompts],
            target_texts=[_text_of(pr, True) for pr in prompts],
        )

    def _record(self, unit: WorkUnit, p: int, seed: int, variant: Variant) -> dict:
        job, prompt = self.job, self.job.prompts[p]
        is_swap = variant.role == "variant" and job.method != "causal_trace"
        step_start = variant.step_start if is_swap else None
        steps_patched = StepWindow(step_start, job.step_end).count(self.calls) if is_swap else None
        prompt_id = self.prompt_ids[p]
        return {
            **self.static, "unit_id": unit.unit_id, "row_id": f"{prompt_id}-s{seed}-{variant.label}".replace("/", "_"),
            "role": variant.role, "variant": variant.label, "site": variant.site, "sites": list(variant.sites),
            "kind": variant.kind, "site_index": variant.indices[0] if variant.indices else None,
            "indices": list(variant.indices), "window_start": variant.window_start,
            "window_size": variant.window_size if variant.sites else None,
            "step_start": step_start, "step_end": job.step_end if is_swap else None,
            "steps_patched": steps_patched, "heads": list(job.heads) if (is_swap and job.heads) else None,
            "position": variant.position, "mode": self.mode if is_swap else None,
            "branch": job.effective_branch if variant.role == "variant" else None,
            "prompt_id": prompt_id, "prompt": prompt.prompt, "target": prompt.target,
            "attribute": prompt.attribute, "concept": prompt.concept,
            "text": _text_of(prompt, False), "target_text": _text_of(prompt, True), "seed": seed,
            "steps": self.config.steps, "guidance_scale": self.config.guidance_scale,
            "height": self.config.height, "width": self.config.width,
            "noise_scale": job.noise_scale if job.method == "causal_trace" else None,
            "created_at": provenance.now(),
        }


def _text_of(prompt, target: bool) -> str | None:
    """The text a P3 prompt asks to render: given explicitly, else the quoted part of the prompt."""
    if target:
        return prompt.target_text or (quoted_text(prompt.target) if prompt.target else None)
    return prompt.text or quoted_text(prompt.prompt)


def probe_batch_size(adapter, config: GenerationConfig, limit: int = 64) -> int:
    """Rows per batch that fit in free GPU memory: measure the peak of 1 and 2 rows for one step, then
    extrapolate the per-row cost with a 15 % margin."""
    peaks = []
    for n in (1, 2):
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        step = GenerationConfig(1, config.guidance_scale, config.height, config.width)
        generate_rows(adapter, [Row("probe", i) for i in range(n)], step)
        peaks.append(torch.cuda.max_memory_allocated() - base)
    per_row = max(peaks[1] - peaks[0], 1)
    free, _ = torch.cuda.mem_get_info()
    return int(max(1, min(limit, (free * 0.85 - peaks[0]) // per_row + 1)))


# ---- drivers -----------------------------------------------------------------------------------------

def progress(total: int, desc: str):
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="unit", file=sys.stderr, disable=None, dynamic_ncols=True)


def run_local(job: JobSpec, units: list[WorkUnit], worker: Worker, on_result) -> None:
    with progress(len(units), job.name) as bar:
        for unit in units:
            on_result(worker.run_unit(unit))
            bar.update(1)


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


def needs_scoring_actors(job: JobSpec) -> bool:
    """Whether the job's metrics include model-backed scorers (run in their own actors on Ray)."""
    return bool(build_scorers(job.metrics, instantiate=False, heavy=True))


def ray_workers(job: JobSpec) -> list:
    """One actor per GPU in the cluster (or `workers`), each holding the model; CPU-only: the cores are
    split between the actors so torch threads are not limited to one."""
    import ray

    from harness.errors import UserError

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


def ray_scorers(job: JobSpec) -> list:
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

    def __init__(self, job: JobSpec, threads: int | None = None, score_heavy: bool = True):
        from harness.errors import UserError

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


class _Pool:
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
            raise _unwrap(exc) from None
        self.strikes[id(actor)] = 0
        self.idle.append(actor)
        return result


def run_ray(job: JobSpec, units: list[WorkUnit], workers: list, on_result, scorers: list | None = None) -> None:
    """Keep every generation actor busy with one unit; hand each generated unit to a scoring actor (if
    the job has model-backed metrics) while generation goes on; write each finished unit at once."""
    import ray

    generate = _Pool(workers, lambda actor, unit: actor.run_unit.remote(unit), job.executor.max_retries)
    score = _Pool(scorers or [], lambda actor, result: actor.score.remote(result), job.executor.max_retries)
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
        raise _unwrap(exc) from None


def _unwrap(exc: Exception) -> Exception:
    cause = getattr(exc, "cause", None)
    return cause if isinstance(cause, Exception) else exc
