"""Fine-tune files: one YAML file describes one LoRA fine-tune; it is validated into `FinetuneSpec`.

    model: toyworld
    candidates: runs/demo/candidates.yaml     # the layers a sweep localized (`loco candidates`), or
    # candidate: word                         #   which set of it (an attribute or concept; default the first)
    # sites: [cross_attn#1]                   # named sites, or
    # baseline: all_attention                 # every attention module (self and cross), or all_cross_attention
    # random: 3                               # N text-attention layers drawn with `seed`
    data: {toyworld: {words: [BUG, NUT, TAX, COD], n: 2000}}   # or a folder with metadata.jsonl
    rank: 4
    steps: 300

Defaults are the values P3 launched its SDXL LoRA with (docs/methods.md §3.8; `P3_SDXL`): PEFT LoRA with
r = alpha = 64 and gaussian init on `to_q, to_k, to_v, to_out.0`, AdamW (β 0.9/0.999, weight decay 1e-2,
gradient clip 1.0) at a constant lr 1e-6 with no warm-up, batch 128 (per GPU; P3 ran 4, i.e.
`accumulate: 4` on one), 7,254 steps, seed 42, 512 px centre crops, fp16 mixed precision on a GPU, gradient
checkpointing. A toyworld run on a CPU sets its own small values. Errors are one line naming the key.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from harness.errors import UserError
from harness.jobs import SiteSelector
from harness.specfile import format_validation_error

P3_SDXL: dict[str, Any] = {  # P3's launched settings (docs/methods.md §3.8, issue #17): the spec's defaults
    "rank": 64, "lr": 1e-6, "steps": 7254, "batch": 128, "seed": 42, "resolution": 512,
    "mixed_precision": "fp16", "gradient_checkpointing": True, "weight_decay": 1e-2, "max_grad_norm": 1.0,
}
PROJECTIONS = ("to_q", "to_k", "to_v", "to_out.0")  # P3's target projections in every chosen attention module
BASELINES = ("all_attention", "all_cross_attention")
SELECTORS = ("candidates", "sites", "baseline", "random")


class FinetuneError(UserError):
    """A fine-tune that cannot run as written; one line naming the key or file."""


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ToyworldData(Strict):
    """Signs and object scenes drawn by the toyworld renderer (`harness.finetune.data.toyworld_set`).
    `words` may be words the world never shows (any letters of the renderer's font); `objects` is the
    share of object scenes from the world's training split mixed in (0: signs only)."""

    words: list[str] = Field(min_length=1)
    n: int = Field(1000, ge=1)
    seed: int = 0
    objects: float = Field(0.0, ge=0.0, le=1.0)

    @field_validator("words")
    @classmethod
    def _words(cls, value: list[str]) -> list[str]:
        from harness.toyworld.render import FONT

        for word in value:
            missing = sorted({c for c in word if c not in FONT})
            if not word or missing:
                raise ValueError(f"word '{word}' has letters the toyworld font cannot draw: "
                                 f"{', '.join(missing) or '(empty)'}; it has {''.join(sorted(FONT))}")
        return value


class DataSpec(Strict):
    """Training images: a diffusers-style image folder (`metadata.jsonl` lines with `file_name` and
    `text`), or the built-in toyworld generator."""

    folder: str | None = None
    toyworld: ToyworldData | None = None

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, value: Any) -> Any:
        return {"folder": value} if isinstance(value, str) else value

    @model_validator(mode="after")
    def _one(self) -> DataSpec:
        if (self.folder is None) == (self.toyworld is None):
            raise ValueError("expected a folder (metadata.jsonl with file_name, text) or {toyworld: {words, n}}")
        return self


