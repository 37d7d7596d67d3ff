"""The toyworld model: an SD1.x-style pipeline small enough to train from scratch on a 2-core CPU.

Same components as Stable Diffusion 1.x — CLIPTokenizer + CLIPTextModel, an AutoencoderKL, a
UNet2DConditionModel whose CrossAttn down/mid/up blocks read the text through `attn2`, a DDPM-family
scheduler — so every localization method and edit of the harness applies unchanged. Only the sizes
differ, chosen from measured learning curves (see `harness/toyworld/weights/TRAINING.md`):

- images 32x32; the VAE downsamples by `vae_factor` (4 → latents 4x8x8), so the UNet sees 64
  positions instead of 1024 — the single largest saving over a pixel-space model;
- a 2-level UNet, one resnet + one transformer per block, cross-attention at every level (down, mid,
  up), so the site table keeps SD1.x's shape: down_blocks.*, mid_block, up_blocks.* attn2 layers;
- a CLIP text encoder of `text_layers` layers and width `text_hidden`, with the real CLIP BPE
  tokenizer and 77-token padding (the edit solvers assume 77 rows), trained jointly from scratch.

The token embedding table (49408 x text_hidden) dominates the weight file; at width 64 it is 12.6 MB.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch


@dataclass(frozen=True)
class ToyModelConfig:
    """Sizes of the toyworld pipeline; `name` labels a configuration in training reports."""

    name: str = "base"
    image_size: int = 32          # the world renders flat colours: 32 px holds shapes, patterns and 3 letters
    vae_factor: int = 4           # 32 → 8x8 latents: 16x fewer UNet positions than pixel space
    vae_channels: tuple[int, ...] = (16, 32, 32)  # len = log2(vae_factor) + 1
    latent_channels: int = 4
    unet_channels: tuple[int, ...] = (32, 64)     # two levels, 8x8 and 4x4; (64, 128) learned more per step but
                                                  # less per minute on the shared CPU (TRAINING.md)
    unet_heads: int = 4
    text_hidden: int = 64         # also the UNet's cross_attention_dim
    text_layers: int = 2
    text_heads: int = 4

    def __post_init__(self):
        if 2 ** (len(self.vae_channels) - 1) != self.vae_factor:
            raise ValueError(f"ToyModelConfig: vae_channels {self.vae_channels} give factor "
                             f"{2 ** (len(self.vae_channels) - 1)}, not vae_factor={self.vae_factor}")
        if self.image_size % (self.vae_factor * 2 ** (len(self.unet_channels) - 1)):
            raise ValueError(f"ToyModelConfig: image_size {self.image_size} is not divisible by the VAE and "
                             "UNet downsampling")

    @property
    def latent_size(self) -> int:
        return self.image_size // self.vae_factor

    def to_dict(self) -> dict:
        return asdict(self)


WIDE = ToyModelConfig(name="wide", unet_channels=(64, 128), text_layers=3)  # the learning curve's other arm
MICRO = ToyModelConfig(name="micro", vae_channels=(8, 8, 8), unet_channels=(8, 16), unet_heads=2,
                       text_hidden=16, text_layers=1, text_heads=2)  # for smoke tests: trains in seconds


def build_vae(cfg: ToyModelConfig):
    from diffusers import AutoencoderKL

    n = len(cfg.vae_channels)
    return AutoencoderKL(
        in_channels=3, out_channels=3, latent_channels=cfg.latent_channels, norm_num_groups=8,
        down_block_types=("DownEncoderBlock2D",) * n, up_block_types=("UpDecoderBlock2D",) * n,
        block_out_channels=cfg.vae_channels, layers_per_block=1, sample_size=cfg.image_size,
        mid_block_add_attention=False,  # flat colours need no global attention; it cost a third of a step
    )


def build_text_encoder(cfg: ToyModelConfig):
    from transformers import CLIPTextConfig, CLIPTextModel

    from harness.models.parts import CLIP_MAX_LENGTH

    config = CLIPTextConfig(
        vocab_size=49408, hidden_size=cfg.text_hidden, intermediate_size=cfg.text_hidden * 4,
        num_hidden_layers=cfg.text_layers, num_attention_heads=cfg.text_heads,
        max_position_embeddings=CLIP_MAX_LENGTH, projection_dim=cfg.text_hidden, hidden_act="quick_gelu",
        bos_token_id=49406, eos_token_id=49407, pad_token_id=49407,
    )
    return CLIPTextModel(config)


def build_unet(cfg: ToyModelConfig):
    from diffusers import UNet2DConditionModel

    n = len(cfg.unet_channels)
    return UNet2DConditionModel(
        sample_size=cfg.latent_size, in_channels=cfg.latent_channels, out_channels=cfg.latent_channels,
        layers_per_block=1, norm_num_groups=8, block_out_channels=cfg.unet_channels,
        down_block_types=("CrossAttnDownBlock2D",) * n, up_block_types=("CrossAttnUpBlock2D",) * n,
        cross_attention_dim=cfg.text_hidden, attention_head_dim=cfg.unet_heads,
    )


def train_scheduler():
    """SD1.x's noise schedule (scaled-linear betas, 1000 steps), epsilon prediction."""
    from diffusers import DDPMScheduler

    return DDPMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                         num_train_timesteps=1000, prediction_type="epsilon", clip_sample=False)


def inference_scheduler():
    """DPM-Solver++ (2M): good samples in ~15 steps from the same schedule the UNet was trained on."""
    from diffusers import DPMSolverMultistepScheduler

    return DPMSolverMultistepScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                                       num_train_timesteps=1000, prediction_type="epsilon", steps_offset=1)


def assemble_pipeline(vae, text_encoder, unet):
    """The StableDiffusionPipeline the harness loads (no safety checker, as every tiny model)."""
    from diffusers import StableDiffusionPipeline

    from harness.models.parts import clip_tokenizer

    pipe = StableDiffusionPipeline(
        vae=vae.eval(), text_encoder=text_encoder.eval(), tokenizer=clip_tokenizer(), unet=unet.eval(),
        scheduler=inference_scheduler(), safety_checker=None, feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


def count_parameters(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
