"""Model adapters: every architecture behind the same small interface (encode, generate, sites, K/V).

The harness never calls a pipeline with prompt strings during a sweep. It encodes prompts once
(`encode` for the positive rows, `encode_negative` for the shared unconditional row), stacks the rows it
wants in one batch, and calls the pipeline with `prompt_embeds=` and one seeded CPU generator per row.
That is what lets one denoising pass carry many variants, and it is exactly what the pipeline does
inside a plain call, so an un-intervened row equals the plain pipeline's image. Whatever differs by
architecture (text lengths, pooled text paths, dtypes, sizes) is a method or attribute of its adapter.

This module holds the interface; each architecture's adapter lives in its own module with the rest of what
loco knows about it (`harness.models.sd15`, `sdxl`, `deepfloyd_if`, `sd3`; found through
`harness.models.registry`).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import torch

from harness.errors import JobError, UserError
from harness.models.text_layout import TextLayout
from harness.sites import SiteTable, classify, discover

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


class ModelLoadError(UserError):
    """A model that cannot be found or loaded; the message names the model and where it looked."""


@dataclass(frozen=True)
class GenerationConfig:
    """Sampler settings shared by every row of a sweep; each adapter's `paper_defaults` is one
    (docs/methods.md §4.4), and a job's `steps`/`guidance_scale`/`height`/`width` override it (`with_job`)."""

    steps: int
    guidance_scale: float
    height: int
    width: int

    def with_job(self, job) -> GenerationConfig:
        """These defaults with the job's sampler keys applied where the job sets them."""
        return GenerationConfig(job.steps or self.steps,
                                self.guidance_scale if job.guidance_scale is None else job.guidance_scale,
                                job.height or self.height, job.width or self.width)


@dataclass(frozen=True)
class ModelInfo:
    """What a result row records about the model that produced it."""

    model_id: str
    arch: str
    pipeline_class: str
    revision: str
    fingerprint: str
    dtype: str
    device: str


