"""Job files: one YAML file describes one sweep; it is validated into `JobSpec` before anything runs.

Minimal job (everything else has a default)::

    name: van-gogh-locogen
    model: tiny:sd15            # or a diffusers directory, or a hub id already in the local HF cache
    method: locogen             # locogen | attn_patch | causal_trace | attn_contrib
    window: 2
    prompts:
      - {prompt: "a house in the style of van gogh", target: "a house", attribute: style, concept: "van gogh"}

Every validation error is one line naming the field (``prompts[2].target``) and what was expected.
"""

from __future__ import annotations

import csv
import hashlib
import json
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from harness import model_list
from harness.errors import JobError, did_you_mean
from harness.interventions import POSITIONS
from harness.methods.registry import METHOD_NAMES, get_method
from harness.metrics import check_metric, check_scorer_names
from harness.metrics.text import quoted_text  # noqa: F401  (re-exported for prompt rows)
from harness.model_list import model_slug  # noqa: F401  (re-exported)
from harness.paths import absolute, resolve_job_paths
from harness.specfile import apply_overrides, format_validation_error
from harness.words import find_words, missing_words_message

REQUIRED_KEYS = ("name", "method", "prompts")  # keys without a default; named when a job file is empty
# The categories the papers group prompts by (a prompt row's `attribute`; see PromptRow).
ATTRIBUTES = ("style", "object", "fact", "action", "color", "text", "shape", "background")  # the last two: the toyworld's

__all__ = ["ATTRIBUTES", "DEFAULT_JOB", "ExecutorSpec", "JobError", "JobSpec", "PromptRow", "SiteSelector",
           "StageIISpec", "default_job", "load_job", "model_slug", "parse_index"]


def parse_index(value: Any) -> list[int] | None:
    """Forward indices from ``5``, ``"40-50"``, ``"0-3,8,10-11"`` or a list of ints (ranges inclusive)."""
    if value is None or isinstance(value, int):
        return None if value is None else [value]
    if isinstance(value, list):
        if not all(isinstance(v, int) for v in value):
            raise ValueError("expected integers")
        return value
    if isinstance(value, str):
        out: list[int] = []
        for part in value.replace(" ", "").split(","):
            lo, sep, hi = part.partition("-")
            if not lo.isdigit() or (sep and not hi.isdigit()):
                raise ValueError(f"expected an index range like '40-50' or '0-3,8', got '{value}'")
            out.extend(range(int(lo), int(hi) + 1) if sep else [int(lo)])
        return out
    raise ValueError(f"expected an index, a range string or a list, got {type(value).__name__}")


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SiteSelector(Strict):
    """Which sites a sweep intervenes on. A bare string is a kind (``cross_attn``), a glob of names or a
    label (``cross_attn#55``, ``text_encoder_2.text_mlp#3``)."""

    kind: list[str] | None = None
    index: list[int] | None = None  # forward indices within the kind(s); "40-50" and "0-3,8" accepted
    names: list[str] | None = None  # exact site names or globs

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, value: Any) -> Any:
        if isinstance(value, str):
            return {"names": [value]} if any(c in value for c in ".*#") else {"kind": [value]}
        if isinstance(value, list):
            return {"names": value}
        if isinstance(value, dict):
            value = dict(value)
            for key in ("kind", "names"):
                if isinstance(value.get(key), str):
                    value[key] = [value[key]]
        return value

    @field_validator("index", mode="before")
    @classmethod
    def _index(cls, value: Any) -> Any:
        return parse_index(value)


