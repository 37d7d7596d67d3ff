"""Preflight: what a job will cost and what it needs, worked out without loading any model.

`loco plan JOB.yaml` (and `loco sweep --dry-run`) answers the questions to ask before booking GPUs:
how many work units, generations (images), denoising steps and result rows the job makes, roughly how many
GPU-hours that is, and whether every checkpoint it will look for (the pipeline, IF's stage II, the CLIP and
OCR weights) is already in the local cache.

Nothing here builds or loads a network. The site counts come from each architecture's cost table (declared
in its module, `harness.models.<arch>`, and found through `harness.models.registry`: the block structure of
each pipeline, the same counts `loco sites` finds by tracing; each architecture's tester keeps the tiny
counts equal to the traced tiny models), the architecture of a model id from its cached ``model_index.json``
or, when it is not cached, from the papers' hub ids the architectures list. The variant list is built by the engine's
own planner (`harness.methods.plan_variants`) over a stand-in site table with those counts, so a plan
counts exactly what the sweep will run.

GPU-hours are *estimates* (METHODS.md §8): seconds per denoising step of one image on one H100 in fp16 at
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

TINY_STEP_SECONDS = 0.02  # a tiny model's step on one CPU core (measured order of magnitude)


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

    def to_dict(self) -> dict:
        return asdict(self)

    def format(self) -> str:
        tiny = " (tiny model: CPU seconds, not GPU-hours)" if self.tiny else ""
        lines = [
            f"{self.job}: {self.method} on {self.model} ({self.arch})",
            f"  units            {self.units:,}",
            f"  variants         {self.variants:,} (+{self.references} reference rows per prompt × seed)",
            f"  generations      {self.generations:,} = {self.prompts} prompts × {self.seeds} seeds × "
            f"{self.variants + self.references}",
            f"  denoising steps  {self.denoising_steps:,} ({self.steps} scheduler steps per generation"
            f"{', plus stage II' if self.denoising_steps != self.generations * self.steps else ''})",
            f"  expected rows    {self.expected_rows:,}",
            f"  GPU-hours        ~{self.gpu_hours:.3g}{tiny} [{self.cost_basis}]",
            "  checkpoints",
        ]
        lines += [f"    {c.role:<9} {c.name:<48} {'found' if c.found else 'MISSING':<8} {c.where}"
                  for c in self.checkpoints] or ["    (none: built in)"]
        lines += [f"  variants: {', '.join(self.first_variants)}{' ...' if self.variants > 10 else ''}"]
        return "\n".join(lines)


def model_arch(model: str) -> tuple[str, bool]:
    """(cost variant, tiny) of a model id, from its name, its cached model_index.json or the known ids."""
    base = model.partition("+planted=")[0]
    if base.startswith(("tiny:", "random:")):
        arch = base.split(":", 1)[1]
        if registry.get(arch) is None:
            kind = base.split(":", 1)[0]
            raise PlanError(f"model '{model}': unknown {kind} model; expected one of "
                            + ", ".join(f"{kind}:{a}" for a in registry.names()))
        return arch, base.startswith("tiny:")
    index = _model_index(base)
    if index is not None:
        class_name = index[0].get("_class_name", "")
        arch = registry.for_checkpoint(index[1], class_name)
        if arch is None:
            raise PlanError(f"model '{model}': pipeline class '{class_name}' is not supported")
        return (arch.variant_of and arch.variant_of(index[1])) or arch.default_variant, False
    known = _known_models()
    if base in known:
        return known[base], False
    if base.startswith((".", "/", "~")) or base.count("/") != 1:
        raise PlanError(f"model '{model}': no such directory")
    raise PlanError(f"model '{model}' is not a local directory and is not in the local Hugging Face cache, "
                    "nor one of the papers' checkpoints, so its architecture is unknown")


def _model_index(model: str) -> tuple[dict, Path] | None:
    """The pipeline's model_index.json (and its folder) from a local directory or the HF cache, or None."""
    from harness.models.builtin import builtin_path

    path = Path(model).expanduser()
    if not path.is_dir():
        path = builtin_path(model) or path
    if path.is_dir() and (path / "model_index.json").is_file():
        return json.loads((path / "model_index.json").read_text()), path
    found = _cached(model, "model_index.json")
    if found:
        return json.loads(Path(found).read_text()), Path(found).parent
    return None


def _cached(repo: str, filename: str) -> str | None:
    from huggingface_hub import try_to_load_from_cache

    if repo.count("/") != 1 or repo.startswith((".", "/", "~")):
        return None
    try:
        found = try_to_load_from_cache(repo, filename)
    except Exception:  # an id the hub library rejects is simply not cached
        return None
    return found if isinstance(found, str) else None


def stand_in_sites(counts: dict[str, int | tuple[int, ...]], arch: str = "") -> SiteTable:
    """A site table with the given counts per kind (names `<kind>.<index>`; text-encoder kinds numbered per
    encoder as `harness.sites` numbers them), for counting variants; what each kind's output holds as on the
    real model (the architecture's `state_kinds`: ResNets and IF's attentions hold the state)."""
    found = registry.get(arch) or registry.for_variant(arch)
    state_kinds = found.state_kinds if found else ("resnet",)

    def semantics(kind: str) -> dict:
        state = kind in state_kinds
        return {"output": "state", "contribution": "conv2" if kind == "resnet" else "to_out.0"} if state else {}

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
    """The plan of `job`: counts, estimate and checkpoints, computed without loading a model."""
    from harness.methods import plan_variants, references
    from harness.run.plan import plan_units

    arch, tiny = model_arch(job.model)
    declared = registry.for_variant(arch)
    cost: ArchCost = declared.costs[arch]
    counts = declared.tiny_sites if tiny else cost.sites
    if job.sites and job.sites.names and not tiny:
        raise PlanError("sites.names: a plan counts sites by kind and index; name lists and globs need the "
                        "model's site table (`loco sites MODEL`); select by {kind, index} to plan")
    table = stand_in_sites(counts, arch)
    if tiny and job.sites and job.sites.names:  # names need the real table; a tiny model builds in a second
        from harness.models import load_model

        table = load_model(job.model, "cpu", "fp32").sites
    variants = plan_variants(job, table)
    refs = len(references(job))
    units = plan_units(job, variants)
    if tiny:
        steps, size = job.steps or 10, job.height or declared.adapter.tiny_size
    else:
        steps, size = job.steps or cost.steps, job.height or cost.resolution
    if max(job.step_start) >= steps:
        raise PlanError(f"step_start: {max(job.step_start)} is not below the {steps} denoising steps")
    generations = len(job.prompts) * len(job.seeds) * (len(variants) + refs)
    extra_steps, extra_seconds = _stage_ii_cost(job, arch, tiny)
    width = job.width or size
    if tiny:
        seconds = generations * (steps + extra_steps) * TINY_STEP_SECONDS
        basis = f"{TINY_STEP_SECONDS} CPU s per step of a tiny model"
    else:
        per_step = cost.step_seconds * (size * width) / cost.resolution**2
        seconds = generations * (steps * per_step + extra_seconds)
        basis = (f"H100 fp16 estimate {per_step:.3g} s per image-step at {size}×{width}"
                 + (f" + {extra_seconds} s stage II per image" if extra_seconds else "")
                 + "; METHODS.md §8; batching makes it less")
    return Plan(job.name, job.method, job.model, arch, tiny, len(variants), refs, len(job.prompts),
                len(job.seeds), len(units), generations, steps, generations * (steps + extra_steps), generations,
                round(seconds / 3600, 4), basis, checkpoints(job, arch, tiny),
                [v.label for v in variants[:10]])


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
