"""Preflight: what a job will cost and what it needs, worked out without loading any model.

`loco plan JOB.yaml` (and `loco sweep --dry-run`) answers the questions to ask before booking GPUs:
how many work units, generations (images), denoising steps and result rows the job makes, roughly how many
GPU-hours that is, and whether every checkpoint it will look for (the pipeline, IF's stage II, the CLIP and
OCR weights) is already in the local cache.

No weight is read. The model's shape comes from `harness.model_shape`: a local or cached model's own
configs (its components built on the meta device: site counts per kind, scheduler, tokenizers, shipped
sampler defaults), a tiny model's declared counts, or — for a hub id not downloaded yet — its
architecture's cost table (`harness.models.<arch>`). The job is then validated exactly as the sweep's
worker validates it (`harness.validate`: the method's own planner over a stand-in site table with those
counts, the step window against the scheduler's denoiser calls, the prompts against the token limits),
so a plan counts what the sweep will run and refuses what the sweep would refuse.

Tiny models get a CPU-time estimate instead of GPU-hours: each architecture's measured seconds per
image-step on one core plus each metric's scoring seconds per image (bench/run_tiny_jobs.py keeps both
within 2× of the shipped tiny jobs' measured CPU time).

GPU-hours are *estimates* (docs/methods.md §8): seconds per denoising step of one image on one H100 in fp16 at
the architecture's paper resolution, scaled by pixel count, times every row's steps. They ignore what
batching saves (loco carries many variants per pass), so they are an upper bound for planning a booking.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from harness.errors import UserError
from harness.jobs import JobSpec
from harness.models import registry
from harness.models.registry import ArchCost
from harness.sites import Site, SiteTable


def __getattr__(name: str):
    """Compatibility views of the registry (the tables moved to the architecture modules): `ARCHS` (cost
    variant -> ArchCost), `TINY_SITES` (arch -> tiny site counts), `KNOWN_MODELS` (hub id -> variant)."""
    if name == "ARCHS":
        return {variant: cost for a in registry.architectures() for variant, cost in a.costs.items()}
    if name == "TINY_SITES":
        return {a.name: a.tiny_sites for a in registry.architectures()}
    if name == "KNOWN_MODELS":
        return _known_models()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _known_models() -> dict[str, str]:
    """The papers' checkpoints (hub id -> cost variant), for planning a job whose model is not cached yet."""
    return {hub_id: variant for a in registry.architectures() for hub_id, variant in a.hub_ids.items()}


class PlanError(UserError):
    """A job that cannot be planned without loading its model; one line saying why."""


@dataclass
class Checkpoint:
    """A file or folder the sweep will look for, and whether it is already here."""

    role: str  # model, stage_ii, clip, ocr, ...
    name: str
    found: bool
    where: str  # the path found, or where it was looked for


@dataclass
class Plan:
    job: str
    method: str
    model: str
    arch: str
    tiny: bool
    variants: int
    references: int  # reference rows per (prompt, seed)
    prompts: int
    seeds: int
    units: int
    generations: int
    steps: int
    denoising_steps: int
    expected_rows: int
    gpu_hours: float
    cost_basis: str
    checkpoints: list[Checkpoint] = field(default_factory=list)
    first_variants: list[str] = field(default_factory=list)
    noise_draws: int = 1  # causal tracing: every restore and the corrupted row once per draw
    warnings: list[str] = field(default_factory=list)  # what the sweep will say too (prompts it cuts, ...)
    cpu_seconds: float | None = None  # tiny models: one core's seconds for every unit (model loading aside)
    shape: str = ""  # where the model's structure came from: config (read, no weights) | tiny | cost table
    calls: int | None = None  # denoiser calls per generation (PNDM: one more than its steps)

    def to_dict(self) -> dict:
        return asdict(self)

    def format(self) -> str:
        lines = [
            f"{self.job}: {self.method} on {self.model} ({self.arch})",
            f"  units            {self.units:,}",
            f"  variants         {self.variants:,}"
            + (f" = {self.variants // self.noise_draws:,} restores × {self.noise_draws} noise draws"
               if self.noise_draws > 1 else "")
            + f" (+{self.references} reference rows per prompt × seed)",
            f"  generations      {self.generations:,} = {self.prompts} prompts × {self.seeds} seeds × "
            f"{self.generations // max(1, self.prompts * self.seeds)}",
            f"  denoising steps  {self.denoising_steps:,} ({self.steps} scheduler steps per generation"
            f"{f' = {self.calls} denoiser calls' if self.calls not in (None, self.steps) else ''}"
            f"{', plus stage II' if self.denoising_steps != self.generations * (self.calls or self.steps) else ''})",
            f"  expected rows    {self.expected_rows:,}",
            (f"  CPU time         ~{self.cpu_seconds:,.0f} s of one core for the units [{self.cost_basis}]"
             if self.cpu_seconds is not None else f"  GPU-hours        ~{self.gpu_hours:.3g} [{self.cost_basis}]"),
            "  checkpoints",
        ]
        lines += [f"    {c.role:<9} {c.name:<48} {'found' if c.found else 'MISSING':<8} {c.where}"
                  for c in self.checkpoints] or ["    (none: built in)"]
        lines += [f"  variants: {', '.join(self.first_variants)}{' ...' if self.variants // self.noise_draws > 10 else ''}"]
        lines += [f"  warning: {w}" for w in self.warnings]
        return "\n".join(lines)


