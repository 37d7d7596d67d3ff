"""DeepFloyd IF stage II: P3 scores IF on the 256² upsampled image, not on stage I's 64² output.

P3 localizes text in IF's *stage I* (the 22 AttnAddedKV attentions are intervened on there and nowhere
else), then upsamples every stage-I image with IF-II-L — conditioned on the row's own clean prompt (for
causal tracing too: the corruption and text restores act on stage I only), with its own fixed noise, no
intervention — and computes every metric on the 256² result (docs/methods.md §3.1,
§7.5). OCR on a 64² image reads almost nothing, and CLIP at 64² is far from its 224² training input, so
numbers scored on stage I are not comparable with P3's.

`StageII` wraps an `IFSuperResolutionPipeline` loaded without text encoder (stage I's T5 embeddings are
reused: IF-II takes the same T5-XXL conditioning), safety checker or watermarker, as P3 loads it.
`tiny:if` gets a tiny random stage II (16² → 64²) built offline from the same fixed seed as the tiny
models. Stage II's noise is seeded by the row's seed alone, so every row of a (prompt, seed) — control,
target and every variant — is upsampled from the same noise and stays pixel-aligned.

A job chooses with its ``stage_ii`` key (`harness.jobs.StageIISpec`): the checkpoint (default
``DeepFloyd/IF-II-L-v1.0`` from the local cache; ``none`` scores stage I), and the sampler settings
(IFSuperResolutionPipeline's defaults: 50 steps, guidance 4.0, noise level 250). Scoring stage I with OCR
or CLIP metrics is refused unless ``stage_ii.text_metrics_on_stage_i: true``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from harness.errors import JobError

DEFAULT_STAGE_II = "DeepFloyd/IF-II-L-v1.0"
TINY_STAGE_II = "tiny"
# Metrics that read text or semantics from the image: meaningless at 64², refused there unless asked for.
TEXT_METRICS = ("ocr", "image_notext", "clip_score", "toxicity")


def stage_ii_id(job, tiny: bool | None = None) -> str:
    """The stage-II checkpoint a job uses ('none' when it scores stage I)."""
    if tiny is None:
        tiny = job.model.startswith("tiny:")
    spec = job.stage_ii
    if spec is not None and spec.model:
        return spec.model
    return TINY_STAGE_II if tiny else DEFAULT_STAGE_II


def check_stage_i_metrics(job) -> None:
    """JobError when a job scores IF's 64² stage-I images with OCR/CLIP metrics without saying so."""
    spec = job.stage_ii
    if stage_ii_id(job) == "none" and not (spec and spec.text_metrics_on_stage_i):
        text = [m for m in job.metrics if m in TEXT_METRICS]
        if text:
            raise JobError(f"stage_ii.model: 'none' scores IF's 64×64 stage-I images, where {', '.join(text)} "
                           "are not comparable with P3 (which scores the 256×256 stage-II output); set "
                           "stage_ii.text_metrics_on_stage_i: true to score them anyway")


@dataclass
class StageII:
    """A loaded IF stage II and the settings it upsamples with."""

    pipe: object
    model_id: str
    fingerprint: str
    steps: int
    guidance_scale: float
    noise_level: int

    @property
    def scale(self) -> int:
        """How many times larger the output side is than stage I's (4 for IF-II: 64 → 256)."""
        return self.pipe.unet.config.sample_size // self.stage_i_size

    stage_i_size: int = 64

    @torch.no_grad()
    def upsample(self, images: torch.Tensor, prompt_embeds: torch.Tensor, negative: torch.Tensor | None,
                 seeds: list[int], as_float: bool = False) -> np.ndarray:
        """Stage-I images (N, 3, h, w) in [-1, 1] → uint8 (N, 4h, 4w, 3) (float32 in [0, 1] with `as_float`).

        Each row is conditioned on its own prompt embeddings and noised from a generator seeded with its
        seed (the same for every row of a prompt and seed)."""
        unet = self.pipe.unet
        kwargs = {"prompt_embeds": prompt_embeds.to(unet.dtype)}
        if self.guidance_scale > 1 and negative is not None:
            kwargs["negative_prompt_embeds"] = negative.to(unet.dtype)
        height, width = images.shape[-2] * self.scale, images.shape[-1] * self.scale
        generators = [torch.Generator("cpu").manual_seed(int(s)) for s in seeds]
        out = self.pipe(image=images.to(unet.dtype), num_inference_steps=self.steps,
                        guidance_scale=self.guidance_scale, noise_level=self.noise_level, height=height,
                        width=width, generator=generators, output_type="np", **kwargs)
        result = np.asarray(out.images, dtype=np.float32)
        return result if as_float else (result * 255).round().clip(0, 255).astype(np.uint8)


def load_stage_ii(job, device: str, dtype: torch.dtype, tiny: bool, stage_i_size: int) -> StageII | None:
    """The job's stage II on `device`, or None when it scores stage I. Offline: a local directory or the
    local Hugging Face cache only."""
    model = stage_ii_id(job, tiny)
    if model == "none":
        return None
    spec = job.stage_ii
    steps = (spec.steps if spec else None) or (10 if tiny else 50)
    guidance = spec.guidance_scale if spec else 4.0
    noise_level = spec.noise_level if spec else 250
    if model == TINY_STAGE_II:
        from harness.tiny import build_tiny_if_stage_ii

        pipe, fingerprint = build_tiny_if_stage_ii(), "tiny"
    else:
        pipe, fingerprint = _from_cache(model, dtype)
    pipe.to(device)
    pipe.set_progress_bar_config(disable=True)
    return StageII(pipe, model, fingerprint, steps, guidance, noise_level, stage_i_size)


def _from_cache(model: str, dtype: torch.dtype):
    from diffusers import IFSuperResolutionPipeline

    from harness.models.loading import ModelLoadError, dir_fingerprint, locate

    path = locate(model)
    kwargs = dict(torch_dtype=dtype, local_files_only=True, use_safetensors=True, text_encoder=None,
                  safety_checker=None, feature_extractor=None, watermarker=None, requires_safety_checker=False)
    if dtype != torch.float32 and any(path.rglob("*.fp16.safetensors")):
        kwargs["variant"] = "fp16"
    try:
        pipe = IFSuperResolutionPipeline.from_pretrained(path, **kwargs)
    except (OSError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelLoadError(f"stage_ii.model: '{model}' at '{path}' could not be loaded: {first}") from None
    return pipe, dir_fingerprint(path)


def attach(adapter, job) -> None:
    """Give an IF adapter the job's stage II (or none, after checking the metrics allow it); refuse a
    `stage_ii` key on any other architecture."""
    if adapter.arch != "if":
        if job.stage_ii is not None:
            raise JobError(f"stage_ii: only DeepFloyd IF has a stage II; model '{job.model}' is {adapter.arch}")
        return
    check_stage_i_metrics(job)
    adapter.stage_ii = load_stage_ii(job, adapter.info.device, adapter.dtype, adapter.tiny,
                                     adapter.defaults.with_job(job).height)
