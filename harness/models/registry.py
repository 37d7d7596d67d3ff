"""The architecture registry: every architecture loco supports is one module of this package that declares
itself here, and everything else finds it through this registry.

An architecture module (``sd15.py``, ``sdxl.py``, ``deepfloyd_if.py``, ``sd3.py``) holds, in one place:

* its **adapter** (`harness.models.adapters.ModelAdapter` subclass): how prompts are encoded, where text
  enters the denoiser (`kv_projections`, `kv_input_is_prompt_embeds`), whether a guided call runs a CFG
  batch (`has_cfg_batch`), the other text paths a planted model cuts, the paper's sampler defaults;
* its **builders**: ``tiny:<name>`` (offline, fixed seed, the real block structure at small widths) and,
  where there is one, ``random:<name>`` (the real configuration with random weights, for GPU benchmarks);
* what ``loco plan`` needs without loading anything: the **cost table** (`ArchCost` per variant, e.g. SD2.x
  beside SD1.x), the tiny model's site counts, the papers' hub ids;
* the papers' **layer maps and edit defaults**: which sites the papers localized (`paper_sites`), which
  layers each edit method touches by default (`edit_sites`), P3's text-patch `step_start`.

and ends with one call, ``register(Architecture(...))``. The registry imports every module of this package
the first time it is asked (`architectures()`), so a new architecture is found without being listed
anywhere: adding one touches its module, its tester in ``tests/models/`` and its jobs.

Lookups: `get(name)` (the ``arch`` column of result rows, the ``tiny:``/``random:`` suffix),
`for_pipeline(class_name, denoiser_config)` (a checkpoint's ``model_index.json`` ``_class_name``, as
diffusers' auto pipelines are keyed; where architectures share a pipeline class — SD3 and SD3.5, FLUX.1-dev
and -schnell — the denoiser's config decides, through the architecture's `claims`), `for_checkpoint(folder,
class_name)` (the same, reading the config from a checkpoint folder) and `for_variant(name)` (a cost-table
row, e.g. ``sd21``).
"""

from __future__ import annotations

import importlib
import json
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

SiteCounts = dict[str, int | tuple[int, ...]]  # kind -> count (text-encoder kinds: one count per encoder)


@dataclass(frozen=True)
class ArchCost:
    """One architecture variant for `loco plan`: its defaults, its site counts per kind, and its cost per
    denoising step (docs/methods.md §8)."""

    steps: int
    guidance_scale: float
    resolution: int
    step_seconds: float  # H100 fp16, one image, one denoising step at `resolution`² (estimate)
    sites: SiteCounts  # kind -> count (text-encoder kinds: one count per encoder)
    extra_seconds: float = 0.0  # per image, outside the swept denoiser (IF's stage II upsampling)
    note: str = ""


