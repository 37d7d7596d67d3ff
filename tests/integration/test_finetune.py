"""`loco finetune`: LoRA on exactly the chosen layers, a directory plain diffusers loads, jobs that take it,
resuming that equals not stopping, and one line for every bad spec (with nothing written)."""

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from safetensors.torch import load_file

from harness.cli import main
from harness.finetune import load_finetune, run_finetune
from harness.models import load_model
from harness.models.builtin import BUILTIN_DIRS

TOY = {"model": "toyworld", "data": {"toyworld": {"words": ["BUG", "NUT"], "n": 16}}, "rank": 2, "lr": 1e-2,
       "steps": 2, "batch": 2, "gradient_checkpointing": False}
LOCALIZED = "unet.down_blocks.1.attentions.0.transformer_blocks.0.attn2"  # the toyworld's word layer (model card)


def candidates_file(path: Path, model: str = "toyworld", fingerprint: str | None = None) -> Path:
    """A `loco candidates` file (loco-candidates/1) whose `word` set is the toyworld's localized layer."""
    if fingerprint is None:
        fingerprint = load_model(model).info.fingerprint
    path.write_text(yaml.safe_dump({"format": "loco-candidates/1", "model": {"id": model, "fingerprint": fingerprint},
                                    "sets": [{"attribute": "color", "sites": ["unet.mid_block.attentions.0."
                                                                              "transformer_blocks.0.attn2"]},
                                             {"attribute": "word", "sites": [LOCALIZED]}]}))
    return path


def folder_digest(folder: Path) -> str:
    digest = hashlib.sha256()
    for file in sorted(folder.rglob("*")):
        if file.is_file():
            digest.update(file.as_posix().encode() + file.read_bytes())
    return digest.hexdigest()


@pytest.fixture(scope="module")
def adapted(tmp_path_factory):
    """A toyworld fine-tune on the `word` candidate set, through the CLI; the shipped weights' hash before."""
    root = tmp_path_factory.mktemp("finetune")
    before = folder_digest(BUILTIN_DIRS["toyworld"])
    spec = {**TOY, "name": "tw-word", "candidates": str(candidates_file(root / "cands.yaml")), "candidate": "word"}
    (root / "spec.yaml").write_text(yaml.safe_dump(spec))
    assert main(["finetune", str(root / "spec.yaml"), "--out", str(root / "lora"), "--quiet"]) == 0
    return root / "lora", before


def test_a_candidate_set_fine_tune_adapts_only_its_modules(adapted):
    out, _ = adapted
    manifest = json.loads((out / "manifest.json").read_text())
    keys = load_file(str(out / "pytorch_lora_weights.safetensors"))
    module = LOCALIZED.removeprefix("unet.")
    adapted_modules = {k.removeprefix("unet.").split(".lora")[0] for k in keys}
    expected = [f"{module}.{p}" for p in ("to_q", "to_k", "to_v", "to_out.0")]
    assert adapted_modules == set(expected) and manifest["target_modules"] == expected
    # rank 2 on four 64x64 projections: 4 x 2 x (64 + 64) parameters, their share of the 1,077,572 of the UNet
    assert manifest["trainable_params"] == 4 * 2 * (64 + 64) == sum(v.numel() for v in keys.values())
    assert manifest["trainable_share"] == pytest.approx(1024 / 1_077_572)
    assert manifest["steps"] == 2 and len(manifest["loss_curve"]) == 2 and manifest["seconds"] > 0
    assert manifest["base_fingerprint"] == load_model("toyworld").info.fingerprint
    assert manifest["data"]["kind"] == "toyworld" and len(manifest["data"]["hash"]) == 16
    assert manifest["sites"] == [{"name": LOCALIZED, "label": "cross_attn#1"}]
    assert (out / "loss.csv").read_text().startswith("step,loss\n") and not (out / "checkpoints").exists()


def test_plain_diffusers_loads_the_adapter_and_the_base_files_are_untouched(adapted):
    from diffusers import StableDiffusionPipeline

    out, before = adapted
    pipe = StableDiffusionPipeline.from_pretrained(BUILTIN_DIRS["toyworld"], local_files_only=True,
                                                   use_safetensors=True, safety_checker=None)
    pipe.set_progress_bar_config(disable=True)

    def image():
        return pipe("a sign that says BUG", num_inference_steps=3, height=32, width=32, output_type="np",
                    generator=torch.Generator().manual_seed(0)).images[0]

    base = image()
    pipe.load_lora_weights(str(out))
    assert np.abs(image() - base).max() > 1e-3  # the adapter changes the image
    assert folder_digest(BUILTIN_DIRS["toyworld"]) == before