def model_arch(model: str) -> tuple[str, bool]:
    """(cost variant, tiny) of a model id (`harness.model_shape`)."""
    from harness.model_shape import ShapeError, model_shape

    try:
        shape = model_shape(model)
    except ShapeError as exc:
        raise PlanError(str(exc)) from None
    return shape.variant, shape.tiny


def _model_index(model: str) -> tuple[dict, Path] | None:
    """The pipeline's model_index.json (and its folder) from a local directory or the HF cache, or None."""
    from harness.model_shape import pipeline_folder

    folder = pipeline_folder(model)
    return (json.loads((folder / "model_index.json").read_text()), folder) if folder else None


def stand_in_sites(counts: dict[str, int | tuple[int, ...]], arch: str = "") -> SiteTable:
    """A site table with the given counts per kind (names `<kind>.<index>`; text-encoder kinds numbered per
    encoder as `harness.sites` numbers them), for counting variants; what each kind's output holds as on the
    real model (the architecture's `state_kinds`: ResNets and IF's attentions hold the state)."""
    found = registry.get(arch) or registry.for_variant(arch)
    state_kinds = found.state_kinds if found else ("resnet",)

    def semantics(kind: str) -> dict:
        state = kind in state_kinds
        contribution = {"resnet": "conv2", "block": None}.get(kind, "to_out.0")
        return {"output": "state", "contribution": contribution} if state else {}

    def components(n: int | tuple[int, ...]) -> list[tuple[str, int]]:
        if isinstance(n, int):
            return [("unet", n)]
        return [("text_encoder" + (f"_{e + 1}" if e else ""), layers) for e, layers in enumerate(n)]

    sites = [Site(f"{component}.{kind}.{i}", kind, i, component, "", 0, **semantics(kind))
             for kind, n in counts.items() for component, layers in components(n) for i in range(layers)]
    return SiteTable(sites)


def checkpoints(job: JobSpec, arch: str, tiny: bool) -> list[Checkpoint]:
    """Every checkpoint the sweep will look for, found in the local cache or not (no download, no load)."""
    from huggingface_hub import constants

    out: list[Checkpoint] = []
    base = job.model.partition("+planted=")[0]
    if not base.startswith(("tiny:", "random:")):
        index = _model_index(base)
        out.append(Checkpoint("model", base, index is not None,
                              str(index[1]) if index else f"{constants.HF_HUB_CACHE} (local_files_only)"))
    extra = registry.for_variant(arch).checkpoints
    for role, second in (extra(job) if extra and not tiny else []):  # IF: its stage II
        index = _model_index(second)
        out.append(Checkpoint(role, second, index is not None, str(index[1]) if index else constants.HF_HUB_CACHE))
    if "clip_score" in job.metrics:
        out.append(_clip_checkpoint(job.scorers.get("clip", {})))
    if {"ocr", "image_notext"} & set(job.metrics):
        out.append(_ocr_checkpoint(job.scorers.get("ocr", {})))
    for metric, scorer, key in (("lpips", "lpips", "weights"), ("toxicity", "toxicity", "model_dir")):
        if metric in job.metrics:
            value = job.scorers.get(scorer, {}).get(key)
            out.append(Checkpoint(scorer, str(value or f"scorers.{scorer}.{key} not set"),
                                  bool(value) and Path(str(value)).expanduser().exists(), str(value or "-")))
    return out


def _clip_checkpoint(options: dict) -> Checkpoint:
    from harness.metrics import ScorerError
    from harness.metrics.clip import resolve_weights

    model, weights = options.get("model", "ViT-B-32"), options.get("weights")
    name = f"{model} {weights or ('random' if options.get('allow_random') else '(weights not set)')}"
    try:
        found = resolve_weights(model, weights, bool(options.get("allow_random")), options.get("cache_dir"))
    except ScorerError as exc:
        return Checkpoint("clip", name, False, str(exc).split(": ", 1)[-1][:120])
    return Checkpoint("clip", name, True, str(found.path or "random weights (allow_random)"))


def _ocr_checkpoint(options: dict) -> Checkpoint:
    from harness.metrics import ScorerError
    from harness.metrics.ocr import resolve_weights_dir

    try:
        folder = resolve_weights_dir(options.get("weights_dir"))
    except (ScorerError, ImportError) as exc:
        return Checkpoint("ocr", "easyocr english", False, str(exc)[:120])
    return Checkpoint("ocr", "easyocr english", True, str(folder))


