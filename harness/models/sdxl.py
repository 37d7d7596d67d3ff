"""SDXL: two CLIP text encoders (CLIP-L 768 ⊕ OpenCLIP bigG 1280, penultimate states concatenated → 2048)
read by 70 cross-attention layers (transformer depth 2 in down_blocks.1/up_blocks.1, 10 in
down_blocks.2/mid/up_blocks.0); the pooled bigG embedding and the size/crop time ids enter as added
conditioning, a text path beside the cross-attention layers (cut in a planted model).

`attn2.to_k`/`to_v` read `prompt_embeds` unchanged, so injection is exact and the closed-form edits apply.

Papers' layers (docs/methods.md §2.2, §3.2, §4.4), in forward order: P2's LocoGen window start 45
(`up_blocks.0.attentions.1.transformer_blocks.1`; the blog's "45–48"), P3's rendered-text layers 55–57
(`up_blocks.0.attentions.2.transformer_blocks.{1,2,3}`), P3's text-edit step_start 4.
"""

from __future__ import annotations

import torch

from harness.models.adapters import GenerationConfig, ModelAdapter
from harness.models.parts import clip_text_model, clip_tokenizer, sd_vae, tiny_clip_text_model, tiny_vae
from harness.models.registry import ArchCost, Architecture, register


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

    def training_forward(self, noisy, t, cond, batch):
        """With SDXL's micro-conditioning: the pooled text embedding, and original size, crop corner and
        target size as time ids (`train_text_to_image_lora_sdxl.py`)."""
        embeds = cond["prompt_embeds"]
        size = noisy.shape[-1] * self.pipe.vae_scale_factor
        time_ids = torch.tensor([[*o, *c, size, size] for o, c in zip(batch.original_sizes, batch.crops)],
                                dtype=embeds.dtype, device=embeds.device)
        extra = {"text_embeds": cond["pooled_prompt_embeds"], "time_ids": time_ids}
        return self.denoiser(noisy, t, encoder_hidden_states=embeds, added_cond_kwargs=extra).sample

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


def tiny_pipeline():
    """SDXL layout: transformer depth (–, 2, 10), mid 10 → 70 attn2 sites; two CLIP encoders + pooled."""
    from diffusers import EulerDiscreteScheduler, StableDiffusionXLPipeline, UNet2DConditionModel

    unet = UNet2DConditionModel(
        sample_size=8, in_channels=4, out_channels=4, layers_per_block=2, norm_num_groups=8,
        block_out_channels=(16, 32, 32), transformer_layers_per_block=(1, 2, 10), attention_head_dim=(2, 4, 4),
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=64, use_linear_projection=True, addition_embed_type="text_time",
        addition_time_embed_dim=8, projection_class_embeddings_input_dim=32 + 6 * 8,
    ).eval()
    scheduler = EulerDiscreteScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                                       steps_offset=1, timestep_spacing="leading")
    return StableDiffusionXLPipeline(
        vae=tiny_vae(), text_encoder=tiny_clip_text_model(32, 4, False),
        text_encoder_2=tiny_clip_text_model(32, 4, True), tokenizer=clip_tokenizer(),
        tokenizer_2=clip_tokenizer(pad_token="!"), unet=unet, scheduler=scheduler,
        force_zeros_for_empty_prompt=True, add_watermarker=False,
    )


def fullsize_pipeline():
    """SDXL base's configuration (2.6B UNet parameters), random weights."""
    from diffusers import EulerDiscreteScheduler, StableDiffusionXLPipeline, UNet2DConditionModel

    unet = UNet2DConditionModel(
        sample_size=128, block_out_channels=(320, 640, 1280), layers_per_block=2,
        transformer_layers_per_block=(1, 2, 10), attention_head_dim=(5, 10, 20),
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"), cross_attention_dim=2048,
        use_linear_projection=True, addition_embed_type="text_time", addition_time_embed_dim=256,
        projection_class_embeddings_input_dim=2816).eval()
    scheduler = EulerDiscreteScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                                       steps_offset=1, timestep_spacing="leading")
    return StableDiffusionXLPipeline(
        vae=sd_vae(0.13025), text_encoder=clip_text_model(768, 12, 12, 3072, None, "quick_gelu"),
        text_encoder_2=clip_text_model(1280, 32, 20, 5120, 1280, "gelu"), tokenizer=clip_tokenizer(),
        tokenizer_2=clip_tokenizer(pad_token="!"), unet=unet, scheduler=scheduler, add_watermarker=False)


_UNETXL = {"cross_attn": 70, "self_attn": 70, "ff": 70, "resnet": 17}

SDXL = register(Architecture(
    name="sdxl", title="SDXL", released="2023-07", adapter=SDXLAdapter,
    pipelines=("StableDiffusionXLPipeline",), tiny=tiny_pipeline, fullsize=fullsize_pipeline,
    costs={"sdxl": ArchCost(50, 5.0, 1024, 0.10, {**_UNETXL, "text_self_attn": (12, 32), "text_mlp": (12, 32)},
                            note="SDXL base, CLIP-L (12) + OpenCLIP bigG (32) text; ~5 s per 50-step image")},
    tiny_step_seconds=0.015,  # CPU s per image-step (bench/run_tiny_jobs.py)
    tiny_sites={**_UNETXL, "text_self_attn": (4, 4), "text_mlp": (4, 4)},
    hub_ids={"stabilityai/stable-diffusion-xl-base-1.0": "sdxl"},
    edit_sites={"window": ("cross_attn", [45, 46, 47]), "all": ("cross_attn", None),
                "text": ("text_self_attn", [0]), "patch": ("cross_attn", [55, 56, 57])},
    text_patch_step_start=4,
    paper_sites={"cross_attn#45": "unet.up_blocks.0.attentions.1.transformer_blocks.1.attn2",  # P2 window start
                 **{f"cross_attn#{54 + k}": f"unet.up_blocks.0.attentions.2.transformer_blocks.{k}.attn2"
                    for k in (1, 2, 3)}},  # P3's rendered-text layers 55-57
))