class PromptRow(Strict):
    """One prompt of a sweep, in the papers' vocabulary.

    * `attribute`: the category the papers group results by — one of ``style``, ``object``, ``fact``,
      ``action``, ``color``, ``text`` (P1's Fig. 2 rows, P2's style/object/fact tables, P3's rendered text).
    * `concept`: the words in the prompt that carry it ("van gogh", "r2d2", "president of the united
      states", P3's quoted word): what causal tracing corrupts and what an edit removes. It must occur in
      the prompt.
    * `target`: what intervened layers see (LocoGen's altered prompt, P3's prompt B).
    * `text`/`target_text`: the words P3 renders (taken from the quotes in the prompts when not given).

    Before this schema the two names were used the other way round (`attribute` the span, `concept`
    sometimes a category); such a row is refused with one line saying what changed.
    """

    prompt: str = Field(min_length=1)
    target: str | None = None
    attribute: str | None = None
    concept: str | None = None
    text: str | None = None
    target_text: str | None = None
    id: str | None = None

    @model_validator(mode="after")
    def _vocabulary(self) -> PromptRow:
        in_prompt = lambda words: bool(words) and find_words(self.prompt, words) is not None  # noqa: E731
        old_form = ((self.attribute is not None and self.attribute not in ATTRIBUTES
                     and (in_prompt(self.attribute) or self.concept in ATTRIBUTES))
                    or (self.attribute is None and self.concept in ATTRIBUTES and not in_prompt(self.concept)))
        if old_form:
            raise ValueError(f"old prompt schema (attribute={self.attribute!r}, concept={self.concept!r}): "
                             f"'attribute' is now the category ({', '.join(ATTRIBUTES)}) and 'concept' the "
                             "words in the prompt that carry it; swap the two columns")
        if self.attribute is not None and self.attribute not in ATTRIBUTES:
            raise ValueError(f"attribute: unknown attribute '{self.attribute}'"
                             f"{did_you_mean(self.attribute, ATTRIBUTES)}; expected one of {', '.join(ATTRIBUTES)}")
        if self.concept is not None and not in_prompt(self.concept):
            raise ValueError(f"concept: {missing_words_message(self.prompt, self.concept)} (the words that carry it)")
        return self


class StageIISpec(Strict):
    """DeepFloyd IF only: the stage II that upsamples stage I's 64² images before scoring (P3 scores the
    256² output; see `harness.models.deepfloyd_if`). Defaults: IF-II-L from the local cache (a tiny stage II for
    `tiny:if`), IFSuperResolutionPipeline's sampler defaults (10 steps on tiny models)."""

    model: str | None = None  # local dir or cached hub id; None = DeepFloyd/IF-II-L-v1.0; "none" = score stage I
    steps: int | None = Field(None, ge=1)  # None = 50 (10 on tiny models)
    guidance_scale: float = 4.0
    noise_level: int = Field(250, ge=0, lt=1000)
    text_metrics_on_stage_i: bool = False  # allow OCR/CLIP metrics on 64² stage-I images (model: none)


class ExecutorSpec(Strict):
    """Where and how units run."""

    backend: Literal["ray", "local"] = "ray"  # local = in this process, no Ray (debugging, benchmarks)
    address: str | None = None  # Ray cluster address; None starts a local Ray on this machine
    workers: int | Literal["auto"] = "auto"  # actors; auto = one per GPU, or one on a CPU-only machine
    prompts_per_unit: int = Field(1, ge=1)  # prompt shard size of a work unit
    variants_per_unit: int | None = Field(None, ge=1)  # None = every variant of a shard in one unit
    max_retries: int = Field(2, ge=0)  # re-runs of a unit whose actor died
    # seconds queued units may wait with no worker able to run them (workers loading the model, or restarting
    # after their node was lost, until the cluster replaces it) before the sweep stops, keeping finished
    # units; the progress display shows the wait. A private Ray whose only node died stops at once.
    node_wait: float = Field(600.0, gt=0)


