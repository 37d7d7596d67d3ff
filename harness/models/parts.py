"""Building blocks shared by the architectures' tiny and full-size builders: tokenizers built in code, small
CLIP / T5 text encoders and VAEs, and the fixed-seed wrappers that make a built model the same everywhere.

Why build tokenizers in code: CI and the embedded default have no network. The CLIP BPE comes from the
vocabulary open_clip ships (identical ids to OpenAI's); a small Unigram T5 tokenizer (characters and a few
common words) stands in for the T5 encoders' SentencePiece model.
"""

from __future__ import annotations

import functools
import gzip

import torch

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


def gemma_tokenizer(words: list[str]):
    """A small byte-level-free BPE Gemma tokenizer: special tokens, characters, and merges that make whole tokens
    of `words` (with and without the leading "▁" Gemma gives a word after a space); adds BOS like Gemma's."""
    from transformers import GemmaTokenizer

    vocab = ["<pad>", "<eos>", "<bos>", "<unk>", "<mask>", "▁"]
    vocab += list("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.,!?'\"-:;()>\n")
    known, merges = set(vocab), []
    for word in words:
        for piece in (word, "▁" + word):
            for i in range(2, len(piece) + 1):
                if piece[:i] not in known:
                    known.add(piece[:i])
                    vocab.append(piece[:i])
                    merges.append((piece[: i - 1], piece[i - 1]))
    return GemmaTokenizer(vocab={token: i for i, token in enumerate(vocab)}, merges=merges, add_bos_token=True)


def tiny_clip_text_model(hidden: int, layers: int, with_projection: bool, projection_dim: int = 32,
                         pad_token_id: int = 49407):
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    config = CLIPTextConfig(
        vocab_size=49408, hidden_size=hidden, intermediate_size=hidden * 2, num_hidden_layers=layers,
        num_attention_heads=2, max_position_embeddings=CLIP_MAX_LENGTH, projection_dim=projection_dim,
        hidden_act="quick_gelu", bos_token_id=49406, eos_token_id=49407, pad_token_id=pad_token_id,
    )
    cls = CLIPTextModelWithProjection if with_projection else CLIPTextModel
    return cls(config).eval()


def tiny_t5_encoder(d_model: int, layers: int, vocab_size: int):
    from transformers import T5Config, T5EncoderModel

    config = T5Config(vocab_size=vocab_size, d_model=d_model, d_kv=8, d_ff=d_model * 2, num_layers=layers,
                      num_heads=2, relative_attention_num_buckets=8, is_encoder_decoder=False)
    return T5EncoderModel(config).eval()


def tiny_vae(latent_channels: int = 4, sd3: bool = False, blocks: int = 4):
    """A small AutoencoderKL; `blocks` levels make a scale factor of 2**(blocks - 1) (2 blocks, scale 2: ~10×
    faster than 4, for the DiTs whose tiny models need no 8× latent)."""
    from diffusers import AutoencoderKL

    extra = dict(shift_factor=0.0609, scaling_factor=1.5305, use_quant_conv=False,
                 use_post_quant_conv=False) if sd3 else {}
    return AutoencoderKL(
        in_channels=3, out_channels=3, latent_channels=latent_channels, norm_num_groups=8,
        down_block_types=("DownEncoderBlock2D",) * blocks, up_block_types=("UpDecoderBlock2D",) * blocks,
        block_out_channels=(8, 16, 16, 16)[:blocks], layers_per_block=1, sample_size=64, **extra,
    ).eval()


def seeded(builder):
    """Run `builder` with torch's global RNG seeded with TINY_SEED (restored afterwards): a tiny model is the
    same model on every machine, and its fingerprint is stable."""
    state = torch.random.get_rng_state()
    torch.manual_seed(TINY_SEED)
    try:
        pipe = builder()
    finally:
        torch.random.set_rng_state(state)
    pipe.set_progress_bar_config(disable=True)
    return pipe


# ---- full-size parts (random weights; `random:<arch>`) ------------------------------------------------

def clip_text_model(hidden: int, layers: int, heads: int, intermediate: int, projection: int | None, act: str):
    """A full-size CLIP text encoder (CLIP-L: 768/12/12/3072; OpenCLIP bigG: 1280/32/20/5120)."""
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    config = CLIPTextConfig(vocab_size=49408, hidden_size=hidden, intermediate_size=intermediate,
                            num_hidden_layers=layers, num_attention_heads=heads, max_position_embeddings=77,
                            projection_dim=projection or hidden, hidden_act=act, bos_token_id=49406,
                            eos_token_id=49407, pad_token_id=49407)
    return (CLIPTextModelWithProjection if projection else CLIPTextModel)(config).eval()


def sd_vae(scaling: float):
    """Stable Diffusion's VAE (4 latent channels, 8× downsampling)."""
    from diffusers import AutoencoderKL

    return AutoencoderKL(in_channels=3, out_channels=3, latent_channels=4, layers_per_block=2,
                         block_out_channels=(128, 256, 512, 512), down_block_types=("DownEncoderBlock2D",) * 4,
                         up_block_types=("UpDecoderBlock2D",) * 4, sample_size=512, scaling_factor=scaling).eval()


def build_random(builder, device: str, dtype: torch.dtype):
    """The random-weight full-size pipeline from `builder`, initialised on `device` (fast on a GPU) in `dtype`."""
    previous = torch.get_default_dtype()
    torch.manual_seed(0)
    try:
        with torch.device(device):
            pipe = builder()
    finally:
        torch.set_default_dtype(previous)
    pipe.to(device=device, dtype=dtype)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def t5_xxl_encoder():
    """T5 v1.1 XXL's encoder (4.7B parameters; PixArt's, FLUX's and SD3's long text encoder)."""
    from transformers import T5Config, T5EncoderModel

    config = T5Config(vocab_size=32128, d_model=4096, d_kv=64, d_ff=10240, num_layers=24, num_heads=64,
                      relative_attention_num_buckets=32, relative_attention_max_distance=128,
                      feed_forward_proj="gated-gelu", is_encoder_decoder=False, tie_word_embeddings=False)
    return T5EncoderModel(config).eval()


def vae16(scaling: float, shift: float):
    """The 16-channel latent VAE of SD3 and FLUX (8× downsampling, no quant convs)."""
    from diffusers import AutoencoderKL

    return AutoencoderKL(in_channels=3, out_channels=3, latent_channels=16, layers_per_block=2,
                         block_out_channels=(128, 256, 512, 512), down_block_types=("DownEncoderBlock2D",) * 4,
                         up_block_types=("UpDecoderBlock2D",) * 4, sample_size=1024, scaling_factor=scaling,
                         shift_factor=shift, use_quant_conv=False, use_post_quant_conv=False).eval()
