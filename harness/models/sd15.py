"""Stable Diffusion 1.x / 2.x (and OpenJourney, and the toyworld model): one CLIP text encoder, a UNet whose
16 cross-attention layers (`attn2`, one transformer block each) read the prompt embeddings directly.

Because `attn2.to_k`/`to_v` see `prompt_embeds` unchanged, injecting another prompt's embeddings at a layer is
exact (LocoGen, P3 injection) and the closed-form edits (LocoEdit, UCE, TIME) rewrite those projections.
SD2.x has the same layout with a 1024-d OpenCLIP text encoder; `loco plan` tells the two apart by the text
encoder's width (cost variant ``sd21``). The toyworld model (`harness/toyworld/`) is an SD1.x pipeline at
toy sizes, loaded through this adapter with the sampler defaults it ships (`toyworld.json`).

Papers' layers (docs/methods.md §2.2, §4.4): LocoGen/LocoEdit style window 8–9 (`up_blocks.1.attentions.{1,2}`),
objects and facts 6 (`mid_block`); P1's causal text site and DiffQuickFix: the first text encoder's layer-0
self-attention.
"""

from __future__ import annotations

import json

from harness.models.adapters import ModelAdapter
from harness.models.parts import clip_text_model, clip_tokenizer, sd_vae, tiny_clip_text_model, tiny_vae
from harness.models.registry import ArchCost, Architecture, register


class SD15Adapter(ModelAdapter):
    """SD 1.x / 2.x: one CLIP text encoder; K/V of `attn2` read prompt_embeds directly."""

    arch = "sd15"

    def _encode(self, prompts):
        embeds, _ = self.pipe.encode_prompt(prompts, self.device, 1, False)
        return {"prompt_embeds": embeds}

    def _encode_negative(self):
        _, neg = self.pipe.encode_prompt([""], self.device, 1, True)
        return {"negative_prompt_embeds": neg}


def tiny_pipeline():
    """SD1.x layout: 3 CrossAttnDown + Down, cross-attn mid, Up + 3 CrossAttnUp → 16 attn2 sites."""
    from diffusers import PNDMScheduler, StableDiffusionPipeline, UNet2DConditionModel

    unet = UNet2DConditionModel(
        sample_size=8, in_channels=4, out_channels=4, layers_per_block=2, norm_num_groups=8,
        block_out_channels=(16, 32, 32, 32), cross_attention_dim=32, attention_head_dim=4,
        down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
        up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
    ).eval()
    scheduler = PNDMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                              skip_prk_steps=True, steps_offset=1, set_alpha_to_one=False)
    return StableDiffusionPipeline(
        vae=tiny_vae(), text_encoder=tiny_clip_text_model(32, 4, False), tokenizer=clip_tokenizer(), unet=unet,
        scheduler=scheduler, safety_checker=None, feature_extractor=None, requires_safety_checker=False,
    )


def fullsize_pipeline():
    """Stable Diffusion 1.5's configuration (860M UNet parameters), random weights."""
    from diffusers import PNDMScheduler, StableDiffusionPipeline, UNet2DConditionModel

    unet = UNet2DConditionModel(sample_size=64, cross_attention_dim=768, attention_head_dim=8,
                                block_out_channels=(320, 640, 1280, 1280), layers_per_block=2).eval()
    scheduler = PNDMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                              skip_prk_steps=True, steps_offset=1, set_alpha_to_one=False)
    return StableDiffusionPipeline(vae=sd_vae(0.18215),
                                   text_encoder=clip_text_model(768, 12, 12, 3072, None, "quick_gelu"),
                                   tokenizer=clip_tokenizer(), unet=unet, scheduler=scheduler, safety_checker=None,
                                   feature_extractor=None, requires_safety_checker=False)


def variant_of(folder) -> str | None:
    """``sd21`` for an SD2.x checkpoint (its OpenCLIP text encoder is 1024 wide), else None (SD1.x)."""
    text = folder / "text_encoder" / "config.json"
    if text.is_file() and json.loads(text.read_text()).get("hidden_size") == 1024:
        return "sd21"
    return None


_UNET15 = {"cross_attn": 16, "self_attn": 16, "ff": 16, "resnet": 22}

SD15 = register(Architecture(
    name="sd15", title="SD1.x/2.x", released="2022-08", adapter=SD15Adapter,
    pipelines=("StableDiffusionPipeline",), tiny=tiny_pipeline, fullsize=fullsize_pipeline,
    costs={
        "sd15": ArchCost(50, 7.5, 512, 0.025, {**_UNET15, "text_self_attn": (12,), "text_mlp": (12,)},
                         note="SD1.x / OpenJourney, CLIP ViT-L text (12 layers); ~1.3 s per 50-step image"),
        "sd21": ArchCost(50, 7.5, 512, 0.025, {**_UNET15, "text_self_attn": (23,), "text_mlp": (23,)},
                         note="SD2.x, OpenCLIP ViT-H text (23 layers); LocoGen samples 512²"),
    },
    tiny_step_seconds=0.011,  # CPU s per image-step (bench/run_tiny_jobs.py)
    tiny_sites={**_UNET15, "text_self_attn": (4,), "text_mlp": (4,)},
    hub_ids={"CompVis/stable-diffusion-v1-4": "sd15", "runwayml/stable-diffusion-v1-5": "sd15",
             "stable-diffusion-v1-5/stable-diffusion-v1-5": "sd15", "prompthero/openjourney": "sd15",
             "stabilityai/stable-diffusion-2-1": "sd21", "stabilityai/stable-diffusion-2-1-base": "sd21"},
    variant_of=variant_of,
    edit_sites={"window": ("cross_attn", [8, 9]), "all": ("cross_attn", None), "text": ("text_self_attn", [0])},
    text_patch_step_start=0,
    paper_sites={"cross_attn#8": "unet.up_blocks.1.attentions.1.transformer_blocks.0.attn2",  # P2 style
                 "cross_attn#6": "unet.mid_block.attentions.0.transformer_blocks.0.attn2",  # P2 objects, facts
                 "text_self_attn#0": "text_encoder.encoder.layers.0.self_attn"},  # P1, DiffQuickFix
))
