"""Edit files: one YAML file describes one edit; it is validated into `EditSpec` before any model loads.

    model: tiny:sd15
    method: locoedit           # diffquickfix | locoedit | uce | time | neurons | text_patch
    sites: [unet.up_blocks.1.attentions.1.transformer_blocks.0.attn2]   # or a kind / {kind, index}
    edits:
      - {concept: "van gogh", target: "painting"}
    lambda: 0.01

Every key not given takes the method's paper default (`DEFAULTS`, docs/methods.md §4.4, §11). A key that the
chosen method does not use is refused rather than silently ignored (the reference LocoEdit code's unused
``reg_value`` is the mistake this prevents). Errors are one line naming the key.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from harness.errors import UserError
from harness.jobs import SiteSelector
from harness.paths import absolute, resolve_job_paths
from harness.specfile import format_validation_error

METHODS = ("diffquickfix", "locoedit", "uce", "time", "neurons", "text_patch", "prompt_swap", "negative_prompt", "sld")
WEIGHT_METHODS = ("diffquickfix", "locoedit", "uce", "time")  # write a model; the others write a spec

# Paper defaults per method (docs/methods.md §1.3, §2.3, §2.4, §3.3, §11.1, §11.2).
DEFAULTS: dict[str, dict[str, Any]] = {
    "diffquickfix": {"lam": 0.01, "use_eos": True, "templates": "diffquickfix"},
    "locoedit": {"lam": 0.01, "use_eos": False, "templates": "style"},
    "uce": {"lam": 0.5, "use_eos": False, "templates": "bare"},
    "time": {"lam": 0.1, "use_eos": True, "templates": "bare"},
    "neurons": {"templates": "style"},
    "text_patch": {},
    "prompt_swap": {}, "negative_prompt": {}, "sld": {},  # P3's toxic-text baselines (harness.edit.baselines)
}
TOXIC_BASELINES = ("prompt_swap", "negative_prompt", "sld")
# Keys only some methods read: method → allowed.
METHOD_KEYS = {
    "lambda_v": ("locoedit",),
    "preserve": ("uce", "locoedit", "time", "diffquickfix"),
    "preserve_scale": ("uce", "locoedit", "time", "diffquickfix"),
    "edit_scale": ("uce",),
    "prior": ("uce", "locoedit", "time"),
    "prior_prompts": ("uce", "locoedit", "time"),
    "prior_ridge": ("uce", "locoedit", "time"),
    "reference_bias": ("diffquickfix",),
    "with_to_k": ("time",),
    "top_n": ("neurons",),
    "reference_position": ("neurons",),
    "neutral_templates": ("neurons",),
    "step_start": ("text_patch",),
    "words_file": ("text_patch", "prompt_swap", "negative_prompt", "sld"),
    "replacement": ("text_patch", "prompt_swap"),
    "negative_template": ("negative_prompt", "sld"),
    "safety_concept": ("sld",),
    **{k: ("sld",) for k in ("sld_guidance_scale", "sld_warmup_steps", "sld_threshold", "sld_momentum_scale",
                             "sld_mom_beta")},
    "branch": ("neurons",),
}


class EditSpecError(UserError):
    """An edit file that cannot run as written; the message is one line naming the key."""


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class ConceptEdit(Strict):
    """One thing to change: prompts mentioning `concept` should behave as if they said `target`."""

    concept: str = Field(min_length=1)
    target: str = ""  # "" = erase toward the empty prompt (UCE's moderation guide)
    attribute: str | None = None  # style | object | fact | text ... (chooses default templates)

    @field_validator("concept")
    @classmethod
    def _words(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("expected words (the concept is blank)")
        return value


class EditSpec(Strict):
    name: str | None = Field(None, pattern=r"^[A-Za-z0-9._-]+$")
    model: str = "tiny:sd15"
    method: Literal["diffquickfix", "locoedit", "uce", "time", "neurons", "text_patch", "prompt_swap",
                    "negative_prompt", "sld"]
    sites: SiteSelector | None = None  # default: the method's paper layers for the architecture
    candidates: str | None = None  # a `loco candidates` file instead of `sites`
    candidate: str | None = None  # which set of the candidates file (an attribute); default the first
    edits: list[ConceptEdit] = Field(default_factory=list)
    lam: float | None = Field(None, alias="lambda")  # λ: pull toward the old weights (K's λ for LocoEdit)
    lambda_v: float | None = None  # LocoEdit: λ for to_v (default: the same as lambda)
    templates: list[str] | None = None  # augmentation templates with '{}'; default per method/attribute
    use_eos: bool | None = None  # also fit the EOS/padding positions after the last subject token
    preserve: list[str] = []  # concepts whose outputs must stay (UCE's preserve set)
    preserve_scale: float = Field(1.0, gt=0)
    edit_scale: float = Field(1.0, gt=0)
    prior: Literal["identity", "covariance"] = "identity"  # covariance = MEMIT's key second-moment prior
    prior_prompts: list[str] = []  # prompts whose token embeddings estimate the covariance
    # a rank-deficient covariance is refused; ε here regularizes it to C0 + ε·mean(eig C0)·I (in the manifest)
    prior_ridge: float | None = Field(None, gt=0)
    reference_bias: bool = False  # DiffQuickFix: keep the notebook's bias-in-target quirk
    with_to_k: bool = False  # TIME: also edit to_k (its paper runs use --with_to_k)
    top_n: int = Field(50, ge=1)  # neurons: how many K/V output neurons per projection
    reference_position: bool = False  # neurons: read activations at position 76 as the reference code
    neutral_templates: list[str] | None = None  # neurons: templates of the neutral prompts (default: same)
    branch: Literal["cond", "both"] = "cond"  # neurons: CFG halves the neurons are set on
    step_start: int | None = Field(None, ge=0)  # text_patch: first patched step (default per arch)
    words_file: str | None = None  # text_patch: a user word list; any listed word triggers the patch
    replacement: str | None = None  # text_patch with words_file, prompt_swap: the benign word patched in
    negative_template: str | None = None  # negative_prompt, sld with safety_concept words: 'text "{word}"' (P3)
    safety_concept: str | None = None  # sld: the concept guided away from (default diffusers'; "words": the list)
    sld_guidance_scale: float | None = Field(None, gt=1)  # sld: MEDIUM preset by default (harness.edit.baselines)
    sld_warmup_steps: int | None = Field(None, ge=0)
    sld_threshold: float | None = None
    sld_momentum_scale: float | None = Field(None, ge=0)
    sld_mom_beta: float | None = Field(None, ge=0, lt=1)
    device: str = "auto"
    dtype: Literal["auto", "fp32", "fp16", "bf16"] = "auto"

    @model_validator(mode="before")
    @classmethod
    def _method_keys(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("method") in METHODS:
            for key, methods in METHOD_KEYS.items():
                if key in data and data["method"] not in methods:
                    raise ValueError(f"{key}: not used by method '{data['method']}' (only by "
                                     f"{', '.join(methods)})")
        return data

    @model_validator(mode="after")
    def _check(self) -> EditSpec:
        for key in ("lam", "lambda_v"):
            value = getattr(self, key)
            if value is not None and not value > 0:
                raise ValueError(f"{'lambda' if key == 'lam' else key}: expected a value > 0, got {value}")
        if self.sites is not None and self.candidates is not None:
            raise ValueError("candidates: give either sites or candidates, not both")
        if self.method in TOXIC_BASELINES:
            if not self.words_file:
                raise ValueError(f"words_file: required for {self.method} (the word list whose prompts it acts on)")
            if self.method == "prompt_swap" and not self.replacement:
                raise ValueError("replacement: required for prompt_swap (the benign word generated instead)")
            if self.edits:
                raise ValueError(f"edits: {self.method} takes its words from words_file; give no edits")
        elif self.method == "text_patch" and self.words_file:
            if not self.replacement:
                raise ValueError("replacement: required with words_file (the benign word patched in)")
            if self.edits:
                raise ValueError("edits: with words_file the words come from the file; give no edits")
        elif not self.edits:
            raise ValueError("edits: required, a list of {concept, target}")
        if self.prior == "covariance" and not self.prior_prompts:
            raise ValueError("prior_prompts: required with prior: covariance (prompts to estimate it from)")
        if self.prior_ridge is not None and self.prior != "covariance":
            raise ValueError("prior_ridge: only with prior: covariance (it regularizes the key covariance)")
        return self

    # ---- effective values -------------------------------------------------------------------------
    @property
    def is_weight_edit(self) -> bool:
        return self.method in WEIGHT_METHODS

    @property
    def lambda_k(self) -> float:
        return self.lam if self.lam is not None else DEFAULTS[self.method]["lam"]

    @property
    def lambda_value(self) -> float:
        return self.lambda_v if self.lambda_v is not None else self.lambda_k

    @property
    def eos(self) -> bool:
        return self.use_eos if self.use_eos is not None else DEFAULTS[self.method].get("use_eos", False)

    def augmentations(self) -> list[str]:
        from harness.edit.keys import TEMPLATES

        if self.templates is not None:
            return list(self.templates)
        default = DEFAULTS[self.method].get("templates", "bare")
        attribute = next((e.attribute for e in self.edits if e.attribute), None)
        if self.method in ("locoedit", "neurons") and attribute in ("object", "fact"):
            default = "object"
        return list(TEMPLATES[default])

    def edit_id(self) -> str:
        """Stable id of this edit: a hash of everything that changes the result."""
        data = self.model_dump(mode="json", by_alias=True, exclude={"device", "name"})
        digest = hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:12]
        return f"{self.name or self.method}-{digest}"


def load_edit(data: dict | str | Path) -> EditSpec:
    """Validate an edit from a dict or a YAML file; paths in it (`model`, `candidates`, `words_file`) are
    made absolute against its folder (`harness.paths`), so the manifest and the edited model record
    where they are."""
    from harness.specfile import read_mapping

    data, source, base = read_mapping(data, "edit", "model, method, edits, ...", EditSpecError)
    data = resolve_job_paths(data, absolute(base))  # model, candidates, words_file: against the file's folder
    try:
        return EditSpec.model_validate(data)
    except ValidationError as exc:
        raise EditSpecError(format_validation_error(exc, source, EditSpec)) from None
