"""DeepFloyd IF: stage I, a pixel-space UNet (64², T5-XXL text) whose 22 AttnAddedKV attentions are the text
sites, and stage II, which upsamples stage I's images before they are scored.

**Where text enters.** The T5 embeddings pass `unet.encoder_hid_proj`, then each attention group-norms them
and projects them with `add_k_proj`/`add_v_proj`, concatenated with the image's own K/V. The K/V inputs are
not the prompt embeddings, so a KV swap patches from a donor row (P3's cached patching), and an
inference-time text patch swaps the projected text states a layer reads (`install_text_patch`). The
attentions add their input back (a residual inside the processor), so their output is the hidden state
(`harness.sites`: a *state* site).

**Stage II** (P3, docs/methods.md §3.1, §7.5). P3 localizes text in stage I only, then upsamples every stage-I
image with IF-II-L — conditioned on the row's own clean prompt (for causal tracing too: the corruption and
text restores act on stage I only), with its own fixed noise, no intervention — and computes every metric on
the 256² result. OCR on a 64² image reads almost nothing, and CLIP at 64² is far from its 224² training input,
so numbers scored on stage I are not comparable with P3's.

`StageII` wraps an `IFSuperResolutionPipeline` loaded without text encoder (stage I's T5 embeddings are
reused: IF-II takes the same T5-XXL conditioning), safety checker or watermarker, as P3 loads it.
`tiny:if` gets a tiny random stage II (16² → 64²) built offline from the same fixed seed as the tiny models.
Stage II's noise is seeded by the row's seed alone, so every row of a (prompt, seed) — control, target and
every variant — is upsampled from the same noise and stays pixel-aligned.

A job chooses with its ``stage_ii`` key (`harness.jobs.StageIISpec`): the checkpoint (default
``DeepFloyd/IF-II-L-v1.0`` from the local cache; ``none`` scores stage I), and the sampler settings
(IFSuperResolutionPipeline's defaults: 50 steps, guidance 4.0, noise level 250). Scoring stage I with OCR or
CLIP metrics is refused unless ``stage_ii.text_metrics_on_stage_i: true``.

Papers' layers (docs/methods.md §3.2, §4.4): P3's rendered-text attention 17 (`up_blocks.1.attentions.3`),
text-edit step_start 2. LocoEdit "results in erroneous edits" on IF (T5's bidirectional attention), and the
closed-form edits need K/V that read the prompt embeddings, so there are no LocoEdit/UCE/TIME defaults.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from harness.errors import JobError, UserError
from harness.models.adapters import GenerationConfig, ModelAdapter
from harness.models.parts import seeded, t5_tokenizer, tiny_t5_encoder
from harness.models.registry import ArchCost, Architecture, register

DEFAULT_STAGE_II = "DeepFloyd/IF-II-L-v1.0"
TINY_STAGE_II = "tiny"
# Metrics that read text or semantics from the image: meaningless at 64², refused there unless asked for.
TEXT_METRICS = ("ocr", "image_notext", "clip_score", "toxicity")


class IFAdapter(ModelAdapter):
    """DeepFloyd IF stage I: pixel-space UNet, T5 text; text enters AttnAddedKV attentions through
    add_k_proj/add_v_proj after encoder_hid_proj and a per-layer norm, so injection needs a donor row."""

    arch = "if"
    branch_tensors = None  # IFPipeline has no callback_on_step_end
    kv_input_is_prompt_embeds = False
    kv_projections = ("add_k_proj", "add_v_proj")
    text_attention = {"cross_attn": "added_kv"}  # text K/V first among the keys, then the image's own
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

    def training_forward(self, noisy, t, cond, batch):
        """IF's UNet predicts noise and a learned variance; the training loss reads the noise channels."""
        return super().training_forward(noisy, t, cond, batch)[:, : noisy.shape[1]]

    stage_ii = None  # StageII: set by the worker for the job (None = score stage I)

    def prepare_for_job(self, job) -> None:
        """The job's stage II (or none, after checking the metrics allow it)."""
        check_stage_i_metrics(job)
        self.stage_ii = load_stage_ii(job, self.info.device, self.dtype, self.tiny, self.defaults.with_job(job).height)

    def generate(self, cond, negative, seeds, steps, guidance_scale, height, width, decode=True, as_float=False,
                 callback=None, upsample_cond=None):
        """Stage I (the swept UNet); with a stage II attached, its output upsampled with `upsample_cond` (the
        rows' clean prompts) when given, else with `cond`."""
        if not decode or self.stage_ii is None:
            return super().generate(cond, negative, seeds, steps, guidance_scale, height, width, decode, as_float,
                                    callback)
        kwargs = self._call_kwargs(cond, negative, seeds, guidance_scale)
        stage_i = self.pipe(**kwargs, num_inference_steps=steps, guidance_scale=guidance_scale, height=height,
                            width=width, output_type="pt").images
        neg = negative.get("negative_prompt_embeds") if negative else None
        text = (upsample_cond or cond)["prompt_embeds"]
        return self.stage_ii.upsample(stage_i, text, neg, seeds, as_float=as_float)

    def scored_columns(self, config: GenerationConfig) -> dict:
        if self.stage_ii is None:
            return {"scored_stage": "stage_i", "scored_height": config.height, "scored_width": config.width}
        scale = self.stage_ii.scale
        return {"scored_stage": "stage_ii", "scored_height": config.height * scale,
                "scored_width": config.width * scale}

    @classmethod
    def install_text_patch(cls, hooks, pipe, sites, pairs, tracker, step_start) -> None:
        """Every text layer reads the same text states — the T5 embeddings through `unet.encoder_hid_proj` —
        and computes its K/V from them (group norm, then add_k/add_v_proj). A hook on that projection notes,
        per denoiser call, which batch rows carry a remembered A embedding and B's projected states; a
        pre-hook on each patched layer swaps those rows of the states it reads, so the layer's K/V are B's
        and every other layer (and the text-time embedding) still sees A."""
        from harness.edit.install import find_module, linear, rows_of_a

        unet = pipe.unet
        proj = getattr(unet, "encoder_hid_proj", None)
        if not isinstance(proj, torch.nn.Linear):
            raise UserError("edit: text_patch on IF needs the UNet's linear encoder_hid_proj (IF-I's text projection)")
        swap: dict[int, torch.Tensor] = {}  # batch row -> B's projected text states, for the current call

        def on_projection(m, args, out):
            swap.clear()
            swap.update({row: linear(m, b) for row, b in rows_of_a(args[0], pairs).items()})
            return out

        def on_layer(m, args, kwargs):
            states = kwargs.get("encoder_hidden_states")
            if tracker.step < step_start or not swap or states is None:
                return None
            states = states.clone()
            for row, b in swap.items():
                states[row] = b.to(states.dtype)
            return args, {**kwargs, "encoder_hidden_states": states}

        hooks.forward("text_patch/unet.encoder_hid_proj", proj, on_projection)
        for site in sites:
            hooks.pre_forward(f"text_patch/{site}", find_module(pipe, site), on_layer, with_kwargs=True)


