"""Stable Diffusion 3.5 (Stability AI, 2024-10): SD3's MM-DiT and pipeline (`StableDiffusion3Pipeline`,
`SD3Transformer2DModel`) with two changes — q/k RMS-normalisation in every attention (`qk_norm`), and, in
SD3.5-medium, a second attention `attn2` in the first 13 blocks (`dual_attention_layers` 0–12, "MMDiT-X").

**`attn2` is image-only self-attention, never cross-attention.** It attends over the image tokens alone (no
`add_k_proj`, no text input) and its output is added to the image stream beside the joint attention's. It is
therefore a ``self_attn`` site (`harness.sites.classify`): no text enters through it, KV swaps never touch it,
and a planted model leaves it alone. Text enters as in SD3, through each block's joint attention
(``transformer_blocks.i.attn``, `add_k_proj`/`add_v_proj`: the ``joint_attn`` sites), from a text stream that
evolves block to block — so K/V are patched from a donor row, as P3 does on SD3, and the closed-form edits
do not apply.

SD3.5-large (8B: 38 blocks of 2432, `qk_norm`, no `attn2`) is a cost variant (``sd35_large``) of the same
architecture; the transformer's config tells SD3.5 from SD3 (`claims`: `qk_norm` or dual-attention layers)
and large from medium (38 layers). Sampler defaults are the model cards': medium 40 steps at guidance 4.5,
large 28 at 3.5, 1024².

No paper localized SD3.5; `jobs/p3_localize_sd35.yaml` runs P3's SD3 protocol on it (compare with SD3's block
10).
"""

from __future__ import annotations

import json

from harness.models.adapters import GenerationConfig
from harness.models.parts import clip_text_model, clip_tokenizer, t5_tokenizer, t5_xxl_encoder, vae16
from harness.models.registry import ArchCost, Architecture, register
from harness.models.sd3 import SD3Adapter
from harness.models.sd3 import tiny_pipeline as sd3_tiny_pipeline

MEDIUM_DUAL_LAYERS = tuple(range(13))
LARGE_LAYERS = 38


class SD35Adapter(SD3Adapter):
    """SD3.5: SD3's joint attention (text K/V from add_k/add_v, patched from a donor row) plus, in medium, an
    image-only `attn2` self-attention in blocks 0–12."""

    arch = "sd35"

    @property
    def paper_defaults(self) -> GenerationConfig:  # the model cards' settings, by variant
        if self.denoiser.config.num_layers == LARGE_LAYERS:
            return GenerationConfig(28, 3.5, 1024, 1024)
        return GenerationConfig(40, 4.5, 1024, 1024)


def tiny_pipeline():
    """SD3.5-medium layout at SD3's tiny width: 24 joint blocks, `attn2` in blocks 0–12, q/k RMS norm."""
    return sd3_tiny_pipeline(dual_attention_layers=MEDIUM_DUAL_LAYERS, qk_norm="rms_norm")


def fullsize_pipeline():
    """SD3.5-medium's configuration (2.5B transformer, CLIP-L + CLIP-G + T5-XXL, 16-channel VAE), random weights."""
    from diffusers import FlowMatchEulerDiscreteScheduler, SD3Transformer2DModel, StableDiffusion3Pipeline

    transformer = SD3Transformer2DModel(
        sample_size=128, patch_size=2, in_channels=16, out_channels=16, num_layers=24, attention_head_dim=64,
        num_attention_heads=24, joint_attention_dim=4096, caption_projection_dim=1536, pooled_projection_dim=2048,
        pos_embed_max_size=384, dual_attention_layers=MEDIUM_DUAL_LAYERS, qk_norm="rms_norm",
    ).eval()
    return StableDiffusion3Pipeline(
        transformer=transformer, scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0),
        vae=vae16(scaling=1.5305, shift=0.0609),
        text_encoder=clip_text_model(768, 12, 12, 3072, 768, "quick_gelu"), tokenizer=clip_tokenizer(),
        text_encoder_2=clip_text_model(1280, 32, 20, 5120, 1280, "gelu"), tokenizer_2=clip_tokenizer(pad_token="!"),
        text_encoder_3=t5_xxl_encoder(), tokenizer_3=t5_tokenizer(256),
    )


def claims(config: dict) -> bool:
    """SD3.5, not SD3: q/k normalisation or dual-attention layers in the transformer's config."""
    return bool(config.get("qk_norm")) or bool(config.get("dual_attention_layers"))


def variant_of(folder) -> str | None:
    """``sd35_large`` for a 38-block transformer, else None (medium)."""
    config = folder / "transformer" / "config.json"
    if config.is_file() and json.loads(config.read_text()).get("num_layers") == LARGE_LAYERS:
        return "sd35_large"
    return None


_TEXT = {"text_self_attn": (12, 32, 24), "text_mlp": (12, 32, 24)}
_MEDIUM = {"joint_attn": 24, "self_attn": len(MEDIUM_DUAL_LAYERS), "ff": 24, "ff_context": 23}

SD35 = register(Architecture(
    name="sd35", title="SD3.5", released="2024-10", adapter=SD35Adapter,
    pipelines=("StableDiffusion3Pipeline",), tiny=tiny_pipeline, fullsize=fullsize_pipeline, state_kinds=(),
    costs={
        "sd35": ArchCost(40, 4.5, 1024, 0.18, {**_MEDIUM, **_TEXT},
                         note="SD3.5-medium 2.5B MM-DiT (attn2 in blocks 0-12), CLIP-L + CLIP-G + T5-XXL; estimate"),
        "sd35_large": ArchCost(28, 3.5, 1024, 0.45, {"joint_attn": 38, "ff": 38, "ff_context": 37, **_TEXT},
                               note="SD3.5-large 8B MM-DiT (38 blocks), CLIP-L + CLIP-G + T5-XXL; estimate"),
    },
    tiny_sites={**_MEDIUM, "text_self_attn": (4, 4, 2), "text_mlp": (4, 4, 2)},
    hub_ids={"stabilityai/stable-diffusion-3.5-medium": "sd35", "stabilityai/stable-diffusion-3.5-large": "sd35_large"},
    variant_of=variant_of, claims=claims,
    text_patch_step_start=2,  # P3's SD3 edit setting (no paper edits SD3.5)
))
