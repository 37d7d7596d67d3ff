"""Weight edits on tiny models: LocoEdit maps the concept where the original mapped the target, only the
edited parameters change, and save → load → revert is bit-exact (issue 10)."""

import hashlib

import pytest
import torch
from safetensors.torch import load_file

from harness.edit import locoedit
from harness.edit.delta import apply_delta, read_delta
from harness.edit.keys import last_subject
from harness.edit.revert import revert_model
from harness.edit.run import run_edit
from harness.edit.spec import load_edit
from harness.errors import UserError
from harness.models import load_model
from tests.conftest import tiny

SITE = "unet.up_blocks.1.attentions.1.transformer_blocks.0.attn2"


def spec(**kw):
    base = {"model": "tiny:sd15", "method": "locoedit", "sites": [SITE],
            "edits": [{"concept": "van gogh", "target": "painting"}], "lambda": 0.01}
    return load_edit(base | kw)


def state(model) -> dict[str, torch.Tensor]:
    """Every tensor of the pipeline (denoiser, text encoders and VAE)."""
    return {f"{c}.{k}": v for c, m in model.pipe.components.items() if isinstance(m, torch.nn.Module)
            for k, v in m.state_dict().items()}


def last_token_embedding(adapter, prompt, words):
    tok = adapter.pipe.tokenizer
    return adapter.encode([prompt])["prompt_embeds"][0, last_subject(tok, prompt, words)]


@pytest.fixture(scope="module")
def edited(tmp_path_factory):
    out = tmp_path_factory.mktemp("edit") / "van-gogh"
    manifest = run_edit(spec(), out, adapter=tiny("sd15"))  # the shared model's weights are restored after
    return out, manifest


def test_locoedit_maps_the_concept_where_the_original_mapped_the_target(edited):
    out, _ = edited
    original = tiny("sd15")
    _, new_weights, _ = read_delta(out)
    for proj in ("to_k", "to_v"):
        old = getattr(original.module(SITE), proj).weight
        new = new_weights[f"{SITE}.{proj}.weight"]
        for template in ("{}", "a painting in the style of {}", "a photo in the style of {}"):
            concept = last_token_embedding(original, template.format("van gogh"), "van gogh")
            target = last_token_embedding(original, template.format("painting"), "painting")
            with torch.no_grad():
                want, got, before = old @ target, new @ concept, old @ concept
            assert (got - want).norm() / want.norm() < 0.02
            assert (before - want).norm() / want.norm() > 0.1  # the edit had somewhere to go


def test_only_the_edited_parameters_differ_and_plain_diffusers_loads_it(edited):
    from diffusers import StableDiffusionPipeline

    out, manifest = edited
    pipe = StableDiffusionPipeline.from_pretrained(out, local_files_only=True, use_safetensors=True)
    before = state(tiny("sd15"))
    after = {f"{c}.{k}": v for c in ("unet", "text_encoder", "vae")
             for k, v in getattr(pipe, c).state_dict().items()}
    assert before.keys() == after.keys()
    changed = sorted(k for k in before if not torch.equal(before[k], after[k]))
    assert changed == [f"{SITE}.to_k.weight", f"{SITE}.to_v.weight"] == manifest["parameters"]


def test_save_load_revert_is_bit_exact(edited, tmp_path):
    out, _ = edited
    original = state(tiny("sd15"))
    revert_model(out, tmp_path / "reverted")  # on disk: the unet file holds the original tensors again
    reverted = load_file(str(tmp_path / "reverted/unet/diffusion_pytorch_model.safetensors"))
    assert all(torch.equal(original[f"unet.{k}"], v) for k, v in reverted.items())
    model = load_model(str(out))  # in memory: the edited directory as a job's `model:` loads it
    assert model.info.model_id == str(out)
    apply_delta(model, out, revert=True)
    assert all(torch.equal(original[k], v) for k, v in state(model).items())
    with pytest.raises(UserError, match="does not hold the edited values"):
        apply_delta(model, out, revert=True)  # applying twice is refused, not silently compounded
    apply_delta(model, out)  # and the delta applied to the original gives the edited model back
    _, new, _ = read_delta(out)
    assert all(torch.equal(parameter_of(model, k), v) for k, v in new.items())


def parameter_of(model, name):
    from harness.edit.weights import parameter

    return parameter(model, name).detach()


def test_delta_records_its_hash_residuals_and_time(edited):
    out, manifest = edited
    old, new, read = read_delta(out)
    assert read["delta_sha256"] == hashlib.sha256((out / "loco_edit/delta.safetensors").read_bytes()).hexdigest()
    assert set(old) == set(new) == set(manifest["parameters"])
    assert manifest["edit_seconds"] > 0 and all(r["edit_residual"] < r["edit_residual_before"]
                                                for r in manifest["residuals"].values())


def test_lambda_v_is_really_used():
    res = locoedit.run(spec(lambda_v=1e9), tiny("sd15")).solves
    assert res[f"{SITE}.to_v.weight"]["relative_change"] < 1e-6 < res[f"{SITE}.to_k.weight"]["relative_change"]


