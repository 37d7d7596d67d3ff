"""A model's shape without its weights: what `loco plan` and `loco sweep --dry-run` validate a job against.

A sweep's worker validates its job against the loaded model (`harness.validate`: site selection and
windows, the step window against the denoiser's calls, the prompts against the tokenizers' limits). A plan
runs the *same* checks before any weight is read, against this shape:

* a **local directory** (or a cached hub snapshot, the toyworld): each component is built from its config
  on PyTorch's meta device (no memory, no weights), so the site counts per kind are the model's own —
  7 cross-attention layers on the toyworld, not SD1.5's 16 — and its scheduler, tokenizers and shipped
  sampler defaults (`toyworld.json`) are the real ones;
* a **tiny model**: built (seeded, no files read; about a second) for its scheduler and tokenizers, with
  the site counts its architecture declares;
* a **hub id that is not cached** (planning a booking before downloading): the architecture's cost table,
  with the scheduler unknown (one denoiser call per step) and no tokenizer to check prompts against.

The adapter class of the architecture is reused on a stand-in pipeline, so every question (sampler
defaults, denoiser calls per step, the text each tokenizer reads and its length) is answered by the same
code as for a loaded model.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

from harness.errors import UserError
from harness.models import registry
from harness.models.adapters import ModelAdapter, ModelInfo
from harness.sites import TEXT_ENCODER_KINDS, SiteTable


class ShapeError(UserError):
    """A model whose shape cannot be read without loading it; one line saying why."""


@dataclass
class ModelShape:
    """What a plan knows about a model: its architecture and cost variant, its site table (counts per kind
    as on the model), and an adapter over a weightless stand-in pipeline (None for an uncached hub id)."""

    arch: registry.Architecture
    variant: str
    tiny: bool
    counts: dict[str, int | tuple[int, ...]]
    adapter: ModelAdapter | None
    source: str  # "config" | "tiny" | "cost table"

    def calls(self, steps: int) -> int:
        """Denoiser calls of a `steps`-step generation (PNDM makes one more); `steps` when unknown."""
        return self.adapter.denoiser_calls(steps) if self.adapter is not None else steps

    def tokenizers(self) -> dict[str, tuple[object, int]]:
        if self.adapter is None:
            return {}
        return {name: (tok, self.adapter.max_text_length(name)) for name, (_, tok) in self.adapter.text_encoders().items()
                if tok is not None}

    def text(self, prompt: str) -> str:
        return self.adapter.pipeline_text(prompt) if self.adapter is not None else prompt

    def defaults(self):
        from harness.models.adapters import GenerationConfig

        if self.adapter is not None:
            return self.adapter.defaults
        cost = self.arch.costs[self.variant]
        return GenerationConfig(cost.steps, cost.guidance_scale, cost.resolution, cost.resolution)


def model_shape(model: str) -> ModelShape:
    """The shape of `model` (``tiny:<arch>``, ``random:<arch>``, a directory, a cached or known hub id)."""
    from harness.models.loading import PLANT_SEP

    base = model.partition(PLANT_SEP)[0]
    if base.startswith(("tiny:", "random:")):
        return _built(model, base)
    folder = pipeline_folder(base)
    if folder is not None:
        return _from_config(model, folder)
    known = {hub_id: variant for a in registry.architectures() for hub_id, variant in a.hub_ids.items()}
    if base in known:
        arch = registry.for_variant(known[base])
        return ModelShape(arch, known[base], False, arch.costs[known[base]].sites, None, "cost table")
    if base.startswith((".", "/", "~")) or base.count("/") != 1:
        raise ShapeError(f"model '{model}': no such directory")
    raise ShapeError(f"model '{model}' is not a local directory and is not in the local Hugging Face cache, "
                     "nor one of the papers' checkpoints, so its architecture is unknown")


def _built(model: str, base: str) -> ModelShape:
    kind, _, name = base.partition(":")
    arch = registry.get(name)
    if arch is None or (kind == "random" and arch.fullsize is None):
        raise ShapeError(f"model '{model}': unknown {kind} model; expected one of "
                         + ", ".join(f"{kind}:{a}" for a in registry.names()))
    if kind == "random":  # full size: the cost table's counts; nothing is built
        return ModelShape(arch, arch.default_variant, False, arch.costs[arch.default_variant].sites, None, "cost table")
    from harness.models.parts import seeded

    pipe = seeded(arch.tiny)
    adapter = arch.adapter(pipe, ModelInfo(model, arch.name, arch.pipelines[0], "tiny", "-", "fp32", "cpu"), tiny=True)
    return ModelShape(arch, arch.default_variant, True, arch.tiny_sites, adapter, "tiny")


def pipeline_folder(base: str) -> Path | None:
    """The pipeline folder of a local directory, a built-in model or a cached hub snapshot, or None."""
    from harness.models.builtin import builtin_path

    path = Path(base).expanduser()
    if not path.is_dir():
        path = builtin_path(base) or path
    if path.is_dir() and (path / "model_index.json").is_file():
        return path
    if base.count("/") == 1 and not base.startswith((".", "/", "~")):
        from huggingface_hub import try_to_load_from_cache

        try:
            found = try_to_load_from_cache(base, "model_index.json")
        except Exception:  # an id the hub library rejects is simply not cached
            return None
        if isinstance(found, str):
            return Path(found).parent
    return None


def _from_config(model: str, folder: Path) -> ModelShape:
    """Every component the sites live in, built from its config on the meta device; the real scheduler,
    tokenizers and shipped sampler defaults."""
    from harness.models.loading import sidecar_defaults

    index = json.loads((folder / "model_index.json").read_text())
    class_name = index.get("_class_name", "")
    arch = registry.for_checkpoint(folder, class_name)
    if arch is None:
        raise ShapeError(f"model '{model}': pipeline class '{class_name}' is not supported")
    cls = arch.adapter
    parts: dict[str, object] = {}
    for name in (cls.denoiser_name, *cls.text_encoder_names, *cls.tokenizer_names, "scheduler"):
        spec = index.get(name)
        if isinstance(spec, list) and len(spec) == 2 and spec[1] and (folder / name).is_dir():
            parts[name] = _component(folder / name, *spec, tokenizer=name in cls.tokenizer_names)
    pipe = SimpleNamespace(**{n: parts.get(n) for n in (cls.denoiser_name, *cls.text_encoder_names,
                                                        *cls.tokenizer_names, "scheduler")})
    adapter = cls(pipe, ModelInfo(model, arch.name, class_name, "config", "-", "fp32", "meta"), tiny=False)
    adapter.generation_override = sidecar_defaults(folder)
    variant = (arch.variant_of and arch.variant_of(folder)) or arch.default_variant
    return ModelShape(arch, variant, False, _counts(adapter), adapter, "config")


def _component(folder: Path, library: str, class_name: str, tokenizer: bool):
    """One pipeline component from its folder: a tokenizer or scheduler for real (small files), a network
    from its config only, on the meta device. Never remote code, never the network."""
    if library not in ("diffusers", "transformers"):
        raise ShapeError(f"{folder}: component library '{library}' is not supported")
    import diffusers
    import transformers

    module = diffusers if library == "diffusers" else transformers
    cls = getattr(module, class_name, None)
    if cls is None:
        raise ShapeError(f"{folder}: unknown {library} class '{class_name}'")
    if tokenizer:
        return cls.from_pretrained(folder, local_files_only=True)
    if folder.name == "scheduler":
        return cls.from_config(cls.load_config(folder))
    from accelerate import init_empty_weights

    with init_empty_weights():
        if library == "diffusers":
            return cls.from_config(cls.load_config(folder))
        config = transformers.AutoConfig.from_pretrained(folder, local_files_only=True, trust_remote_code=False)
        return cls(config)


def _counts(adapter: ModelAdapter) -> dict[str, int | tuple[int, ...]]:
    """Sites per kind of the stand-in's components, classified as `harness.sites.discover` classifies them
    (text-encoder kinds: one count per encoder, in the architecture's encoder order)."""
    counts: Counter = Counter()
    for component, root in adapter.components().items():
        for path, module in root.named_modules():
            kind = adapter.site_kind(component, path, module)
            if kind is not None:
                counts[(kind, component if kind in TEXT_ENCODER_KINDS else "")] += 1
    out: dict[str, int | tuple[int, ...]] = {}
    encoders = [n for n in adapter.text_encoder_names if n in adapter.components()]
    for kind in dict.fromkeys(k for k, _ in counts):
        if kind in TEXT_ENCODER_KINDS:
            out[kind] = tuple(counts[(kind, e)] for e in encoders)
        else:
            out[kind] = counts[(kind, "")]
    return out


def stand_in_table(shape: ModelShape) -> SiteTable:
    from harness.preflight import stand_in_sites

    return stand_in_sites(shape.counts, shape.arch.name)