@dataclass(frozen=True)
class Architecture:
    """Everything loco knows about one architecture, declared by its module (see the module docstring)."""

    name: str  # the `arch` of result rows and of `tiny:<name>` / `random:<name>`
    title: str  # for messages ("DeepFloyd IF")
    released: str  # "YYYY-MM": the order architectures are listed in
    adapter: type  # its ModelAdapter subclass
    pipelines: tuple[str, ...]  # diffusers pipeline classes that load as this architecture
    tiny: Callable[[], object]  # builds the tiny pipeline (seeded; `harness.models.parts.seeded`)
    costs: dict[str, ArchCost]  # loco plan's cost table, by variant (the first is the default variant)
    tiny_sites: SiteCounts  # the tiny model's site counts (a tester keeps them equal to the traced table)
    # `loco plan`'s CPU cost of the tiny model: seconds of one core per image per denoising step (a second
    # stage's steps included), measured by bench/run_tiny_jobs.py
    tiny_step_seconds: float = 0.02
    fullsize: Callable[[], object] | None = None  # builds the full-size pipeline (random weights)
    hub_ids: dict[str, str] = field(default_factory=dict)  # the papers' checkpoints -> cost variant
    # The cost variant of a checkpoint from its folder (e.g. SD2.x's 1024-d text encoder), None: the default.
    variant_of: Callable[[object], str | None] | None = None
    state_kinds: tuple[str, ...] = ("resnet",)  # site kinds whose output is the hidden state (harness.sites)
    # Edit defaults (docs/methods.md §4.4): method group (harness.edit.targets.GROUP) -> (kind, indices|None=all).
    edit_sites: dict[str, tuple[str, list[int] | None]] = field(default_factory=dict)
    text_patch_step_start: int = 0  # P3's text-edit step_start (t_s = steps - step_start)
    paper_sites: dict[str, str] = field(default_factory=dict)  # site label -> module the papers name there
    # A second stage that upsamples before scoring (IF): (job, tiny) -> its denoising steps per image, or None
    # when the job scores the first stage; `loco plan` adds them (and the cost's `extra_seconds`). None here:
    # the architecture has no second stage, and a job's `stage_ii` key is refused.
    plan_stage_ii: Callable[[object, bool], int | None] | None = None
    # (job) -> [(role, checkpoint id)]: checkpoints beyond the pipeline that a real (non-tiny) sweep loads.
    checkpoints: Callable[[object], list[tuple[str, str]]] | None = None
    # For a pipeline class that several architectures load as: (the denoiser's config) -> whether a checkpoint
    # is this architecture's (SD3.5: `qk_norm` or dual-attention layers). None: the class's default architecture.
    claims: Callable[[dict], bool] | None = None

    @property
    def default_variant(self) -> str:
        return next(iter(self.costs))


_REGISTRY: dict[str, Architecture] = {}
_DISCOVERED = False


def register(arch: Architecture) -> Architecture:
    """Add `arch` to the registry (each architecture module calls this once, at import)."""
    if arch.name in _REGISTRY and _REGISTRY[arch.name] is not arch:
        raise ValueError(f"architecture '{arch.name}' is registered twice")
    _REGISTRY[arch.name] = arch
    return arch


def architectures() -> list[Architecture]:
    """Every architecture, oldest first (sd15, if, sdxl, sd3, ...)."""
    _discover()
    return sorted(_REGISTRY.values(), key=lambda a: (a.released, a.name))


def names() -> list[str]:
    return [a.name for a in architectures()]


def get(name: str) -> Architecture | None:
    """The architecture called `name` (``sd15``), or None."""
    _discover()
    return _REGISTRY.get(name)


def for_pipeline(class_name: str, denoiser_config: dict | None = None) -> Architecture | None:
    """The architecture a diffusers pipeline class loads as, or None. Where several share the class, the one
    whose `claims` accepts `denoiser_config`, else the one that claims nothing (the class's default)."""
    sharing = [a for a in architectures() if class_name in a.pipelines]
    claimed = [a for a in sharing if a.claims is not None and denoiser_config is not None and a.claims(denoiser_config)]
    return next(iter(claimed), None) or next((a for a in sharing if a.claims is None), None)


def for_checkpoint(folder: Path, class_name: str) -> Architecture | None:
    """`for_pipeline` for a checkpoint folder: the denoiser's ``config.json`` read where the class is shared."""
    sharing = [a for a in architectures() if class_name in a.pipelines]
    config = None
    if any(a.claims is not None for a in sharing):
        path = Path(folder) / sharing[0].adapter.denoiser_name / "config.json"
        config = json.loads(path.read_text()) if path.is_file() else None
    return for_pipeline(class_name, config)


def for_variant(variant: str) -> Architecture | None:
    """The architecture that has the cost variant `variant` (``sd21`` -> sd15), or None."""
    return next((a for a in architectures() if variant in a.costs), None)


def _discover() -> None:
    """Import every module of `harness.models` once; architecture modules register themselves."""
    global _DISCOVERED
    if _DISCOVERED:
        return
    import harness.models as package

    _DISCOVERED = True  # before importing: a module that looks something up while it loads sees what is there
    try:
        for module in pkgutil.iter_modules(package.__path__):
            importlib.import_module(f"{package.__name__}.{module.name}")
    except BaseException:
        _DISCOVERED = False
        raise