def test_a_model_directory_is_copied_and_only_edited_tensors_rewritten(tmp_path):
    src = tmp_path / "src"
    tiny("sd15").pipe.save_pretrained(src, safe_serialization=True)
    out = tmp_path / "out"
    run_edit(spec(model=str(src)), out, adapter=tiny("sd15"))  # the same weights, already loaded

    def digest(folder):
        return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
                for p in folder.rglob("*") if p.is_file() and "loco_edit" not in p.parts}

    a, b = digest(src), digest(out)
    assert a.keys() == b.keys()
    assert [k for k in a if a[k] != b[k]] == ["unet/diffusion_pytorch_model.safetensors"]
    x, y = load_file(str(src / "unet/diffusion_pytorch_model.safetensors")), load_file(
        str(out / "unet/diffusion_pytorch_model.safetensors"))
    assert sorted(k for k in x if not torch.equal(x[k], y[k])) == [
        f"{SITE[5:]}.to_k.weight", f"{SITE[5:]}.to_v.weight"]
    revert_model(out, tmp_path / "back")
    assert digest(tmp_path / "back") == a  # bit-exact files, not only tensors


def test_sdxl_locoedit_uses_the_concatenated_embeddings_of_both_encoders():
    model = tiny("sdxl")
    result = locoedit.run(spec(model="tiny:sdxl", sites={"kind": "cross_attn", "index": "45-46"}), model)
    assert len(result.new) == 4 and all(r["edit_residual"] < 0.05 for r in result.solves.values())
    emb = model.encode(["van gogh"])["prompt_embeds"]  # CLIP 32 + CLIP 32 (real SDXL: 768 + 1280 = 2048)
    assert emb.shape[-1] == model.module(model.sites.resolve("cross_attn#45").name).to_k.in_features == 64


@pytest.mark.parametrize("kw, message", [
    ({"model": "tiny:sd3", "sites": {"kind": "joint_attn", "index": 10}},
     "locoedit cannot edit 'transformer.transformer_blocks.10.attn' .*text stream"),
    ({"lambda": 0}, "lambda: expected a value > 0"),
    ({"lambda_v": -1}, "lambda_v: expected a value > 0"),
    ({"templates": ["word " * 80 + "{}"]}, "no augmentation prompt tokenizes 'van gogh'"),
    ({"templates": ["a photo"]}, "templates\\[0\\]: 'a photo' must contain"),
])
def test_mistakes_are_one_line_errors(kw, message, tmp_path):
    edit = spec(**kw) if "lambda" not in kw and "lambda_v" not in kw else None
    with pytest.raises(UserError, match=message) as err:
        edit = edit or spec(**kw)
        run_edit(edit, tmp_path / "o", adapter=tiny(edit.model.split(":")[1]))
    assert "\n" not in str(err.value)
    assert not (tmp_path / "o").exists()  # no partial output


def test_spec_mistakes(tmp_path):
    with pytest.raises(UserError, match="lambda_v: not used by method 'uce'"):
        spec(method="uce", lambda_v=0.1)
    with pytest.raises(UserError, match="lamda: unknown key \\(did you mean 'lambda'\\?\\)"):
        load_edit({"method": "locoedit", "edits": [{"concept": "a", "target": "b"}], "lamda": 1})
    with pytest.raises(UserError, match="edits\\[0\\].concept: expected words"):
        spec(edits=[{"concept": "   ", "target": "painting"}])
    with pytest.raises(UserError, match="method: got 'loco'"):
        load_edit({"method": "loco", "edits": [{"concept": "a"}]})


def test_candidates_file_from_another_model_is_refused(tmp_path):
    good, bad = tmp_path / "good.yaml", tmp_path / "bad.yaml"
    good.write_text(f"format: loco-candidates/1\nmodel: {{id: tiny:sd15, fingerprint: x, arch: sd15}}\n"
                    f"sets:\n  - {{attribute: style, concept: van gogh, sites: [{SITE}]}}\n")  # analysis/candidates.py
    bad.write_text(f"model: tiny:sdxl\ncandidates:\n  - {{attribute: style, sites: [{SITE}]}}\n")
    result = locoedit.run(load_edit({"method": "locoedit", "candidates": str(good), "candidate": "style",
                                     "edits": [{"concept": "van gogh", "target": "painting"}]}), tiny("sd15"))
    assert sorted(result.new) == [f"{SITE}.to_k.weight", f"{SITE}.to_v.weight"]
    with pytest.raises(UserError, match="was made for model 'tiny:sdxl', not 'tiny:sd15'"):
        run_edit(load_edit({"method": "locoedit", "candidates": str(bad),
                            "edits": [{"concept": "van gogh", "target": "painting"}]}), tmp_path / "b",
                 adapter=tiny("sd15"))
    with pytest.raises(UserError, match="candidate: no set 'styl' .*did you mean 'style'"):
        locoedit.run(load_edit({"method": "locoedit", "candidates": str(good), "candidate": "styl",
                                "edits": [{"concept": "van gogh", "target": "painting"}]}), tiny("sd15"))