# ---- stage II -------------------------------------------------------------------------------------------

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
        if self.guidance_scale > 1 and negative is not None:  # IFSuperResolutionPipeline's own CFG rule
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
        pipe, fingerprint = build_tiny_stage_ii(), "tiny"
    else:
        pipe, fingerprint = _stage_ii_from_cache(model, dtype)
    pipe.to(device)
    pipe.set_progress_bar_config(disable=True)
    return StageII(pipe, model, fingerprint, steps, guidance, noise_level, stage_i_size)


def _stage_ii_from_cache(model: str, dtype: torch.dtype):
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


def plan_stage_ii(job, tiny: bool) -> int | None:
    """`loco plan`: stage II's denoising steps per image (None when the job scores stage I), after the same
    metric check the worker makes."""
    check_stage_i_metrics(job)
    if stage_ii_id(job, tiny) == "none":
        return None
    return (job.stage_ii.steps if job.stage_ii else None) or (10 if tiny else 50)


# ---- builders -------------------------------------------------------------------------------------------

def tiny_pipeline():
    """DeepFloyd IF stage I layout: Resnet + 3 SimpleCrossAttn down blocks (3 layers), mid, 3 up blocks
    of 4 → 22 AttnAddedKV attentions; pixel space, T5 text encoder, learned-variance DDPM."""
    from diffusers import DDPMScheduler, IFPipeline, UNet2DConditionModel

    tokenizer = t5_tokenizer()
    unet = UNet2DConditionModel(
        sample_size=16, in_channels=3, out_channels=6, layers_per_block=3, norm_num_groups=8,
        block_out_channels=(16, 32, 32, 32), attention_head_dim=8,
        down_block_types=("ResnetDownsampleBlock2D",) + ("SimpleCrossAttnDownBlock2D",) * 3,
        mid_block_type="UNetMidBlock2DSimpleCrossAttn",
        up_block_types=("SimpleCrossAttnUpBlock2D",) * 3 + ("ResnetUpsampleBlock2D",),
        cross_attention_dim=32, encoder_hid_dim=32, addition_embed_type="text", addition_embed_type_num_heads=2,
        cross_attention_norm="group_norm", resnet_time_scale_shift="scale_shift", act_fn="gelu",
    ).eval()
    scheduler = DDPMScheduler(num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2", beta_start=0.0001,
                              beta_end=0.02, thresholding=True, dynamic_thresholding_ratio=0.95,
                              sample_max_value=1.0, prediction_type="epsilon", variance_type="learned_range")
    return IFPipeline(tokenizer=tokenizer, text_encoder=tiny_t5_encoder(32, 2, len(tokenizer)), unet=unet,
                      scheduler=scheduler, safety_checker=None, feature_extractor=None, watermarker=None,
                      requires_safety_checker=False)


