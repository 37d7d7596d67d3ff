"""Stable Diffusion 3 (SD3.5, its successor on the same pipeline, is `harness.models.sd35`): an MM-DiT of 24
JointTransformerBlocks.
Text is CLIP-L ⊕ CLIP-G (77 tokens) concatenated with T5-XXL (256 tokens); the text stream runs through the
blocks beside the image stream and evolves block to block, and each block's joint attention reads it through
`add_k_proj`/`add_v_proj` (the ``joint_attn`` sites). The last block is `context_pre_only`, so there is one
``ff_context`` fewer than ``ff``. The pooled CLIP embedding enters through `time_text_embed`.

Because the text K/V inputs change from block to block, a KV swap patches from a donor row (P3's cached
patching), injection from embeddings is not exact, no closed-form K/V edit applies, and an inference-time
text patch cannot be installed on a bare pipeline (use `loco sweep` with `attn_patch`).

Papers' layers (docs/methods.md §3.2, §4.4): P3's rendered-text block 10 (`transformer_blocks.10.attn`),
text-edit step_start 2 (0 for toxic-text prevention).
"""

from __future__ import annotations

import torch

from harness.models.adapters import GenerationConfig, ModelAdapter
from harness.models.parts import clip_tokenizer, t5_tokenizer, tiny_clip_text_model, tiny_t5_encoder, tiny_vae
from harness.models.registry import ArchCost, Architecture, register


class SD3Adapter(ModelAdapter):
    """SD3: MMDiT joint attention; the text stream evolves block to block, so text-side K/V are
    patched from a donor row run in the same batch rather than injected from embeddings."""

    arch = "sd3"
    branch_tensors = ("latents", "prompt_embeds", "pooled_prompt_embeds")
    denoiser_name = "transformer"
    text_encoder_names = ("text_encoder", "text_encoder_2", "text_encoder_3")
    tokenizer_names = ("tokenizer", "tokenizer_2", "tokenizer_3")
    kv_input_is_prompt_embeds = False
    installs_text_patch = False
    training_objective = "flow"
    kv_projections = ("add_k_proj", "add_v_proj")
    text_attention = {"joint_attn": "joint"}  # one softmax over [image, text] keys, qk-norm on SD3.5
    text_sequence = ("text_encoder", "text_encoder_3")  # CLIP-L ⊕ CLIP-G (77 tokens), then T5 (256)
    training_objective = "flow"  # rectified flow (`train_text_to_image_lora_sd3.py`)
    paper_defaults = GenerationConfig(28, 7.0, 1024, 1024)
    gpu_dtype = "bf16"  # its reference runs tolerate it best

    def max_text_length(self, encoder_name: str) -> int:
        return 256 if encoder_name == "text_encoder_3" else 77  # T5 encodes 256 tokens

    @torch.no_grad()
    def cut_pooled_text(self) -> None:
        self.denoiser.time_text_embed.text_embedder.linear_1.weight.zero_()

    def training_forward(self, noisy, t, cond, batch):
        return self.denoiser(hidden_states=noisy, timestep=t, encoder_hidden_states=cond["prompt_embeds"],
                             pooled_projections=cond["pooled_prompt_embeds"]).sample

    def _encode(self, prompts):
        embeds, _, pooled, _ = self.pipe.encode_prompt(prompt=prompts, prompt_2=None, prompt_3=None,
                                                        device=self.device, do_classifier_free_guidance=False)
        return {"prompt_embeds": embeds, "pooled_prompt_embeds": pooled}

    def _encode_negative(self):
        _, neg, _, neg_pooled = self.pipe.encode_prompt(prompt=[""], prompt_2=None, prompt_3=None,
                                                         device=self.device, do_classifier_free_guidance=True)
        return {"negative_prompt_embeds": neg,
                "negative_pooled_prompt_embeds": neg_pooled}


def tiny_pipeline(**transformer_extra):
    """SD3 layout: 24 JointTransformerBlocks (the last context_pre_only); CLIP-L + CLIP-G + T5 text.
    `transformer_extra`: SD3.5's additions (`dual_attention_layers`, `qk_norm`)."""
    from diffusers import FlowMatchEulerDiscreteScheduler, SD3Transformer2DModel, StableDiffusion3Pipeline

    tokenizer_3 = t5_tokenizer()
    transformer = SD3Transformer2DModel(
        sample_size=8, patch_size=2, in_channels=16, out_channels=16, num_layers=24, attention_head_dim=8,
        num_attention_heads=2, joint_attention_dim=64, caption_projection_dim=16, pooled_projection_dim=64,
        pos_embed_max_size=16, **transformer_extra,
    ).eval()
    return StableDiffusion3Pipeline(
        transformer=transformer, scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0), vae=tiny_vae(16, sd3=True),
        text_encoder=tiny_clip_text_model(32, 4, True), tokenizer=clip_tokenizer(),
        text_encoder_2=tiny_clip_text_model(32, 4, True), tokenizer_2=clip_tokenizer(pad_token="!"),
        text_encoder_3=tiny_t5_encoder(64, 2, len(tokenizer_3)), tokenizer_3=tokenizer_3,
    )


_MMDIT = {"joint_attn": 24, "ff": 24, "ff_context": 23}

SD3 = register(Architecture(
    name="sd3", title="SD3", released="2024-06", adapter=SD3Adapter,
    pipelines=("StableDiffusion3Pipeline",), tiny=tiny_pipeline,
    costs={"sd3": ArchCost(28, 7.0, 1024, 0.15, {**_MMDIT, "text_self_attn": (12, 32, 24), "text_mlp": (12, 32, 24)},
                           note="SD3-medium MM-DiT, CLIP-L (12) + CLIP-G (32) + T5-XXL (24) text; ~4 s per image")},
    tiny_step_seconds=0.047,  # CPU s per image-step (bench/run_tiny_jobs.py)
    tiny_sites={**_MMDIT, "text_self_attn": (4, 4, 2), "text_mlp": (4, 4, 2)},
    hub_ids={"stabilityai/stable-diffusion-3-medium-diffusers": "sd3"},
    edit_sites={"patch": ("joint_attn", [10])},
    text_patch_step_start=2,
    paper_sites={"joint_attn#10": "transformer.transformer_blocks.10.attn"},  # P3's rendered-text block
))