class JobSpec(Strict):
    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9._-]+$")
    model: str = "tiny:sd15"  # with `models`: the first of them
    # several models in one sweep (`model: [a, b]` is the same): one run directory per model under the
    # run root (`model_slug`), each with its own plan, resume and manifest; see `per_model` and harness.multisweep
    models: list[str] | None = None
    method: Literal[METHOD_NAMES]  # type: ignore[valid-type]  # the registry's names (harness.methods)
    sites: SiteSelector | None = None  # default: every site the method applies to
    window: int = Field(1, ge=1)  # m: consecutive text-attention layers intervened on together
    site_sets: list[list[str]] | None = None  # explicit site sets, one joint-swap variant each (minimal-set sweeps)
    step_start: list[int] = [0]  # first intervened denoising step (0 = noisiest); a list sweeps it
    step_end: int | None = Field(None, ge=1)  # exclusive; None = to the last step
    heads: list[int] | None = None  # attention heads to swap (None = all)
    mode: Literal["auto", "inject", "patch"] = "auto"  # auto: inject where exact (SD/SDXL), else patch
    branch: Literal["cond", "both"] | None = None  # CFG halves intervened on; default per method
    prompts: list[PromptRow] = Field(min_length=1)
    seeds: list[int] = [0]
    steps: int | None = Field(None, ge=1)  # None = the model's default (paper defaults for real models)
    guidance_scale: float | None = None
    height: int | None = Field(None, ge=8)
    width: int | None = Field(None, ge=8)
    metrics: list[str] = ["mse", "psnr", "ssim"]
    scorers: dict[str, dict[str, Any]] = {}  # per-scorer options, e.g. {clip: {model: ViT-B-32}}
    noise_scale: float = Field(3.0, gt=0)  # causal tracing: κ in κ·σ
    noise_std: Literal["embedding", "subject"] | float = "subject"  # causal tracing: σ, ROME's rule by default
    noise_seed: int = 0
    noise_draws: int = Field(1, ge=1)  # causal tracing: noise draws per prompt (ROME: 10), draw d seeds noise_seed + d
    positions: list[Literal["first_subject", "middle_subject", "last_subject", "last"]] = list(POSITIONS)
    restore: Literal["output", "state", "contribution"] = "output"  # causal tracing: output = P1 (harness.sites)
    save_images: bool = False
    batch_size: int | Literal["auto"] = "auto"
    device: str = "auto"
    dtype: Literal["auto", "fp32", "fp16", "bf16"] = "auto"
    reproducible: bool = True  # batch-independent kernels: a row's image does not depend on its batch
    executor: ExecutorSpec = ExecutorSpec()
    edit: str | None = None  # an inference-time edit (edit.yaml from `loco edit`) installed on the model
    lora: str | None = None  # a LoRA adapter directory (`loco finetune --out`) fused into the model first
    stage_ii: StageIISpec | None = None  # DeepFloyd IF's upsampler (harness.models.deepfloyd_if); an error on other models

    @model_validator(mode="before")
    @classmethod
    def _model_list(cls, value: Any) -> Any:
        return model_list.normalize(value)

    @field_validator("models")
    @classmethod
    def _models(cls, value: list[str] | None) -> list[str] | None:
        return model_list.check(value)

    @field_validator("step_start", mode="before")
    @classmethod
    def _listify(cls, value: Any) -> Any:
        return [value] if isinstance(value, int) else value

    @field_validator("seeds", mode="before")
    @classmethod
    def _seeds(cls, value: Any) -> Any:
        return parse_index(value) if isinstance(value, (int, str)) else value

    @field_validator("lora")
    @classmethod
    def _lora(cls, value: str | None) -> str | None:  # a missing or foreign directory fails here, not in a worker
        from harness.finetune.output import check_lora
        return check_lora(value)

    @field_validator("metrics")
    @classmethod
    def _metrics(cls, value: list[str]) -> list[str]:
        for name in value:
            check_metric(name, where=None)
        return value

    @field_validator("scorers")
    @classmethod
    def _scorers(cls, value: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        check_scorer_names(value, where="")
        return value

    @model_validator(mode="after")
    def _method_needs(self) -> JobSpec:
        method = get_method(self.method)
        for i, row in enumerate(self.prompts):
            method.check_prompt(i, row)
        self._method_reads(method)
        method.check_job(self)
        if self.site_sets is not None:
            if not method.joint_sets:
                raise ValueError(f"site_sets: method '{self.method}' does not intervene on sets of sites jointly "
                                 "(joint interventions are K/V swaps: locogen, attn_patch)")
            if not self.site_sets or any(not s for s in self.site_sets):
                raise ValueError("site_sets: expected a non-empty list of non-empty lists of site names")
        if any(s < 0 for s in self.step_start):
            raise ValueError("step_start: expected steps >= 0")
        if len(set(self.seeds)) != len(self.seeds):
            raise ValueError("seeds: duplicate seeds")
        if self.step_end is not None and self.step_end <= max(self.step_start):
            raise ValueError(f"step_end: {self.step_end} must be above step_start ({max(self.step_start)}); "
                             "the window [step_start, step_end) would patch no step")
        ids = [row.id for row in self.prompts if row.id is not None]
        if len(set(ids)) != len(ids):
            dup = next(i for i in ids if ids.count(i) > 1)
            raise ValueError(f"prompts: id '{dup}' is used by more than one row (ids name rows in the results)")
        return self

    def _method_reads(self, method) -> None:
        """A method-specific key the method does not read, set to anything but its default, is a mistake
        (the user expects it to act): refused, naming the methods that read it."""
        from harness.methods.base import METHOD_KEYS
        from harness.methods.registry import METHODS

        for key in METHOD_KEYS:
            default = type(self).model_fields[key].get_default(call_default_factory=True)
            if key not in method.reads and getattr(self, key) != default:
                readers = [name for name, m in METHODS.items() if key in m.reads]
                raise ValueError(f"{key}: method '{self.method}' does not read it (only {', '.join(readers)}); "
                                 "remove it")

    @property
    def effective_branch(self) -> str:
        """The job's `branch`, else its method's default (P3 patches both CFG halves, causal tracing restores
        both halves of the clean run; LocoGen swaps the conditional half)."""
        return self.branch or get_method(self.method).default_branch

    @property
    def multi_model(self) -> bool:
        """Whether this job sweeps several models (each into its own run directory)."""
        return self.models is not None and len(self.models) > 1

    def per_model(self) -> list[JobSpec]:
        """One single-model job per model of `models` (the job itself when it has one model): what each
        model's run directory holds and resumes by, so adding a model to the list re-runs nothing."""
        if self.models is None:
            return [self]
        return [self.model_copy(update={"model": m, "models": None}) for m in self.models]

    def fingerprint(self) -> str:
        """Hash of everything that changes results (not where or how they are executed)."""
        # Keys added later are left out at their defaults, so fingerprints of jobs that do not set them stay.
        defaults = {"edit": None, "lora": None, "noise_std": "embedding", "restore": "output", "models": None, "noise_draws": 1}
        unset = {key for key, value in defaults.items() if getattr(self, key) == value}
        data = self.model_dump(mode="json", exclude={"executor", "save_images", "batch_size"} | unset)
        data = get_method(self.method).hashed(self, data)  # what the method's results depend on
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]

    def prompt_ids(self) -> list[str]:
        return [row.id or f"p{i:05d}" for i, row in enumerate(self.prompts)]


