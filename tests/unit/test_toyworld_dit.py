"""The toyworld DiT's text side: its T5 tokenizer gives every word of the world one token (as the pipeline
lower-cases it), and what training feeds the transformer equals what `PixArtAlphaPipeline` samples with —
the same ids and mask at the pipeline's 120 tokens, and the same cross-attention output though training
pads to fewer (padding is masked in T5 and in `attn2`)."""

import torch

from harness.toyworld import world
from harness.toyworld.dit import (
    DIT_MICRO,
    MAX_SEQUENCE_LENGTH,
    PixArtOrganism,
    build_text_encoder,
    build_transformer,
    toy_t5_tokenizer,
    vocabulary,
)
from harness.toyworld.model import MICRO as UNET_MICRO
from harness.toyworld.model import UNetOrganism, build_vae


def test_every_world_word_is_one_token_and_other_words_still_tokenize():
    tokenizer = toy_t5_tokenizer()
    concepts = [*world.COLOR_NAMES, *world.SHAPES, *world.BACKGROUND_ADJECTIVES.values(), "stripes", "dots", "grid",
                *(w.lower() for w in world.WORDS)]
    for word in concepts:
        assert word in vocabulary()
        assert tokenizer.tokenize(word) == ["▁" + word], word
    pieces = tokenizer.tokenize("a purple hexagon")  # off-world words fall back to letters, never <unk>
    assert "<unk>" not in pieces and len(pieces) > 3
    assert tokenizer("").input_ids == [tokenizer.eos_token_id]


def _organism():
    torch.manual_seed(0)
    kind = PixArtOrganism(DIT_MICRO)
    text_encoder, transformer = kind.build()
    pipe = kind.assemble(build_vae(UNET_MICRO), text_encoder, transformer)
    return kind, pipe


def test_training_tokens_are_the_pipelines_tokens_truncated_to_the_training_length():
    kind, pipe = _organism()
    captions = ["a sign that says CAT", world.object_caption("triangle", "green", "dots", 3), ""]
    ids, mask = kind.tokenize(pipe, captions)
    embeds, pipe_mask, _, _ = pipe.encode_prompt(captions, do_classifier_free_guidance=False, device="cpu",
                                                 clean_caption=False)
    full = pipe.tokenizer([c.lower() for c in captions], padding="max_length", max_length=MAX_SEQUENCE_LENGTH,
                          return_tensors="pt")
    assert pipe_mask.shape[1] == MAX_SEQUENCE_LENGTH
    assert torch.equal(pipe_mask[:, :DIT_MICRO.train_tokens], mask) and pipe_mask[:, DIT_MICRO.train_tokens:].sum() == 0
    assert torch.equal(full.input_ids[:, :DIT_MICRO.train_tokens], ids)
    assert ids[0].tolist()[:5] == pipe.tokenizer("a sign that says cat").input_ids[:5]  # lower-cased, as the pipeline


def test_the_transformer_sees_the_same_text_at_the_training_length_and_at_the_pipelines():
    kind, pipe = _organism()
    captions = ["a red circle on a plain background", "the word SUN"]
    ids, mask = kind.tokenize(pipe, captions)
    embeds, pipe_mask, _, _ = pipe.encode_prompt(captions, do_classifier_free_guidance=False, device="cpu",
                                                 clean_caption=False)
    latents, t = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(1)), torch.tensor([500, 20])
    with torch.no_grad():
        trained = kind.predict(pipe.transformer, pipe.text_encoder, latents, t, ids, mask)
        sampled = pipe.transformer(latents, encoder_hidden_states=embeds, encoder_attention_mask=pipe_mask,
                                   timestep=t, added_cond_kwargs={"resolution": None, "aspect_ratio": None}).sample
    assert torch.allclose(trained, sampled, atol=1e-5)


def test_a_dit_configuration_builds_the_pixart_layout():
    cfg = DIT_MICRO
    transformer = build_transformer(cfg)
    assert len(transformer.transformer_blocks) == cfg.layers >= 6
    block = transformer.transformer_blocks[0]
    assert block.attn2.to_k.in_features == cfg.width and transformer.caption_projection is not None
    assert build_text_encoder(cfg, 100).config.d_model == cfg.text_hidden


def test_the_unet_organism_keeps_its_77_token_clip_conditioning():
    from harness.toyworld.model import assemble_pipeline, build_text_encoder, build_unet

    pipe = assemble_pipeline(build_vae(UNET_MICRO), build_text_encoder(UNET_MICRO), build_unet(UNET_MICRO))
    ids, mask = UNetOrganism(UNET_MICRO).tokenize(pipe, ["a red circle"])
    assert ids.shape == (1, 77) and mask is None
