"""Each editor's headline property on a tiny model (issue 10). Random tiny encoders give nearly parallel
embeddings for different words, so these are exact linear-algebra facts, not semantic outcomes."""

import pytest

from harness.edit import diffquickfix, time_edit, uce
from harness.edit.keys import TEMPLATES, build_pairs, last_subject
from harness.edit.spec import load_edit
from harness.errors import UserError
from tests.conftest import tiny

DQF_SITE = "text_encoder.encoder.layers.0.self_attn"


def test_diffquickfix_uses_p1s_291_key_value_pairs_for_van_gogh():
    # P1's notebook prints 291 pairs for "van gogh" → "painting" (last subject token + EOS positions, four
    # augmentations); the tiny models use the real CLIP tokenizer, so the count must be the same.
    tokenizer = tiny("sd15").pipe.tokenizer
    pairs = build_pairs(tokenizer, str, "van gogh", "painting", TEMPLATES["diffquickfix"], True, "edits[0]")
    assert sum(len(p.key_positions) for p in pairs) == 291
    bare = pairs[0]  # "van gogh" (BOS van gogh EOS ...) ↔ "painting" (BOS painting EOS ...): aligned one to one
    assert (bare.key_positions[:2], bare.value_positions[:2], len(bare.key_positions)) == ((2, 3), (1, 2), 75)


@pytest.mark.parametrize("reference_bias", [False, True])
def test_diffquickfix_bias_handling(reference_bias):
    # Fixed: the edited out_proj (with its bias) outputs what the original did for the target. The notebook's
    # quirk (reference_bias) fits values that already hold the bias, so it lands off by exactly b.
    adapter = tiny("sd15")
    spec = load_edit({"method": "diffquickfix", "edits": [{"concept": "van gogh", "target": "painting"}],
                      "lambda": 1e-9, "use_eos": False, "reference_bias": reference_bias})
    out_proj = adapter.module(DQF_SITE).out_proj
    encoder, tok = adapter.pipe.text_encoder, adapter.pipe.tokenizer
    k_in, _ = diffquickfix.capture(encoder, tok, out_proj, ["van gogh"])
    _, t_out = diffquickfix.capture(encoder, tok, out_proj, ["painting"])
    k = k_in[0, last_subject(tok, "van gogh", "van gogh")]
    want = t_out[0, last_subject(tok, "painting", "painting")]
    result = diffquickfix.run(spec, adapter)
    (name, new), = result.new.items()
    assert name == f"{DQF_SITE}.out_proj.weight"
    got = new.double() @ k + out_proj.bias.double()
    bias = out_proj.bias.double()
    expected = want + bias if reference_bias else want
    assert (got - expected).norm() < 1e-4 * want.norm()
    assert (got - (want if reference_bias else want + bias)).norm() > 0.5 * bias.norm()


def test_diffquickfix_refuses_a_t5_or_unet_site():
    adapter = tiny("sd15")
    spec = load_edit({"method": "diffquickfix", "sites": {"kind": "cross_attn", "index": 0},
                      "edits": [{"concept": "van gogh", "target": "painting"}]})
    with pytest.raises(UserError, match="diffquickfix cannot edit .*out_proj"):
        diffquickfix.run(spec, adapter)


def test_uce_preserve_set_keeps_preserved_concepts_and_edits_every_cross_attention_layer():
    adapter = tiny("sd15")
    edit = {"method": "uce", "edits": [{"concept": "van gogh", "target": "art"}], "lambda": 1e-6}
    loose = uce.run(load_edit(edit), adapter)
    kept = uce.run(load_edit(edit | {"preserve": ["monet", "picasso"], "preserve_scale": 1e6}), adapter)
    assert len(kept.new) == 32  # to_k and to_v of the 16 cross-attention layers
    for rec in kept.solves.values():
        assert rec["preserve_drift"] < 1e-5
        assert rec["edit_residual"] < rec["edit_residual_before"]
    site = adapter.sites.resolve("cross_attn#8").name
    x = adapter.encode(["monet"])["prompt_embeds"][0, last_subject(adapter.pipe.tokenizer, "monet", "monet")]
    w0 = adapter.module(site).to_v.weight.detach().double()
    moved = lambda res: float(((res.new[f"{site}.to_v.weight"].double() - w0) @ x.double()).norm())  # noqa: E731
    assert moved(kept) < 1e-3 * moved(loose)


def test_time_edits_to_v_only_unless_asked_and_fits_every_token_row():
    adapter = tiny("sd15")
    edit = {"method": "time", "edits": [{"concept": "roses", "target": "blue roses"}]}
    only_v = time_edit.run(load_edit(edit), adapter)
    assert len(only_v.new) == 16 and all(n.endswith("to_v.weight") for n in only_v.new)
    both = time_edit.run(load_edit(edit | {"with_to_k": True}), adapter)
    assert len(both.new) == 32
    assert all(r["n_keys"] == 77 for r in only_v.solves.values())  # every token of the source prompt


def test_time_alignment_pairs_prefix_concept_and_tail():
    # "a photo of roses" → "a photo of blue roses": prefix to itself, the concept to the target span, tail shifted.
    assert time_edit.alignment([4], [4, 5])[:6] == (0, 1, 2, 3, 4, 6)
    assert time_edit.alignment([4], [4, 5])[-1] == 76


def test_diffquickfix_edits_the_first_encoders_layer_0_by_default_on_sdxl():
    # Text-encoder sites are numbered per encoder, so text_self_attn#0 exists in both SDXL encoders;
    # P1's edit (and the default) is layer 0 of the first, CLIP-L.
    from harness.edit.targets import resolve_sites

    spec = load_edit({"method": "diffquickfix", "model": "tiny:sdxl",
                      "edits": [{"concept": "van gogh", "target": "painting"}]})
    assert [s.name for s in resolve_sites(spec, tiny("sdxl"))] == [DQF_SITE]


def test_a_covariance_prior_from_too_few_prompts_is_refused_or_regularized_and_recorded(tmp_path):
    # tiny SD1.x keys are 32-d; 3 short prompts give ~15 token keys: a singular covariance
    from harness.edit.run import run_edit

    edit = {"method": "locoedit", "edits": [{"concept": "van gogh", "target": "a painting"}],
            "prior": "covariance", "prior_prompts": ["a dog", "a red house", "a cat on a mat"]}
    with pytest.raises(UserError, match=r"^prior_prompts: the key covariance of 3 prompts \(\d+ tokens\) has rank "
                                        r"\d+ of 32, .*or set prior_ridge"):
        run_edit(load_edit(edit), tmp_path / "refused", adapter=tiny("sd15"))
    assert not (tmp_path / "refused").exists()
    manifest = run_edit(load_edit(edit | {"prior_ridge": 0.01}), tmp_path / "ridge", adapter=tiny("sd15"))
    assert manifest["prior"]["rank"] < manifest["prior"]["dim"] == 32 and manifest["prior"]["ridge"] == 0.01
    assert manifest["spec"]["prior_ridge"] == 0.01
    assert all(r["relative_change"] < 1 for r in manifest["residuals"].values())
