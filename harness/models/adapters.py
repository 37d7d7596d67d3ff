"""Model adapters: every architecture behind the same small interface (encode, generate, sites, K/V).

The harness never calls a pipeline with prompt strings during a sweep. It encodes prompts once
(`encode` for the positive rows, `encode_negative` for the shared unconditional row), stacks the rows it
wants in one batch, and calls the pipeline with `prompt_embeds=` and one seeded CPU generator per row.
That is what lets one denoising pass carry many variants, and it is exactly what the pipeline does
inside a plain call, so an un-intervened row equals the plain pipeline's image. Whatever differs by
architecture (text lengths, pooled text paths, dtypes, sizes) is a method or attribute of its adapter.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import torch

from harness.errors import UserError
from harness.sites import SiteTable, discover

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

    @property
    def cfg(self) -> bool:
        return self.guidance_scale > 1

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


class ModelAdapter:
    """One loaded pipeline plus what the harness needs to know about its architecture."""

    arch: str = ""
    denoiser_name: str = "unet"
    text_encoder_names: tuple[str, ...] = ("text_encoder",)
    tokenizer_names: tuple[str, ...] = ("tokenizer",)
    # True when a cross-attention layer's K/V projections read the pipeline's prompt_embeds unchanged,
    # so injecting another prompt's embeddings is exact and needs no donor row.
    kv_input_is_prompt_embeds: bool = True
    kv_projections: tuple[str, str] = ("to_k", "to_v")
    gpu_dtype: str = "fp16"  # dtype "auto" on a GPU
    tiny_size: int = 64  # image size of the tiny random models (None: from the VAE scale factor)
    paper_defaults = GenerationConfig(50, 7.5, 512, 512)
    # Per-row tensors the pipeline's callback_on_step_end can replace; None: the pipeline has no such
    # callback, so a batch cannot branch mid-trajectory (see harness.generate).
    branch_tensors: tuple[str, ...] | None = ("latents", "prompt_embeds")

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

    def pipeline_text(self, prompt: str) -> str:
        """The prompt as the pipeline hands it to its tokenizers (token positions are found in this)."""
        return prompt

    def text_encoders(self) -> dict[str, tuple[torch.nn.Module, object]]:
        """Text encoder and its tokenizer, by component name."""
        out = {}
        for enc, tok in zip(self.text_encoder_names, self.tokenizer_names):
            if getattr(self.pipe, enc, None) is not None:
                out[enc] = (getattr(self.pipe, enc), getattr(self.pipe, tok))
        return out

    def module(self, site_name: str) -> torch.nn.Module:
        component, _, path = site_name.partition(".")
        return self.components()[component].get_submodule(path)

    def kv_modules(self, site_name: str) -> tuple[torch.nn.Module, torch.nn.Module]:
        """The K and V projections through which text enters at a text-reading attention site."""
        attn = self.module(site_name)
        return getattr(attn, self.kv_projections[0]), getattr(attn, self.kv_projections[1])

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

    def max_text_length(self, encoder_name: str) -> int:
        """The sequence length the pipeline encodes `encoder_name`'s text with."""
        return 77

    @torch.no_grad()
    def cut_pooled_text(self) -> None:
        """Cut the text paths that bypass the text-attention sites (pooled embeddings, text time
        embeddings), in place; `harness.planted` calls it. SD1.x has none."""

    @functools.cached_property
    def sites(self) -> SiteTable:
        """The site table, found by one short traced generation (forward-call order)."""
        size = self.probe_size()

        def run_once():
            cond, neg = self.encode(["a photo"]), self.encode_negative(1)
            self.generate(cond, neg, seeds=[0], steps=1, guidance_scale=2.0, height=size, width=size,
                          decode=False)

        return discover(self.components(), run_once)

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
        kwargs = dict(cond)
        if guidance_scale > 1 and negative is not None:
            kwargs.update(negative)
        generators = [torch.Generator("cpu").manual_seed(int(s)) for s in seeds]
        if callback is not None:
            kwargs.update(callback_on_step_end=callback, callback_on_step_end_tensor_inputs=list(self.branch_tensors))
        out = self.pipe(**kwargs, num_inference_steps=steps, guidance_scale=guidance_scale,
                        height=height, width=width, generator=generators,
                        output_type=self._output_type(decode))
        if not decode:
            return None
        images = np.asarray(out.images, dtype=np.float32)
        if as_float:
            return images
        return (images * 255).round().clip(0, 255).astype(np.uint8)

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


