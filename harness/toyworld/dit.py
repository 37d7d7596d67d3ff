"""The toyworld DiT: a PixArt-α pipeline small enough to train from scratch on a 2-core CPU.

Same components as PixArt-α — a T5 tokenizer + `T5EncoderModel`, an AutoencoderKL, a
`PixArtTransformer2DModel` whose blocks each hold self-attention (`attn1`), cross-attention to the text
(`attn2`, over `caption_projection(T5)`) and a feed-forward, modulated by adaLN-single (one timestep
embedding, one learned shift/scale table per block) — in a `PixArtAlphaPipeline`, so the harness loads
and localizes it as it does PixArt checkpoints. Only the sizes differ (see
`harness/toyworld/weights-dit/TRAINING.md` for the measurements behind them):

- the **VAE is the toyworld's** (`harness/toyworld/weights/vae`, 32 px → 4 × 8 × 8 latents): the two
  organisms see the same latents, so a difference between them is the denoiser's and the text encoder's;
- the transformer patchifies the 8 × 8 latent with `patch_size` (1 → 64 image tokens, 2 → 16) and stacks
  `layers` blocks of width `heads × head_dim`;
- the **text encoder is a tiny T5 trained jointly**, with a T5 (Unigram) tokenizer whose vocabulary is the
  world's own words, lower-case, plus single characters for anything else. Why not the UNet organism's
  trained CLIP encoder: PixArt's pipeline tokenizes to `max_sequence_length` = 120 tokens with an
  attention mask (CLIP's position table stops at 77), and the CLIP table alone is 12.6 MB; a T5 is what
  the pipeline class expects, and with ~130 tokens its embedding table is a few KB. One word, one token:
  every concept ("red", "circle", "striped", "cat") is a single token, which is what token-matching
  localizers (causal tracing, LocoEdit) look for.

PixArt's `encode_prompt` lower-cases every prompt (`_text_preprocessing`), so the sign "CAT" is asked for
as "cat"; training tokenizes through the same function, so the model learns what the pipeline feeds it.
Padding is masked in T5 and in the cross-attention, so training at `train_tokens` and sampling at the
pipeline's 120 give the same conditioning.
"""

from __future__ import annotations

import functools
from dataclasses import asdict, dataclass

from harness.toyworld import world

MAX_SEQUENCE_LENGTH = 120  # PixArt-α's default `max_sequence_length`


@dataclass(frozen=True)
class DitConfig:
    """Sizes of the toyworld DiT; `name` labels a configuration in training reports."""

    name: str = "dit"
    image_size: int = 32
    vae_factor: int = 4            # the toyworld VAE's
    latent_channels: int = 4
    patch_size: int = 2            # 8x8 latents → 16 image tokens (1 → 64: 1.8x slower per step, worse loss per step)
    layers: int = 8                # transformer blocks (≥ 6: localization must be a question)
    heads: int = 4
    head_dim: int = 32             # width = heads × head_dim
    text_hidden: int = 64          # T5 d_model (= the transformer's caption_channels)
    text_layers: int = 2
    text_heads: int = 4
    train_tokens: int = 24         # tokens per caption in training (the world's longest is 12)

    @property
    def latent_size(self) -> int:
        return self.image_size // self.vae_factor

    @property
    def width(self) -> int:
        return self.heads * self.head_dim

    def to_dict(self) -> dict:
        return {**asdict(self), "arch": "pixart"}


DIT_MICRO = DitConfig(name="dit-micro", layers=6, heads=2, head_dim=8, text_hidden=16, text_layers=1, text_heads=2)
# `loco toyworld train --arch pixart --config`: base is shipped (weights-dit/TRAINING.md has narrow's measurements)
DIT_CONFIGS = {"base": DitConfig(), "narrow": DitConfig(name="narrow", heads=3), "micro": DIT_MICRO}


@functools.cache
def vocabulary() -> tuple[str, ...]:
    """Every lower-case word of the world's captions (full and partial), in a fixed order."""
    texts = [t.format(color=c, shape=s, bg_adj=world.BACKGROUND_ADJECTIVES[b], bg_noun=world.BACKGROUND_NOUNS[b])
             for t in (*world.OBJECT_TEMPLATES, *world.PARTIAL_TEMPLATES)
             for c in world.COLOR_NAMES for s in world.SHAPES for b in world.BACKGROUNDS]
    texts += [t.format(word=w) for t in world.WORD_TEMPLATES for w in world.WORDS]
    words: dict[str, None] = {}
    for text in texts:
        for word in text.lower().replace(",", " ").split():
            words[word] = None
    return tuple(words)


