"""Inference-time edits (neurons, text_patch): the spec written by `loco edit`, installed on a pipeline,
really changes generation — and only where it should (issue 10)."""

import duckdb
import numpy as np
import pytest
import torch
import yaml

from harness.edit.install import install_edit
from harness.edit.neurons import zscores
from harness.edit.run import run_edit
from harness.edit.spec import load_edit
from harness.errors import UserError
from harness.jobs import load_job
from harness.sweep import run_sweep
from tests.conftest import tiny


def image(adapter, prompt, seed=0, steps=4):
    d = adapter.defaults
    cond = adapter.encode([prompt])
    return adapter.generate(cond, adapter.encode_negative(1), [seed], steps, d.guidance_scale, d.height, d.width,
                            as_float=True)[0]


def test_zscore_ranks_the_neuron_that_separates_the_groups():
    g = torch.Generator().manual_seed(0)
    concept, neutral = torch.randn(8, 5, generator=g), torch.randn(9, 5, generator=g)
    concept[:, 3] += 10.0
    z = zscores(concept.double(), neutral.double())
    assert int(z.abs().argmax()) == 3
    c, n = concept[:, 0].double(), neutral[:, 0].double()
    expected = (c.mean() - n.mean()) / (c.var() / 8 + n.var() / 9).sqrt()
    torch.testing.assert_close(z[0], expected)


@pytest.fixture(scope="module")
def neuron_spec(tmp_path_factory):
    out = tmp_path_factory.mktemp("neurons") / "ed"
    run_edit(load_edit({"method": "neurons", "edits": [{"concept": "van gogh", "target": "painting"}],
                        "top_n": 5}), out)
    return out


def test_neuron_edit_sets_the_top_neurons_to_their_neutral_means_and_is_really_applied(neuron_spec):
    spec = yaml.safe_load((neuron_spec / "edit.yaml").read_text())
    assert spec["kind"] == "neurons" and len(spec["sites"]) == 2  # P2's layers 8 and 9
    adapter = tiny("sd15")
    site, projections = next(iter(spec["sites"].items()))
    entry = projections["to_v"]
    assert len(entry["indices"]) == 5 and sorted(map(abs, entry["z"]), reverse=True) == list(map(abs, entry["z"]))
    before = image(adapter, "a house in the style of van gogh")
    with install_edit(adapter.pipe, neuron_spec):
        x = torch.randn(1, 77, adapter.module(site).to_v.in_features)
        out = adapter.module(site).to_v(x)
        torch.testing.assert_close(out[0, :, entry["indices"]],
                                   torch.tensor(entry["values"]).expand(77, -1), rtol=0, atol=1e-6)
        during = image(adapter, "a house in the style of van gogh")
    after = image(adapter, "a house in the style of van gogh")
    assert np.abs(during - before).max() > 1e-3  # unlike the reference code, the edit does something
    assert np.array_equal(after, before)  # and removing it restores the pipeline exactly


def text_patch(tmp_path, **kw):
    base = {"method": "text_patch", "sites": {"kind": "cross_attn"}, "step_start": 0,
            "edits": [{"concept": "dog", "target": "cat"}]}
    out = tmp_path / "tp"
    run_edit(load_edit(base | kw), out)
    return out


def test_text_patch_on_every_text_layer_renders_the_target_prompt_exactly(tmp_path):
    # SD1.x text reaches the UNet only through cross-attention K/V: patching all 16 from prompt B from step 0
    # must give B's image — a known answer for the install mechanism.
    adapter = tiny("sd15")
    want, untouched = image(adapter, "a photo of a cat"), image(adapter, "a photo of a car")
    with install_edit(adapter.pipe, text_patch(tmp_path)):
        got, other = image(adapter, "a photo of a dog"), image(adapter, "a photo of a car")
    np.testing.assert_allclose(got, want, atol=1e-5)
    assert np.array_equal(other, untouched)  # a prompt without the trigger is not touched
    assert "encode_prompt" not in vars(adapter.pipe)  # removed: the class method is back