class ModelAdapter(TextLayout):
    """One loaded pipeline plus what the harness needs to know about its architecture."""

    arch: str = ""
    denoiser_name: str = "unet"
    text_encoder_names: tuple[str, ...] = ("text_encoder",)
    tokenizer_names: tuple[str, ...] = ("tokenizer",)
    # True when every cross-attention layer's K/V projections read one fixed per-prompt tensor, `kv_input`:
    # the pipeline's prompt_embeds unchanged (SD, SDXL) or a row-wise function of them computed once per call
    # (PixArt's caption projection). Injecting another prompt's K/V is then exact and needs no donor row, and
    # the closed-form K/V edits fit on that tensor.
    kv_input_is_prompt_embeds: bool = True
    kv_projections: tuple[str, str] = ("to_k", "to_v")
    gpu_dtype: str = "fp16"  # dtype "auto" on a GPU
    tiny_size: int = 64  # image size of the tiny random models (None: from the VAE scale factor)
    paper_defaults = GenerationConfig(50, 7.5, 512, 512)
    # Per-row tensors the pipeline's callback_on_step_end can replace; None: the pipeline has no such
    # callback, so a batch cannot branch mid-trajectory (see harness.generate).
    branch_tensors: tuple[str, ...] | None = ("latents", "prompt_embeds")
    # True when a guided call (guidance_scale > 1) runs classifier-free guidance as a doubled denoiser batch
    # [uncond × B, cond × B]; False for guidance-distilled models, whose guidance is an input (FLUX.1-dev).
    has_cfg_batch: bool = True
    # True when an inference-time text patch can be installed on the bare pipeline (`install_text_patch`):
    # the layers' text K/V can be recomputed from prompt B without a donor run.
    installs_text_patch: bool = True
    # Keywords every pipeline call of this architecture passes (ours and a plain one compared with ours), e.g.
    # PixArt's and SANA's ``use_resolution_binning=False``: without it a small request is silently binned to a
    # 1024-px aspect bucket.
    call_options: dict = {}
    # Steps of the short generation that discovers the sites (PixArt's pipelines read a 1-step call as a
    # distilled model's and return another output of the scheduler, which DPM-Solver does not have).
    probe_steps: int = 1
    # The objective `loco finetune` trains with (harness.finetune.objective): "ddpm" (noise or velocity
    # regression at a uniform DDPM timestep), "flow" (rectified flow: σ-interpolation, target ε − x₀), or None
    # where loco has no training step for the architecture yet (FLUX).
    training_objective: str | None = "ddpm"

    def __init__(self, pipe, info: ModelInfo, tiny: bool):
        self.pipe = pipe
        self.info = info
        self.tiny = tiny

    # ---- structure -------------------------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        return torch.device(self.info.device)

    @property
    def dtype(self) -> torch.dtype:
        return DTYPES[self.info.dtype]

    @property
    def denoiser(self) -> torch.nn.Module:
        return getattr(self.pipe, self.denoiser_name)

    def components(self) -> dict[str, torch.nn.Module]:
        """Denoiser and text encoders by component name (the prefix of every site name)."""
        names = (self.denoiser_name, *self.text_encoder_names)
        return {n: getattr(self.pipe, n) for n in names if getattr(self.pipe, n, None) is not None}

    def module(self, site_name: str) -> torch.nn.Module:
        component, _, path = site_name.partition(".")
        return self.components()[component].get_submodule(path)

    def kv_projection_names(self, site_name: str) -> tuple[str, str]:
        """The names of the K and V projections through which text enters at `site_name` (`kv_projections`;
        an architecture whose text sites differ overrides this: FLUX's single-stream blocks use to_k/to_v)."""
        return self.kv_projections

    def kv_modules(self, site_name: str) -> tuple[torch.nn.Module, torch.nn.Module]:
        """The K and V projections through which text enters at a text-reading attention site."""
        attn = self.module(site_name)
        k_name, v_name = self.kv_projection_names(site_name)
        return getattr(attn, k_name), getattr(attn, v_name)

    def text_tokens(self, site_name: str) -> tuple[int, int] | None:
        """The token range [start, stop) of the text in the outputs of `kv_modules(site_name)`, or None when
        those projections see text only (cross-attention K/V, SD3's add_k/add_v). FLUX's single-stream
        blocks project one joint sequence, text first: a KV swap copies only its text slice."""
        return None

    @torch.no_grad()
    def cut_text_at(self, site_name: str) -> None:
        """Make the text-reading site `site_name` ignore the text, in place (`harness.planted`): its K and V
        projections zeroed, weights and biases, so the text tokens' attention logits are constant and their
        values zero. An architecture whose text K/V share a projection with the image overrides this."""
        for proj in self.kv_modules(site_name):
            proj.weight.zero_()
            if proj.bias is not None:
                proj.bias.zero_()

    def plain_call_kwargs(self) -> dict:
        """Keywords a plain pipeline call needs to run as ours does: `call_options`, and any that make it encode
        prompts as `encode` does (FLUX: the T5 length)."""
        return dict(self.call_options)

    def cfg_batch(self, guidance_scale: float) -> bool:
        """Whether a call at `guidance_scale` runs the [uncond × B, cond × B] CFG batch (diffusers' SD, SDXL,
        IF and SD3 pipelines guide when guidance_scale > 1; a guidance-distilled model never does)."""
        return self.has_cfg_batch and guidance_scale > 1

    # Sampler defaults shipped with the weights (the toyworld's `toyworld.json`); None: as above.
    generation_override: GenerationConfig | None = None

    @property
    def defaults(self) -> GenerationConfig:
        if self.generation_override is not None:
            return self.generation_override
        if self.tiny:
            size = self.tiny_size
            return GenerationConfig(10, self.paper_defaults.guidance_scale, size, size)
        return self.paper_defaults

    def denoiser_calls(self, steps: int) -> int:
        """How many denoising steps (denoiser calls) a pipeline call of `steps` inference steps makes.

        Usually `steps`; PNDM (SD1.x's default) makes one more. Step windows (`step_start`) count calls.
        """
        import copy

        cache = self.__dict__.setdefault("_denoiser_calls", {})  # asked once per batch: keep the answer
        key = (steps, id(self.pipe.scheduler))
        if key not in cache:
            scheduler = copy.deepcopy(self.pipe.scheduler)
            try:
                scheduler.set_timesteps(steps)
                cache[key] = len(scheduler.timesteps)
            except (TypeError, ValueError):  # schedulers that need pipeline-computed arguments (e.g. mu)
                cache[key] = steps
        return cache[key]

    def probe_size(self) -> int:
        """Image size of the short traced generation that discovers the sites."""
        return 8 * self.pipe.vae_scale_factor

    @torch.no_grad()
    def cut_pooled_text(self) -> None:
        """Cut the text paths that bypass the text-attention sites (pooled embeddings, text time
        embeddings), in place; `harness.planted` calls it. SD1.x has none."""

    def prepare_for_job(self, job) -> None:
        """Attach what a job configures beyond the pipeline (DeepFloyd IF: its stage II); here, refuse a
        `stage_ii` key on an architecture that has none."""
        if job.stage_ii is not None:
            from harness.models.registry import architectures

            having = [a.title for a in architectures() if a.plan_stage_ii is not None]
            raise JobError(f"stage_ii: only {' and '.join(having)} has a stage II; model '{job.model}' is "
                           f"{self.arch}")

    @classmethod
    def install_text_patch(cls, hooks, pipe, sites: list[str], pairs: list, tracker, step_start: int) -> None:
        """Carry out an inference-time text patch (`harness.edit.install`) on a bare pipeline: the text K/V
        of each site recomputed from prompt B for the batch rows that carry prompt A's embedding — exact
        where the K/V projections read the prompt embeddings (`kv_input_is_prompt_embeds`)."""
        from harness.edit.install import kv_text_patch

        kv_text_patch(hooks, pipe, sites, cls.kv_projections, pairs, tracker, step_start)

    @functools.cached_property
    def sites(self) -> SiteTable:
        """The site table, found by one short traced generation (forward-call order)."""
        size = self.probe_size()

        def run_once():
            cond = self.encode(["a photo"])
            neg = self.encode_negative(1) if self.cfg_batch(2.0) else None  # guidance-distilled: no negative
            self.generate(cond, neg, seeds=[0], steps=self.probe_steps, guidance_scale=2.0, height=size, width=size,
                          decode=False)

        return discover(self.components(), run_once, self.site_kind)

    @staticmethod
    def site_kind(component: str, path: str, module: torch.nn.Module) -> str | None:
        """The kind of one of this architecture's modules, or None when it is not a site. The default,
        `harness.sites.classify`, knows diffusers' UNet and MM-DiT blocks and the CLIP/T5 text encoders; an
        architecture whose modules it does not cover overrides this."""
        return classify(component, path, module)

    # ---- text ------------------------------------------------------------------------------------
    @torch.no_grad()
    def encode(self, prompts: list[str]) -> dict[str, torch.Tensor]:
        """Positive conditioning for `prompts`: pipeline keyword → tensor with one row per prompt.

        Under no_grad: tensors that track gradients make SDPA pick another kernel, and the image would
        then differ (by ~1e-6) from a plain pipeline call.
        """
        return self._encode(list(prompts))

    @torch.no_grad()
    def encode_negative(self, n: int) -> dict[str, torch.Tensor]:
        """The unconditional conditioning a plain pipeline call uses (empty prompt), `n` rows."""
        return {k: v.expand(n, *v.shape[1:]) for k, v in self._encode_negative().items()}

    def _encode(self, prompts: list[str]) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def _encode_negative(self) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def training_forward(self, noisy: torch.Tensor, t: torch.Tensor, cond: dict[str, torch.Tensor],
                         batch) -> torch.Tensor:
        """The denoiser's prediction for a training batch (`harness.finetune.objective`), called as the
        architecture's diffusers training script calls it: (N, C, h, w) noisy input → (N, C, h, w)."""
        return self.denoiser(noisy, t, encoder_hidden_states=cond["prompt_embeds"]).sample

    # ---- generation ------------------------------------------------------------------------------
    def generate(self, cond: dict[str, torch.Tensor], negative: dict[str, torch.Tensor] | None,
                 seeds: list[int], steps: int, guidance_scale: float, height: int, width: int,
                 decode: bool = True, as_float: bool = False, callback=None,
                 upsample_cond: dict[str, torch.Tensor] | None = None) -> np.ndarray | None:
        """One pipeline call; row i starts from CPU-generator noise seeded with `seeds[i]`.

        `upsample_cond`: IF only, the conditioning stage II upsamples with (default `cond`; a corrupted row
        is upsampled with its clean prompt, as P3 upsamples with prompt A).

        Returns uint8 images (N, H, W, 3), rounded as the pipelines' own PIL conversion does (float32 in
        [0, 1] with `as_float`, for tight numerical comparisons).
        """
        kwargs = self._call_kwargs(cond, negative, seeds, guidance_scale)
        if callback is not None:
            kwargs.update(callback_on_step_end=callback, callback_on_step_end_tensor_inputs=list(self.branch_tensors))
        out = self.pipe(**kwargs, **self.call_options, num_inference_steps=steps, guidance_scale=guidance_scale,
                        height=height, width=width, output_type=self._output_type(decode))
        if not decode:
            return None
        images = np.asarray(out.images, dtype=np.float32)
        if as_float:
            return images
        return (images * 255).round().clip(0, 255).astype(np.uint8)

    def _call_kwargs(self, cond: dict, negative: dict | None, seeds: list[int], guidance_scale: float) -> dict:
        """The conditioning (with the negative half when the call runs a CFG batch) and one seeded CPU
        generator per row, as pipeline keywords."""
        kwargs = dict(cond)
        if self.cfg_batch(guidance_scale) and negative is not None:
            kwargs.update(negative)
        kwargs["generator"] = [torch.Generator("cpu").manual_seed(int(s)) for s in seeds]
        return kwargs

    def _output_type(self, decode: bool) -> str:
        return "np" if decode else "latent"

    # ---- what result rows record about the images ----------------------------------------------
    def run_columns(self) -> dict:
        """Components that change the images without being swept: IF's stage II, and whether a safety
        checker or watermarker was loaded (loco loads neither, as the papers' code does)."""
        stage_ii = getattr(self, "stage_ii", None)
        loaded = lambda name: "loaded" if getattr(self.pipe, name, None) is not None else "none"  # noqa: E731
        return {"stage_ii_model": stage_ii.model_id if stage_ii else None,
                "stage_ii_fingerprint": stage_ii.fingerprint if stage_ii else None,
                "safety_checker": loaded("safety_checker"), "watermarker": loaded("watermarker")
                if hasattr(self.pipe, "watermarker") else loaded("watermark")}

    def scored_columns(self, config: GenerationConfig) -> dict:
        """Which image the metrics were computed on, and its size."""
        return {"scored_stage": "final", "scored_height": config.height, "scored_width": config.width}


# ---- compatibility shims (delete once no branch imports them from here) ---------------------------------
_MOVED = {"SD15Adapter": "sd15", "SDXLAdapter": "sdxl", "IFAdapter": "deepfloyd_if", "SD3Adapter": "sd3"}


def __getattr__(name: str):
    """The adapters moved to their architecture modules; `ADAPTERS`/`TINY_CLASS` are the registry's."""
    import importlib

    from harness.models import registry

    if name in _MOVED:
        return getattr(importlib.import_module(f"harness.models.{_MOVED[name]}"), name)
    if name == "ADAPTERS":
        return {p: a.adapter for a in registry.architectures() for p in a.pipelines}
    if name == "TINY_CLASS":
        return {a.name: a.pipelines[0] for a in registry.architectures()}
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
