"""Full-size architectures with random weights: ``random:sd15`` and ``random:sdxl``.

Same configurations as Stable Diffusion 1.5 and SDXL base (UNet, VAE, CLIP text encoders; 860M / 2.6B
UNet parameters), weights drawn at random directly on the target device. A full-size random model costs
exactly what the real one costs to run, so GPU throughput, memory and FLOP/s can be benchmarked on any
machine, without downloading a checkpoint. Its images are noise; never use it for science.
"""

from __future__ import annotations

import torch

from harness.tiny import clip_tokenizer

FULLSIZE_ARCHS = ("sd15", "sdxl")


def _clip(hidden: int, layers: int, heads: int, intermediate: int, projection: int | None, act: str):
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    config = CLIPTextConfig(vocab_size=49408, hidden_size=hidden, intermediate_size=intermediate,
                            num_hidden_layers=layers, num_attention_heads=heads, max_position_embeddings=77,
                            projection_dim=projection or hidden, hidden_act=act, bos_token_id=49406,
                            eos_token_id=49407, pad_token_id=49407)
    return (CLIPTextModelWithProjection if projection else CLIPTextModel)(config).eval()


def _vae(scaling: float):
    from diffusers import AutoencoderKL

    return AutoencoderKL(in_channels=3, out_channels=3, latent_channels=4, layers_per_block=2,
                         block_out_channels=(128, 256, 512, 512), down_block_types=("DownEncoderBlock2D",) * 4,
                         up_block_types=("UpDecoderBlock2D",) * 4, sample_size=512, scaling_factor=scaling).eval()


def build_sd15():
    from diffusers import PNDMScheduler, StableDiffusionPipeline, UNet2DConditionModel

    unet = UNet2DConditionModel(sample_size=64, cross_attention_dim=768, attention_head_dim=8,
                                block_out_channels=(320, 640, 1280, 1280), layers_per_block=2).eval()
    scheduler = PNDMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                              skip_prk_steps=True, steps_offset=1, set_alpha_to_one=False)
    return StableDiffusionPipeline(vae=_vae(0.18215), text_encoder=_clip(768, 12, 12, 3072, None, "quick_gelu"),
                                   tokenizer=clip_tokenizer(), unet=unet, scheduler=scheduler, safety_checker=None,
                                   feature_extractor=None, requires_safety_checker=False)


def build_sdxl():
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
        vae=_vae(0.13025), text_encoder=_clip(768, 12, 12, 3072, None, "quick_gelu"),
        text_encoder_2=_clip(1280, 32, 20, 5120, 1280, "gelu"), tokenizer=clip_tokenizer(),
        tokenizer_2=clip_tokenizer(pad_token="!"), unet=unet, scheduler=scheduler, add_watermarker=False)


def build_fullsize(arch: str, device: str, dtype: torch.dtype):
    """The random-weight full-size pipeline, initialised on `device` (fast on a GPU) in `dtype`."""
    builders = {"sd15": build_sd15, "sdxl": build_sdxl}
    previous = torch.get_default_dtype()
    torch.manual_seed(0)
    try:
        with torch.device(device):
            pipe = builders[arch]()
    finally:
        torch.set_default_dtype(previous)
    pipe.to(device=device, dtype=dtype)
    pipe.set_progress_bar_config(disable=True)
    return pipe