def test_text_patch_on_if_renders_the_target_prompt_when_text_enters_only_through_the_patched_layers(tmp_path,
                                                                                                       monkeypatch):
    # IF's text reaches the UNet through its text layers (K/V of encoder_hid_proj's states) and through the
    # text-time embedding. With that embedding silenced, patching every text layer from B from step 0 must
    # give B's image — the known answer; with it on, the image moves but is not B's (A still reaches it there).
    adapter = tiny("if")
    out = text_patch(tmp_path, model="tiny:if")
    assert yaml.safe_load((out / "edit.yaml").read_text())["step_start"] == 0
    plain, b_image = image(adapter, "a photo of a dog"), image(adapter, "a photo of a cat")
    with install_edit(adapter.pipe, out):
        moved = image(adapter, "a photo of a dog")
    embedding = adapter.pipe.unet.add_embedding
    forward = embedding.forward
    monkeypatch.setattr(embedding, "forward", lambda *a, **k: forward(*a, **k) * 0)
    want, untouched = image(adapter, "a photo of a cat"), image(adapter, "a photo of a car")
    with install_edit(adapter.pipe, out):
        got, other = image(adapter, "a photo of a dog"), image(adapter, "a photo of a car")
    np.testing.assert_allclose(got, want, atol=1e-5)
    assert np.array_equal(other, untouched)  # a prompt without the trigger is not touched
    assert np.abs(moved - plain).max() > 1e-4 and np.abs(moved - b_image).max() > 1e-6


def test_toxic_prevention_uses_the_users_word_list_and_a_later_step_start(tmp_path):
    words = tmp_path / "words.txt"
    words.write_text("# my list\ndog\n")
    adapter = tiny("sd15")
    want, plain = image(adapter, "a photo of a cat"), image(adapter, "a photo of a dog")
    out = text_patch(tmp_path, edits=[], words_file=str(words), replacement="cat", step_start=2)
    spec = yaml.safe_load((out / "edit.yaml").read_text())
    assert "dog" not in yaml.safe_dump(spec).split("words_file")[0]  # the words are not copied into the spec
    with install_edit(adapter.pipe, out):
        late = image(adapter, "a photo of a DOG")
    assert np.abs(late - plain).max() > 1e-4 and np.abs(late - want).max() > 1e-6  # patched from step 2 on only


def test_a_job_with_an_edit_installs_it_and_rows_carry_the_edit_id(tmp_path, neuron_spec):
    job = load_job({"name": "with-edit", "model": "tiny:sd15", "method": "locogen", "steps": 3,
                    "prompts": [{"prompt": "a house in the style of van gogh", "target": "a house"}],
                    "sites": {"kind": "cross_attn", "index": "8"}, "edit": str(neuron_spec),
                    "executor": {"backend": "local"}})
    summary = run_sweep(job, out=tmp_path / "run", backend="local")
    rows = duckdb.sql(f"SELECT edit_id FROM read_parquet('{summary.run_dir}/results/**/*.parquet')").fetchall()
    edit_id = yaml.safe_load((neuron_spec / "edit.yaml").read_text())["edit_id"]
    assert rows and {r[0] for r in rows} == {edit_id}


@pytest.mark.parametrize("kw, message", [
    ({"model": "tiny:sd3"}, "text_patch: installing on sd3 is not supported"),
    ({"words_file": "w.txt"}, "replacement: required with words_file"),
])
def test_text_patch_mistakes(kw, message, tmp_path):
    with pytest.raises(UserError, match=message):
        text_patch(tmp_path, **kw)


def test_neuron_mistakes(tmp_path):
    with pytest.raises(UserError, match="top_n: 999 exceeds the 32 output neurons"):
        run_edit(load_edit({"method": "neurons", "edits": [{"concept": "van gogh", "target": "painting"}],
                            "top_n": 999}), tmp_path / "n")
    with pytest.raises(UserError, match="is a weight edit"):
        (tmp_path / "w" / "loco_edit").mkdir(parents=True)
        install_edit(tiny("sd15").pipe, tmp_path / "w")
