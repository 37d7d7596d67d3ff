"""Tiny random-weight pipelines with the real architectures' block structure, built offline.

Why: CI and the embedded default have no GPU and no network. These models keep what the science
depends on — the number, kind and forward order of every site (16 cross-attention layers in SD1.x,
70 in SDXL, 22 AttnAddedKV attentions in DeepFloyd IF stage I, 24 joint blocks in SD3), the text
encoders and the way text reaches the denoiser — at widths small enough to generate a 64×64 image in
well under a second on a CPU core. Weights are drawn from a fixed seed, so a tiny model is the same
model on every machine and its fingerprint is stable.

Tokenizers are built in code: the CLIP BPE from the vocabulary open_clip ships, and a small Unigram
T5 tokenizer (characters and a few common words) for the T5 encoders.
"""

from __future__ import annotations

import functools
import gzip

import torch

TINY_ARCHS = ("sd15", "sdxl", "if", "sd3")
TINY_SEED = 20240521
CLIP_MAX_LENGTH = 77


@functools.cache
def _clip_vocab_and_merges() -> tuple[dict[str, int], list[tuple[str, str]]]:
    """The CLIP BPE vocabulary (49408 entries) rebuilt from open_clip's bundled merges file."""
    from open_clip.tokenizer import bytes_to_unicode, default_bpe

    lines = gzip.open(default_bpe()).read().decode("utf-8").split("\n")
    merges = [tuple(line.split()) for line in lines[1 : 49152 - 256 - 2 + 1]]
    byte_chars = list(bytes_to_unicode().values())
    vocab = byte_chars + [c + "</w>" for c in byte_chars] + ["".join(m) for m in merges]
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    return {token: i for i, token in enumerate(vocab)}, merges


def clip_tokenizer(pad_token: str = "<|endoftext|>"):
    """A CLIPTokenizer identical in ids to OpenAI's; SD1.x pads with EOS, SD2/SDXL-2 with '!'."""
    from transformers import CLIPTokenizer

    vocab, merges = _clip_vocab_and_merges()
    return CLIPTokenizer(vocab=dict(vocab), merges=list(merges), pad_token=pad_token,
                         model_max_length=CLIP_MAX_LENGTH)


def t5_tokenizer(max_length: int = 77):
    """A small Unigram T5 tokenizer: special tokens, frequent words, then single characters."""
    from transformers import T5Tokenizer

    words = ["a", "the", "of", "in", "sign", "that", "says", "photo", "style", "painting", "house"]
    chars = list("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.,!?'\"-:;()")
    pieces = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0)]
    pieces += [("▁" + w, -2.0) for w in words] + [("▁", -3.0)]
    pieces += [(c, -5.0) for c in chars] + [("▁" + c, -4.5) for c in chars]
    return T5Tokenizer(vocab=pieces, extra_ids=0, model_max_length=max_length)


def _clip_text_model(hidden: int, layers: int, with_projection: bool, projection_dim: int = 32,
                     pad_token_id: int = 49407):
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    config = CLIPTextConfig(
        vocab_size=49408, hidden_size=hidden, intermediate_size=hidden * 2, num_hidden_layers=layers,
        num_attention_heads=2, max_position_embeddings=CLIP_MAX_LENGTH, projection_dim=projection_dim,
        hidden_act="quick_gelu", bos_token_id=49406, eos_token_id=49407, pad_token_id=pad_token_id,
    )
    cls = CLIPTextModelWithProjection if with_projection else CLIPTextModel
    return cls(config).eval()


def _t5_encoder(d_model: int, layers: int, vocab_size: int):
    from transformers import T5Config, T5EncoderModel

    config = T5Config(vocab_size=vocab_size, d_model=d_model, d_kv=8, d_ff=d_model * 2, num_layers=layers,
                      num_heads=2, relative_attention_num_buckets=8, is_encoder_decoder=False)
    return T5EncoderModel(config).eval()


def _vae(latent_channels: int = 4, sd3: bool = False):
    from diffusers import AutoencoderKL

    extra = dict(shift_factor=0.0609, scaling_factor=1.5305, use_quant_conv=False,
                 use_post_quant_conv=False) if sd3 else {}
    return AutoencoderKL(
        in_channels=3, out_channels=3, latent_channels=latent_channels, norm_num_groups=8,
        down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
        block_out_channels=(8, 16, 16, 16), layers_per_block=1, sample_size=64, **extra,
    ).eval()


def build_sd15():
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
        vae=_vae(), text_encoder=_clip_text_model(32, 4, False), tokenizer=clip_tokenizer(), unet=unet,
        scheduler=scheduler, safety_checker=None, feature_extractor=None, requires_safety_checker=False,
    )


def build_sdxl():
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
        vae=_vae(), text_encoder=_clip_text_model(32, 4, False), text_encoder_2=_clip_text_model(32, 4, True),
        tokenizer=clip_tokenizer(), tokenizer_2=clip_tokenizer(pad_token="!"), unet=unet, scheduler=scheduler,
        force_zeros_for_empty_prompt=True, add_watermarker=False,
    )


def build_if():
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
    return IFPipeline(tokenizer=tokenizer, text_encoder=_t5_encoder(32, 2, len(tokenizer)), unet=unet,
                      scheduler=scheduler, safety_checker=None, feature_extractor=None, watermarker=None,
                      requires_safety_checker=False)


def _build_if_stage_ii():
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


def build_tiny_if_stage_ii():
    """The tiny IF stage II that `tiny:if` is scored through (weights from the fixed seed)."""
    return _seeded(_build_if_stage_ii)


def build_sd3():
    """SD3 layout: 24 JointTransformerBlocks (the last context_pre_only); CLIP-L + CLIP-G + T5 text."""
    from diffusers import FlowMatchEulerDiscreteScheduler, SD3Transformer2DModel, StableDiffusion3Pipeline

    tokenizer_3 = t5_tokenizer()
    transformer = SD3Transformer2DModel(
        sample_size=8, patch_size=2, in_channels=16, out_channels=16, num_layers=24, attention_head_dim=8,
        num_attention_heads=2, joint_attention_dim=64, caption_projection_dim=16, pooled_projection_dim=64,
        pos_embed_max_size=16,
    ).eval()
    return StableDiffusion3Pipeline(
        transformer=transformer, scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0), vae=_vae(16, sd3=True),
        text_encoder=_clip_text_model(32, 4, True), tokenizer=clip_tokenizer(),
        text_encoder_2=_clip_text_model(32, 4, True), tokenizer_2=clip_tokenizer(pad_token="!"),
        text_encoder_3=_t5_encoder(64, 2, len(tokenizer_3)), tokenizer_3=tokenizer_3,
    )


_BUILDERS = {"sd15": build_sd15, "sdxl": build_sdxl, "if": build_if, "sd3": build_sd3}


def build_tiny(arch: str):
    """Build the tiny pipeline for `arch` with weights drawn from a fixed seed (same on every machine)."""
    if arch not in _BUILDERS:
        raise ValueError(f"unknown tiny model 'tiny:{arch}'; expected one of "
                         + ", ".join(f"tiny:{a}" for a in TINY_ARCHS))
    return _seeded(_BUILDERS[arch])


def _seeded(builder):
    """Run `builder` with torch's global RNG seeded with TINY_SEED (restored afterwards)."""
    state = torch.random.get_rng_state()
    torch.manual_seed(TINY_SEED)
    try:
        pipe = builder()
    finally:
        torch.random.set_rng_state(state)
    pipe.set_progress_bar_config(disable=True)
    return pipe