def test_a_sweep_takes_the_adapter_as_lora_and_rows_carry_its_id(adapted, tmp_path):
    import duckdb

    out, _ = adapted
    job = {"name": "with-lora", "model": "toyworld", "method": "attn_patch", "sites": "cross_attn#1", "steps": 3,
           "prompts": [{"prompt": "a sign that says CAT", "target": "a sign that says DOG", "attribute": "text"}],
           "executor": {"backend": "local"}}
    (tmp_path / "job.yaml").write_text(yaml.safe_dump(job))
    assert main(["sweep", str(tmp_path / "job.yaml"), "--out", str(tmp_path / "run"), "--quiet",
                 "--set", f"lora={out}"]) == 0
    ids = duckdb.sql(f"SELECT DISTINCT lora_id FROM read_parquet('{tmp_path}/run/results/**/*.parquet')").fetchall()
    assert ids == [(json.loads((out / "manifest.json").read_text())["lora_id"],)]


def test_the_fused_adapter_in_a_job_draws_what_plain_load_lora_weights_draws(adapted):
    from harness.finetune import attach_lora

    out, _ = adapted
    plain, fused = load_model("toyworld"), load_model("toyworld")
    plain.pipe.load_lora_weights(str(out))
    attach_lora(fused, out)
    assert type(fused.module(LOCALIZED).to_k) is torch.nn.Linear  # fused: plain Linear layers again
    images = [a.generate(a.encode(["a sign that says BUG"]), a.encode_negative(1), [0], 3, 4.0, 32, 32, as_float=True)
              for a in (plain, fused)]
    assert np.abs(images[0] - images[1]).max() < 1e-4