def _tiny_stage_ii_pipeline():
    """DeepFloyd IF stage II layout in miniature: a super-resolution UNet (image + upscaled stage-I image in,
    noise level as class embedding, T5 text through AttnAddedKV) from 16² to 64² (IF-II-L: 64² → 256²)."""
    from diffusers import DDPMScheduler, IFSuperResolutionPipeline, UNet2DConditionModel

    unet = UNet2DConditionModel(
        sample_size=64, in_channels=6, out_channels=6, layers_per_block=1, norm_num_groups=8,
        block_out_channels=(16, 32), attention_head_dim=8,
        down_block_types=("ResnetDownsampleBlock2D", "SimpleCrossAttnDownBlock2D"),
        mid_block_type="UNetMidBlock2DSimpleCrossAttn",
        up_block_types=("SimpleCrossAttnUpBlock2D", "ResnetUpsampleBlock2D"),
        cross_attention_dim=32, encoder_hid_dim=32, addition_embed_type="text", addition_embed_type_num_heads=2,
        cross_attention_norm="group_norm", resnet_time_scale_shift="scale_shift", act_fn="gelu",
        class_embed_type="timestep",
    ).eval()
    scheduler = DDPMScheduler(num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2", thresholding=True,
                              dynamic_thresholding_ratio=0.95, sample_max_value=1.0, prediction_type="epsilon",
                              variance_type="learned_range")
    noising = DDPMScheduler(num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2")
    return IFSuperResolutionPipeline(tokenizer=t5_tokenizer(), text_encoder=None, unet=unet, scheduler=scheduler,
                                     image_noising_scheduler=noising, safety_checker=None, feature_extractor=None,
                                     watermarker=None, requires_safety_checker=False)


def build_tiny_stage_ii():
    """The tiny IF stage II that `tiny:if` is scored through (weights from the fixed seed)."""
    return seeded(_tiny_stage_ii_pipeline)


DEEPFLOYD_IF = register(Architecture(
    name="if", title="DeepFloyd IF", released="2023-04", adapter=IFAdapter,
    pipelines=("IFPipeline",), tiny=tiny_pipeline,
    costs={"if": ArchCost(50, 7.0, 64, 0.03, {"cross_attn": 22, "resnet": 36, "text_self_attn": (24,),
                                                "text_mlp": (24,)}, extra_seconds=2.5,
                          note="DeepFloyd IF stage I (T5-XXL, 24 layers) + stage II 64→256 (~2.5 s per image)")},
    tiny_step_seconds=0.06,  # CPU s per image-step (bench/run_tiny_jobs.py)
    tiny_sites={"cross_attn": 22, "resnet": 36, "text_self_attn": (2,), "text_mlp": (2,)},
    hub_ids={"DeepFloyd/IF-I-XL-v1.0": "if", "DeepFloyd/IF-I-L-v1.0": "if"},
    state_kinds=("resnet", "cross_attn"),
    edit_sites={"patch": ("cross_attn", [17])},
    text_patch_step_start=2,
    paper_sites={"cross_attn#17": "unet.up_blocks.1.attentions.3"},  # P3's rendered-text attention
    plan_stage_ii=plan_stage_ii,
    checkpoints=lambda job: [("stage_ii", stage_ii_id(job))],
))