def read_prompt_file(path: Path) -> list[dict]:
    """Rows of a CSV (header row) or JSONL prompt file; empty cells become missing values."""
    if not path.is_file():
        raise JobError(f"prompts: file '{path}' does not exist")
    if path.suffix == ".csv":
        with path.open(newline="", encoding="utf-8") as handle:
            return [{k: v for k, v in row.items() if v not in ("", None)} for row in csv.DictReader(handle)]
    if path.suffix in (".jsonl", ".ndjson"):
        rows = []
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as exc:
                    raise JobError(f"prompts: {path}:{n}: not valid JSON ({exc.msg})") from None
        return rows
    raise JobError(f"prompts: '{path}' must be a .csv or .jsonl file")


def load_job(data: dict | str | Path, base_dir: Path | None = None, overrides: list[str] = ()) -> JobSpec:
    """Validate a job from a dict, YAML text or a YAML file, with `--set` `overrides` applied. Every path
    in it is made absolute before anything travels (`harness.paths`): a path in the file against the
    file's folder (`base_dir` for a dict; default the working directory), one in an override against the
    working directory. Prompts may name a CSV/JSONL file."""
    source = "job"
    if isinstance(data, Path) or (isinstance(data, str) and "\n" not in data and data.endswith((".yaml", ".yml"))):
        path = Path(data)
        if not path.is_file():
            raise JobError(f"job file '{path}' does not exist")
        source, base_dir = str(path), absolute(path).parent
        data = path.read_text(encoding="utf-8")
    if isinstance(data, str):
        try:
            data = yaml.safe_load(data)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" line {mark.line + 1}" if mark else ""
            raise JobError(f"{source}:{where} not valid YAML ({getattr(exc, 'problem', exc)})") from None
    if data is None or data == {}:
        what = "job file" if source != "job" else "job"
        raise JobError(f"{source}: empty {what}: a job needs at least {', '.join(REQUIRED_KEYS)} "
                       "(see harness/default_job.yaml)")
    if not isinstance(data, dict):
        raise JobError(f"{source}: expected a mapping of job keys, got {type(data).__name__}")
    if "edits" in data and "prompts" not in data:
        raise JobError(f"{source}: this is an edit file (it has `edits:`), not a sweep job; run it with "
                       f"`loco edit {source} --out DIR`")
    data = apply_overrides(resolve_job_paths(data, base_dir), list(overrides))
    if isinstance(data.get("prompts"), str):
        try:
            data["prompts"] = read_prompt_file(Path(data["prompts"]))
        except JobError as exc:
            raise JobError(f"{source}: {exc}") from None
    try:
        return JobSpec.model_validate(data)
    except ValidationError as exc:
        raise JobError(format_validation_error(exc, source, JobSpec)) from None


DEFAULT_JOB = Path(__file__).with_name("default_job.yaml")


def default_job() -> JobSpec:
    """The embedded default: a LocoGen sweep over every cross-attention layer of the tiny SD1.x model."""
    return load_job(DEFAULT_JOB)