class SD15Adapter(ModelAdapter):
    """SD 1.x / 2.x: one CLIP text encoder; K/V of `attn2` read prompt_embeds directly."""

    arch = "sd15"

    def _encode(self, prompts):
        embeds, _ = self.pipe.encode_prompt(prompts, self.device, 1, False)
        return {"prompt_embeds": embeds}

    def _encode_negative(self):
        _, neg = self.pipe.encode_prompt([""], self.device, 1, True)
        return {"negative_prompt_embeds": neg}


class SDXLAdapter(ModelAdapter):
    """SDXL: two CLIP encoders concatenated for attn2; pooled text embedding as added conditioning."""

    arch = "sdxl"
    branch_tensors = ("latents", "prompt_embeds", "add_text_embeds", "add_time_ids")
    text_encoder_names = ("text_encoder", "text_encoder_2")
    tokenizer_names = ("tokenizer", "tokenizer_2")
    paper_defaults = GenerationConfig(50, 5.0, 1024, 1024)

    @torch.no_grad()
    def cut_pooled_text(self) -> None:
        pooled = self.pipe.text_encoder_2.config.projection_dim
        self.denoiser.add_embedding.linear_1.weight[:, :pooled] = 0

    def _encode(self, prompts):
        embeds, _, pooled, _ = self.pipe.encode_prompt(prompt=prompts, device=self.device,
                                                        num_images_per_prompt=1,
                                                        do_classifier_free_guidance=False)
        return {"prompt_embeds": embeds, "pooled_prompt_embeds": pooled}

    def _encode_negative(self):
        _, neg, _, neg_pooled = self.pipe.encode_prompt(prompt=[""], device=self.device,
                                                         num_images_per_prompt=1,
                                                         do_classifier_free_guidance=True)
        return {"negative_prompt_embeds": neg,
                "negative_pooled_prompt_embeds": neg_pooled}