class FinetuneSpec(Strict):
    name: str | None = Field(None, pattern=r"^[A-Za-z0-9._-]+$")
    model: str = "tiny:sd15"
    # which attention modules get adapters: exactly one of these four
    candidates: str | None = None  # a `loco candidates` file (refused when made for another model)
    candidate: str | None = None  # which set of it: an attribute or concept (default: the first set)
    sites: SiteSelector | None = None  # named sites, a kind, or {kind, index}
    baseline: Literal["all_attention", "all_cross_attention"] | None = None
    random: int | None = Field(None, ge=1)  # N text-attention layers drawn with `seed`
    projections: list[str] = list(PROJECTIONS)
    data: DataSpec
    rank: int = Field(P3_SDXL["rank"], ge=1)
    alpha: float | None = Field(None, gt=0)  # None = rank (P3: lora_alpha = r)
    lr: float = Field(P3_SDXL["lr"], gt=0)
    steps: int = Field(P3_SDXL["steps"], ge=1)
    batch: int = Field(P3_SDXL["batch"], ge=1)
    accumulate: int = Field(1, ge=1)  # micro-batches per optimizer step (P3: 4 GPUs ≈ accumulate 4)
    seed: int = P3_SDXL["seed"]
    resolution: int | None = Field(None, ge=8)  # None = min(512, the model's sampling size)
    center_crop: bool = True
    mixed_precision: Literal["auto", "no", "fp16", "bf16"] = "auto"  # auto: fp16 on a GPU (P3), none on CPU
    gradient_checkpointing: bool = P3_SDXL["gradient_checkpointing"]
    weight_decay: float = Field(P3_SDXL["weight_decay"], ge=0)
    max_grad_norm: float = Field(P3_SDXL["max_grad_norm"], gt=0)
    snr_gamma: float | None = Field(None, gt=0)  # Min-SNR loss weighting (diffusers' --snr_gamma); None = off
    checkpoint_every: int = Field(500, ge=1)  # steps between resumable checkpoints
    device: str = "auto"

    @field_validator("rank", mode="before")
    @classmethod
    def _rank(cls, value: Any) -> Any:
        if isinstance(value, int) and value < 1:
            raise ValueError(f"expected a LoRA rank >= 1, got {value}")
        return value

    @field_validator("projections")
    @classmethod
    def _projections(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("expected at least one projection (e.g. to_q, to_k, to_v, to_out.0)")
        return value

    @model_validator(mode="after")
    def _one_selector(self) -> FinetuneSpec:
        given = [key for key in SELECTORS if getattr(self, key) is not None]
        if len(given) != 1:
            what = f"got {', '.join(given)}" if given else "got none"
            raise ValueError(f"expected exactly one of {', '.join(SELECTORS)} (which modules to adapt); {what}")
        if self.candidate is not None and self.candidates is None:
            raise ValueError("candidate: only with candidates (which set of the candidates file)")
        return self

    @property
    def lora_alpha(self) -> float:
        return self.alpha if self.alpha is not None else float(self.rank)

    def fingerprint(self) -> str:
        """Hash of everything that changes the adapter (not where it runs): a checkpoint resumes only
        under the spec that wrote it."""
        data = self.model_dump(mode="json", exclude={"device", "checkpoint_every"})
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


def load_finetune(data: dict | str | Path, overrides: list[str] = ()) -> FinetuneSpec:
    """Validate a fine-tune from a dict or a YAML file (`--set` `overrides` applied); file keys
    (candidates, data folder) are resolved against the spec file's folder."""
    from harness.paths import absolute, resolve_job_paths
    from harness.specfile import apply_overrides, read_mapping

    data, source, base = read_mapping(data, "fine-tune", "model, data, sites, ...", FinetuneError)
    data = apply_overrides(resolve_job_paths(data, absolute(base)), list(overrides))  # model: as typed (harness.paths)
    if isinstance(data.get("candidates"), str):
        data["candidates"] = str((base / data["candidates"]).resolve())
    folder = data.get("data")
    if isinstance(folder, dict) and isinstance(folder.get("folder"), str):
        folder = folder["folder"]
    if isinstance(folder, str):
        data["data"] = {"folder": str((base / folder).resolve())}
    try:
        return FinetuneSpec.model_validate(data)
    except ValidationError as exc:
        raise FinetuneError(format_validation_error(exc, source, FinetuneSpec)) from None
