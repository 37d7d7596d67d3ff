"""P3's toxic-text baselines (prompt swap, negative prompt, SLD) as inference-time edits: each equals the thing
it stands for, acts only on prompts with a listed word, and gives rows that `loco sql` compares with
`text_patch`'s on a harmless stand-in list ("DOG" suppressed on the toyworld model)."""

import json

import numpy as np
import pytest
import torch
import yaml

from harness.cli import main
from harness.edit.install import install_edit
from harness.edit.run import run_edit
from harness.edit.spec import load_edit
from harness.errors import UserError
from harness.models import load_model

DOG, CAT = "a sign that says DOG", "a sign that says CAT"


@pytest.fixture(scope="module")
def words(tmp_path_factory):
    path = tmp_path_factory.mktemp("words") / "standin.txt"
    path.write_text("# a harmless stand-in for a toxic word list\nDOG\n")
    return path


@pytest.fixture(scope="module")
def toy():
    return load_model("toyworld")


def baseline(tmp_path, words, method, model="toyworld", **keys):
    out = tmp_path / method
    run_edit(load_edit({"model": model, "method": method, "words_file": str(words), **keys}), out)
    return out


def draw(pipe, prompt, steps=8, guidance=4.0, size=32, **kwargs):
    return pipe(prompt, num_inference_steps=steps, guidance_scale=guidance, height=size, width=size, output_type="np",
                generator=torch.Generator().manual_seed(0), **kwargs).images[0]


def test_prompt_swap_draws_prompt_b_and_negative_prompt_guides_away_from_text_word(tmp_path, words, toy):
    pipe = toy.pipe
    plain = {p: draw(pipe, p) for p in (DOG, CAT, "a red circle on a striped background")}
    negative = draw(pipe, DOG, negative_prompt='text "DOG"')
    with install_edit(pipe, baseline(tmp_path, words, "prompt_swap", replacement="CAT")):
        assert np.array_equal(draw(pipe, DOG), plain[CAT])
        assert np.array_equal(draw(pipe, "a red circle on a striped background"),
                              plain["a red circle on a striped background"])
    with install_edit(pipe, baseline(tmp_path, words, "negative_prompt")):
        assert np.abs(draw(pipe, DOG) - negative).max() < 1e-6 and np.abs(negative - plain[DOG]).max() > 1e-2
        assert np.array_equal(draw(pipe, CAT), plain[CAT])  # no listed word: untouched
    assert np.array_equal(draw(pipe, DOG), plain[DOG])  # removed: the pipeline is as before


def test_sld_as_a_guidance_hook_equals_diffusers_safe_pipeline(tmp_path, words, toy):
    from diffusers import StableDiffusionPipelineSafe

    c = toy.pipe.components
    safe = StableDiffusionPipelineSafe(vae=c["vae"], text_encoder=c["text_encoder"], tokenizer=c["tokenizer"],
                                       unet=c["unet"], scheduler=c["scheduler"], safety_checker=None,
                                       feature_extractor=None, requires_safety_checker=False)
    safe.set_progress_bar_config(disable=True)
    safe.safety_concept = 'text "DOG"'
    preset = {"sld_guidance_scale": 1000.0, "sld_warmup_steps": 2, "sld_threshold": 0.01, "sld_momentum_scale": 0.3,
              "sld_mom_beta": 0.4}
    want = draw(safe, DOG, **preset)
    plain, cat = draw(toy.pipe, DOG), draw(toy.pipe, CAT)
    with install_edit(toy.pipe, baseline(tmp_path, words, "sld", safety_concept="words", **preset)):
        got = draw(toy.pipe, DOG)
        assert np.array_equal(draw(toy.pipe, CAT), cat)  # no listed word: untouched
    assert np.abs(want - plain).max() > 0.05  # SLD moves this image ...
    assert np.abs(got - want).max() < 2e-3  # ... and the hook moves it exactly as diffusers' safe pipeline


def test_sld_and_negative_prompt_install_on_sdxl_and_sd3_and_refuse_without_guidance(tmp_path, words):
    for arch in ("sdxl", "sd3"):
        model = load_model(f"tiny:{arch}")
        before = draw(model.pipe, "a photo of a DOG", steps=3, size=64)
        for method, keys in (("sld", {"sld_warmup_steps": 0, "safety_concept": "words"}), ("negative_prompt", {})):
            with install_edit(model.pipe, baseline(tmp_path / arch, words, method, f"tiny:{arch}", **keys)):
                after = draw(model.pipe, "a photo of a DOG", steps=3, size=64)
            assert np.isfinite(after).all() and np.abs(after - before).max() > 1e-4, (arch, method)
    with install_edit(load_model("tiny:sd15").pipe, baseline(tmp_path / "sd15", words, "sld", "tiny:sd15")) as handle:
        with pytest.raises(UserError, match="sld guides away .* needs guidance_scale > 1"):
            draw(handle.pipe, "a photo of a DOG", steps=2, guidance=1.0)


@pytest.mark.parametrize("keys, message", [
    ({"method": "prompt_swap"}, "replacement: required for prompt_swap"),
    ({"method": "sld", "words_file": None}, "words_file: required for sld"),
    ({"method": "negative_prompt", "edits": [{"concept": "DOG", "target": "CAT"}]}, "edits: negative_prompt takes"),
    ({"method": "sld", "replacement": "CAT"}, "replacement: not used by method 'sld'"),
])
def test_baseline_mistakes_are_one_line(keys, message, words):
    spec = {"model": "toyworld", "words_file": str(words), **keys}
    with pytest.raises(UserError, match=message):
        load_edit({k: v for k, v in spec.items() if v is not None})


def test_baseline_rows_compare_with_text_patch_rows_in_loco_sql(tmp_path, words, capsys):
    edits = {"text_patch": {"replacement": "CAT", "step_start": 0, "sites": ["cross_attn#1"]},
             "prompt_swap": {"replacement": "CAT"}, "negative_prompt": {},
             "sld": {"safety_concept": "words", "sld_warmup_steps": 2}}
    runs = []
    for method, keys in edits.items():
        out = baseline(tmp_path, words, method, **keys)
        runs.append(tmp_path / f"run-{method}")
        job = {"name": f"toxic-{method}", "model": "toyworld", "method": "attn_patch", "sites": "cross_attn#1",
               "prompts": [{"prompt": DOG, "target": CAT, "attribute": "text"}], "steps": 8,
               "seeds": [0, 1], "metrics": ["probe"], "scorers": {"probe": {"words_file": str(words)}},
               "edit": str(out / "edit.yaml"), "executor": {"backend": "local"}}
        (tmp_path / f"{method}.yaml").write_text(yaml.safe_dump(job))
        assert main(["sweep", str(tmp_path / f"{method}.yaml"), "--out", str(runs[-1]), "--quiet"]) == 0
    capsys.readouterr()
    query = ("SELECT split_part(edit_id, '-', 1) AS edit, count(*) AS n, avg(listed_word) AS rate, "
             "avg(listed_word_p3) AS score FROM results WHERE role = 'control' GROUP BY 1 ORDER BY 1")
    assert main(["sql", *map(str, runs), query, "--format", "json"]) == 0
    rows = {r["edit"]: r for r in json.loads(capsys.readouterr().out)}
    assert set(rows) == set(edits) and all(r["n"] == 2 for r in rows.values())
    assert rows["prompt_swap"]["rate"] == 0.0  # generating B draws CAT: no listed word is read
    assert all(r["score"] == pytest.approx(r["rate"]) for r in rows.values())  # the probe reads its own renders: rate 1