class IFAdapter(ModelAdapter):
    """DeepFloyd IF stage I: pixel-space UNet, T5 text; text enters AttnAddedKV attentions through
    add_k_proj/add_v_proj after encoder_hid_proj and a per-layer norm, so injection needs a donor row."""

    arch = "if"
    branch_tensors = None  # IFPipeline has no callback_on_step_end
    kv_input_is_prompt_embeds = False
    kv_projections = ("add_k_proj", "add_v_proj")
    paper_defaults = GenerationConfig(50, 7.0, 64, 64)
    tiny_size = 16

    def probe_size(self) -> int:
        return 16

    @torch.no_grad()
    def cut_pooled_text(self) -> None:
        self.denoiser.add_embedding.proj.weight.zero_()

    def pipeline_text(self, prompt: str) -> str:
        # IFPipeline.encode_prompt(clean_caption=False) lower-cases and strips; T5's tokenizer is cased.
        return prompt.lower().strip()

    def _encode(self, prompts):
        embeds, _ = self.pipe.encode_prompt(prompts, do_classifier_free_guidance=False, device=self.device,
                                            clean_caption=False)
        return {"prompt_embeds": embeds}

    def _encode_negative(self):
        _, neg = self.pipe.encode_prompt([""], do_classifier_free_guidance=True, device=self.device,
                                         clean_caption=False)
        return {"negative_prompt_embeds": neg}

    def _output_type(self, decode):
        return "np" if decode else "pt"

    stage_ii = None  # harness.stage2.StageII: set by the worker for the job (None = score stage I)

    def generate(self, cond, negative, seeds, steps, guidance_scale, height, width, decode=True, as_float=False,
                 callback=None, upsample_cond=None):
        """Stage I (the swept UNet); with a stage II attached, its output upsampled (harness.stage2) with
        `upsample_cond` (the rows' clean prompts) when given, else with `cond`."""
        if not decode or self.stage_ii is None:
            return super().generate(cond, negative, seeds, steps, guidance_scale, height, width, decode, as_float,
                                    callback)
        kwargs = dict(cond)
        if guidance_scale > 1 and negative is not None:
            kwargs.update(negative)
        generators = [torch.Generator("cpu").manual_seed(int(s)) for s in seeds]
        stage_i = self.pipe(**kwargs, num_inference_steps=steps, guidance_scale=guidance_scale, height=height,
                            width=width, generator=generators, output_type="pt").images
        neg = negative.get("negative_prompt_embeds") if negative else None
        text = (upsample_cond or cond)["prompt_embeds"]
        return self.stage_ii.upsample(stage_i, text, neg, seeds, as_float=as_float)

    def scored_columns(self, config: GenerationConfig) -> dict:
        if self.stage_ii is None:
            return {"scored_stage": "stage_i", "scored_height": config.height, "scored_width": config.width}
        scale = self.stage_ii.scale
        return {"scored_stage": "stage_ii", "scored_height": config.height * scale,
                "scored_width": config.width * scale}


class SD3Adapter(ModelAdapter):
    """SD3: MMDiT joint attention; the text stream evolves block to block, so text-side K/V are
    patched from a donor row run in the same batch rather than injected from embeddings."""

    arch = "sd3"
    branch_tensors = ("latents", "prompt_embeds", "pooled_prompt_embeds")
    denoiser_name = "transformer"
    text_encoder_names = ("text_encoder", "text_encoder_2", "text_encoder_3")
    tokenizer_names = ("tokenizer", "tokenizer_2", "tokenizer_3")
    kv_input_is_prompt_embeds = False
    kv_projections = ("add_k_proj", "add_v_proj")
    paper_defaults = GenerationConfig(28, 7.0, 1024, 1024)
    gpu_dtype = "bf16"  # its reference runs tolerate it best

    def max_text_length(self, encoder_name: str) -> int:
        return 256 if encoder_name == "text_encoder_3" else 77  # T5 encodes 256 tokens

    @torch.no_grad()
    def cut_pooled_text(self) -> None:
        self.denoiser.time_text_embed.text_embedder.linear_1.weight.zero_()

    def _encode(self, prompts):
        embeds, _, pooled, _ = self.pipe.encode_prompt(prompt=prompts, prompt_2=None, prompt_3=None,
                                                        device=self.device, do_classifier_free_guidance=False)
        return {"prompt_embeds": embeds, "pooled_prompt_embeds": pooled}

    def _encode_negative(self):
        _, neg, _, neg_pooled = self.pipe.encode_prompt(prompt=[""], prompt_2=None, prompt_3=None,
                                                         device=self.device, do_classifier_free_guidance=True)
        return {"negative_prompt_embeds": neg,
                "negative_pooled_prompt_embeds": neg_pooled}


ADAPTERS: dict[str, type[ModelAdapter]] = {
    "StableDiffusionPipeline": SD15Adapter,
    "StableDiffusionXLPipeline": SDXLAdapter,
    "IFPipeline": IFAdapter,
    "StableDiffusion3Pipeline": SD3Adapter,
}
TINY_CLASS = {"sd15": "StableDiffusionPipeline", "sdxl": "StableDiffusionXLPipeline", "if": "IFPipeline",
               "sd3": "StableDiffusion3Pipeline"}