def toy_t5_tokenizer(max_length: int = MAX_SEQUENCE_LENGTH):
    """A T5 (Unigram) tokenizer: the world's words as whole pieces, then single characters as a fallback
    (a word outside the world still tokenizes, letter by letter)."""
    from transformers import T5Tokenizer

    words = vocabulary()
    chars = list("abcdefghijklmnopqrstuvwxyz0123456789.,!?'\"-:;()&/")
    pieces = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0)]
    pieces += [("▁" + w, -2.0) for w in words] + [("▁", -3.0)]
    pieces += [(c, -5.0) for c in chars] + [("▁" + c, -4.5) for c in chars if c not in words]
    return T5Tokenizer(vocab=pieces, extra_ids=0, model_max_length=max_length)


def build_text_encoder(cfg: DitConfig, vocab_size: int):
    from transformers import T5Config, T5EncoderModel

    config = T5Config(vocab_size=vocab_size, d_model=cfg.text_hidden, d_kv=cfg.text_hidden // cfg.text_heads,
                      d_ff=cfg.text_hidden * 4, num_layers=cfg.text_layers, num_heads=cfg.text_heads,
                      relative_attention_num_buckets=16, relative_attention_max_distance=32,
                      feed_forward_proj="gated-gelu", dropout_rate=0.0, is_encoder_decoder=False,
                      pad_token_id=0, eos_token_id=1)
    return T5EncoderModel(config)


def build_transformer(cfg: DitConfig):
    from diffusers import PixArtTransformer2DModel

    return PixArtTransformer2DModel(
        sample_size=cfg.latent_size, num_layers=cfg.layers, patch_size=cfg.patch_size,
        attention_head_dim=cfg.head_dim, num_attention_heads=cfg.heads, caption_channels=cfg.text_hidden,
        in_channels=cfg.latent_channels, out_channels=cfg.latent_channels, cross_attention_dim=cfg.width,
        attention_bias=True, norm_type="ada_norm_single", num_embeds_ada_norm=1000,
        norm_elementwise_affine=False, norm_eps=1e-6, activation_fn="gelu-approximate",
    )


def assemble_pipeline(vae, text_encoder, transformer, tokenizer=None):
    """The PixArtAlphaPipeline the harness loads (the toyworld's sampler: DPM-Solver++ 2M)."""
    from diffusers import PixArtAlphaPipeline

    from harness.toyworld.model import inference_scheduler

    pipe = PixArtAlphaPipeline(tokenizer=tokenizer or toy_t5_tokenizer(), text_encoder=text_encoder.eval(),
                               vae=vae.eval(), transformer=transformer.eval(), scheduler=inference_scheduler())
    pipe.set_progress_bar_config(disable=True)
    return pipe


def denoise(transformer, latents, t, text_states, mask):
    """One transformer call as the pipeline makes it (no micro-conditions below 1024 px)."""
    return transformer(latents, encoder_hidden_states=text_states, encoder_attention_mask=mask, timestep=t,
                       added_cond_kwargs={"resolution": None, "aspect_ratio": None}, return_dict=False)[0]


class PixArtOrganism:
    """What training needs to know about the DiT organism (the UNet's is `model.UNetOrganism`)."""

    denoiser_name = "transformer"

    def __init__(self, cfg: DitConfig):
        self.cfg = cfg
        self.tokenizer = toy_t5_tokenizer()

    def build(self):
        return build_text_encoder(self.cfg, len(self.tokenizer)), build_transformer(self.cfg)

    def load(self, init):
        from diffusers import PixArtTransformer2DModel
        from transformers import T5EncoderModel

        return (T5EncoderModel.from_pretrained(init / "text_encoder", use_safetensors=True, local_files_only=True),
                PixArtTransformer2DModel.from_pretrained(init / "transformer", use_safetensors=True,
                                                         local_files_only=True))

    def assemble(self, vae, text_encoder, denoiser):
        return assemble_pipeline(vae, text_encoder, denoiser, self.tokenizer)

    def tokenize(self, pipe, captions: list[str]):
        """Token ids and attention mask exactly as `PixArtAlphaPipeline.encode_prompt` makes them (lower-cased,
        stripped), at `train_tokens` tokens."""
        texts = pipe._text_preprocessing(list(captions), clean_caption=False)
        out = pipe.tokenizer(texts, padding="max_length", max_length=self.cfg.train_tokens, truncation=True,
                             add_special_tokens=True, return_tensors="pt")
        return out.input_ids, out.attention_mask

    def predict(self, denoiser, text_encoder, noisy, t, ids, mask):
        return denoise(denoiser, noisy, t, text_encoder(ids, attention_mask=mask)[0], mask)