def test_an_interrupted_fine_tune_resumes_to_the_same_weights(tmp_path):
    spec = load_finetune({**TOY, "sites": ["cross_attn#1"], "steps": 4, "checkpoint_every": 100})
    straight = run_finetune(spec, tmp_path / "straight", progress=False)
    assert run_finetune(spec, tmp_path / "resumed", progress=False, stop_after=2) is None
    assert (tmp_path / "resumed" / "checkpoints" / "step-000002" / "state.json").is_file()
    resumed = run_finetune(spec, tmp_path / "resumed", progress=False)
    a = load_file(str(tmp_path / "straight" / "pytorch_lora_weights.safetensors"))
    b = load_file(str(tmp_path / "resumed" / "pytorch_lora_weights.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert straight["loss_curve"] == resumed["loss_curve"] and straight["lora_id"] == resumed["lora_id"]


def test_baselines_select_every_attention_layer_or_seeded_random_text_layers():
    from harness.finetune.targets import select_sites

    adapter = load_model("toyworld")
    kinds = lambda spec: sorted({s.kind for s in select_sites(load_finetune({**TOY, **spec}), adapter)})  # noqa: E731
    assert kinds({"baseline": "all_attention"}) == ["cross_attn", "self_attn"]
    assert len(select_sites(load_finetune({**TOY, "baseline": "all_attention"}), adapter)) == 14
    assert len(select_sites(load_finetune({**TOY, "baseline": "all_cross_attention"}), adapter)) == 7
    draw = lambda seed: [s.label for s in select_sites(load_finetune({**TOY, "random": 2, "seed": seed}), adapter)]  # noqa: E731
    assert draw(0) == draw(0) and len(set(draw(0))) == 2 and {tuple(draw(s)) for s in range(6)} != {tuple(draw(0))}


@pytest.mark.parametrize("arch, denoiser", [("sdxl", "unet"), ("sd3", "transformer"), ("if", "unet"),
                                            ("sana", "transformer")])
def test_other_architectures_train_and_load_in_their_pipelines(arch, denoiser, tmp_path):
    spec = load_finetune({"model": f"tiny:{arch}", "sites": {"kind": "joint_attn" if arch == "sd3" else "cross_attn",
                                                             "index": "1"},
                          "data": {"toyworld": {"words": ["CAT"], "n": 4}}, "rank": 2, "lr": 1e-2, "steps": 1,
                          "batch": 2, "resolution": 16 if arch == "if" else 32, "gradient_checkpointing": True})
    manifest = run_finetune(spec, tmp_path / "lora", progress=False)
    assert manifest["denoiser"] == denoiser and len(manifest["target_modules"]) == 4
    fresh = load_model(f"tiny:{arch}")
    fresh.pipe.load_lora_weights(str(tmp_path / "lora"))
    keys = load_file(str(tmp_path / "lora" / "pytorch_lora_weights.safetensors"))
    assert all(k.startswith(f"{denoiser}.") for k in keys) and len(keys) == 8


def write_folder(folder: Path, captions: list) -> Path:
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    lines = []
    for i, caption in enumerate(captions):
        Image.new("RGB", (40, 32), (200, 30, 30)).save(folder / f"{i}.png")
        if caption is not ...:
            lines.append(json.dumps({"file_name": f"{i}.png", **({"text": caption} if caption is not None else {})}))
    if lines:
        (folder / "metadata.jsonl").write_text("\n".join(lines) + "\n")
    return folder


def test_an_image_folder_trains_and_its_hash_follows_the_images(tmp_path):
    from harness.finetune.data import folder_set

    folder = write_folder(tmp_path / "imgs", ["a red square", "a red square"])
    spec = load_finetune({**TOY, "sites": ["cross_attn#1"], "data": str(folder), "steps": 1})
    manifest = run_finetune(spec, tmp_path / "lora", progress=False)
    assert manifest["data"] == {"kind": "folder", "hash": folder_set(folder, 32).digest, "images": 2, "resolution": 32}
    batch = folder_set(folder, 32).batch([0])
    assert batch.pixels.shape == (1, 3, 32, 32) and batch.original_sizes == [(32, 40)] and batch.crops == [(0, 4)]
    from PIL import Image

    Image.new("RGB", (40, 32), (20, 30, 200)).save(folder / "1.png")
    assert folder_set(folder, 32).digest != manifest["data"]["hash"]


@pytest.mark.parametrize("change, message", [
    ({"projections": ["to_x"]}, "projections: 'to_x' is not a Linear layer of"),
    ({"sites": ["cross_attn#9"]}, "sites.names: no site matches 'cross_attn#9'"),
    ({"rank": 0}, "rank: expected a LoRA rank >= 1, got 0"),
    ({"candidates": "OTHER"}, "was made for model 'tiny:sd15', not 'toyworld'"),
    ({"data": "EMPTY"}, "has no images and no metadata"),
    ({"data": "UNCAPTIONED"}, "has no caption (a non-empty 'text')"),
    ({"data": "UNLISTED"}, "has no caption in metadata.jsonl"),
    ({"sites": ["cross_attn#1"], "random": 2}, "expected exactly one of candidates, sites, baseline, random"),
    ({"model": "tiny:pixart"}, "model: PixArtAlphaPipeline has no LoRA loader in diffusers"),
])
def test_bad_specs_are_one_line_and_write_nothing(change, message, tmp_path, capsys):
    change = dict(change)
    if change.get("candidates") == "OTHER":
        change["candidates"] = str(candidates_file(tmp_path / "c.yaml", model="tiny:sd15", fingerprint="0" * 16))
    data = {"EMPTY": lambda: (tmp_path / "empty").mkdir() or tmp_path / "empty",
            "UNCAPTIONED": lambda: write_folder(tmp_path / "f", ["a red square", None]),
            "UNLISTED": lambda: write_folder(tmp_path / "f", ["a red square", ...])}
    if change.get("data") in data:
        change["data"] = str(data[change["data"]]())
    spec = {**TOY, "sites": ["cross_attn#1"], **change}
    if "random" in change:
        spec["sites"] = change["sites"]
    elif "candidates" in change:
        spec.pop("sites")
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(spec))
    assert main(["finetune", str(tmp_path / "spec.yaml"), "--out", str(tmp_path / "out"), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_shipped_fine_tunes_validate_and_p3s_layers_are_its_twelve_modules():
    from harness.finetune.targets import resolve_targets

    files = sorted((Path(__file__).parents[2] / "jobs" / "finetune").glob("*.yaml"))
    specs = {f.stem: load_finetune(f) for f in files}
    assert {"p3_lora_localized_sdxl", "p3_lora_all_attention_sdxl"} <= set(specs)
    localized = specs["p3_lora_localized_sdxl"]
    assert (localized.rank, localized.lora_alpha, localized.lr, localized.steps, localized.seed) == (64, 64, 1e-6, 7254, 42)
    targets = resolve_targets(localized, load_model("tiny:sdxl"))  # same 70 cross-attention layers as SDXL
    assert targets.modules == [f"up_blocks.0.attentions.2.transformer_blocks.{b}.attn2.{p}" for b in (1, 2, 3)
                               for p in ("to_q", "to_k", "to_v", "to_out.0")]


def test_a_job_refuses_a_missing_adapter_and_a_worker_one_trained_on_another_model(adapted, tmp_path):
    from harness.finetune import attach_lora
    from harness.finetune.output import LoraError
    from harness.jobs import JobError, load_job

    job = {"name": "x", "method": "locogen", "prompts": [{"prompt": "a cat", "target": "a dog"}]}
    with pytest.raises(JobError, match=r"job: lora: '.*nowhere' is not a directory \(expected the --out of loco finetune"):
        load_job({**job, "lora": str(tmp_path / "nowhere")})
    with pytest.raises(LoraError, match="lora: '.*' was trained on 'toyworld' .*, not on 'tiny:sd15'"):
        attach_lora(load_model("tiny:sd15"), adapted[0])