def plan(job: JobSpec) -> Plan:
    """The plan of `job`: counts, estimate and checkpoints, computed without loading a model's weights. The
    job is validated as its sweep's worker will validate it (`harness.validate`), against the model's own
    shape (`harness.model_shape`: site counts, sampler defaults, scheduler and tokenizers of a local model
    read from its configs)."""
    from harness.methods import get_method, references
    from harness.model_shape import ShapeError, model_shape
    from harness.run.plan import plan_units
    from harness.validate import validate_job

    try:
        shape = model_shape(job.model)
    except ShapeError as exc:
        raise PlanError(str(exc)) from None
    arch, tiny = shape.variant, shape.tiny
    cost: ArchCost = shape.arch.costs[arch]
    if job.sites and job.sites.names and not tiny:
        raise PlanError("sites.names: a plan counts sites by kind and index; name lists and globs need the "
                        "model's site table (`loco sites MODEL`); select by {kind, index} to plan")
    table = stand_in_sites(shape.counts, arch)
    if tiny and job.sites and job.sites.names:  # names need the traced table; a tiny model traces in seconds
        table = shape.adapter.sites
    config = shape.defaults().with_job(job)
    steps, size, width = config.steps, config.height, config.width
    calls = shape.calls(steps)
    variants, warnings = validate_job(job, table, calls, shape.tokenizers(), shape.text)
    refs = len(references(job))
    units = plan_units(job, variants)
    rows = len(job.prompts) * len(job.seeds) * (len(variants) + refs)
    generations = len(job.prompts) * len(job.seeds) * get_method(job.method).generations(len(variants), refs)
    extra_steps, extra_seconds = _stage_ii_cost(job, arch, tiny)
    if tiny:
        per_image = (calls + extra_steps) * shape.arch.tiny_step_seconds + score_seconds(job.metrics)
        seconds = generations * per_image
        basis = (f"{shape.arch.tiny_step_seconds} CPU s per image-step + {score_seconds(job.metrics):.3g} s "
                 "scoring per image, one core (bench/run_tiny_jobs.py)")
    else:
        per_step = cost.step_seconds * (size * width) / cost.resolution**2
        seconds = generations * (steps * per_step + extra_seconds)
        basis = (f"H100 fp16 estimate {per_step:.3g} s per image-step at {size}×{width}"
                 + (f" + {extra_seconds} s stage II per image" if extra_seconds else "")
                 + "; docs/methods.md §8; batching makes it less")
    return Plan(job.name, job.method, job.model, arch, tiny, len(variants), refs, len(job.prompts),
                len(job.seeds), len(units), generations, steps, generations * (calls + extra_steps), rows,
                round(seconds / 3600, 4), basis, checkpoints(job, arch, tiny),
                list(dict.fromkeys(v.label for v in variants))[:10],
                job.noise_draws if job.method == "causal_trace" else 1, warnings, round(seconds, 1) if tiny else None,
                shape.source, calls)


# CPU seconds of one core to score one (tiny) image, per metric, measured by bench/run_tiny_jobs.py; metrics
# not listed are pure image functions (~0.005 s).
SCORE_SECONDS = {"clip_score": 0.15, "ocr": 0.2, "image_notext": 0.2, "lpips": 0.05, "toxicity": 0.2, "probe": 0.01}


def score_seconds(metrics: list[str]) -> float:
    return sum(SCORE_SECONDS.get(m, 0.005) for m in metrics)


def _stage_ii_cost(job: JobSpec, arch: str, tiny: bool) -> tuple[int, float]:
    """(denoising steps, seconds) per image of a second stage that upsamples before scoring (IF), or (0, 0)."""
    declared = registry.for_variant(arch)
    cost = declared.costs[arch]
    if declared.plan_stage_ii is None:
        if job.stage_ii is not None:
            having = [a.title for a in registry.architectures() if a.plan_stage_ii is not None]
            raise PlanError(f"stage_ii: only {' and '.join(having)} has a stage II; model '{job.model}' is {arch}")
        return 0, cost.extra_seconds
    steps = declared.plan_stage_ii(job, tiny)
    return (0, 0.0) if steps is None else (steps, cost.extra_seconds)


def plan_models(job: JobSpec) -> list[Plan]:
    """One plan per model of the job (a multi-model sweep plans each model's run directory)."""
    return [plan(one) for one in job.per_model()]


def format_plans(plans: list[Plan]) -> str:
    """The plans, one block per model, with the totals when there are several."""
    text = "\n\n".join(p.format() for p in plans)
    if len(plans) > 1:
        text += (f"\n\n{len(plans)} models: {sum(p.units for p in plans):,} units · "
                 f"{sum(p.generations for p in plans):,} generations · {sum(p.expected_rows for p in plans):,} rows · "
                 f"~{sum(p.gpu_hours for p in plans):.3g} GPU-hours")
    return text
