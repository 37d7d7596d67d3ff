"""`loco toyworld train` on the micro configuration: a few steps write a complete report and a pipeline
the normal loader can run; the same seed gives the same training; bad flags are one line."""

import csv
import json
from dataclasses import replace

import numpy as np
import pytest

from harness.cli import main
from harness.toyworld.data import rendered_set
from harness.toyworld.model import MICRO
from harness.toyworld.train import TrainConfig, train_diffusion, train_vae


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    out = tmp_path_factory.mktemp("toyworld") / "run"
    code = main(["toyworld", "train", "--out", str(out), "--config", "micro", "--steps", "3", "--vae-steps", "2",
                 "--samples", "24", "--batch", "4"])
    assert code == 0
    return out


def test_train_writes_the_report(smoke):
    for name in ("settings.json", "loss.csv", "loss.png", "eval.csv", "samples.png", "model/model_index.json",
                 "model/toyworld.json", "model/unet/diffusion_pytorch_model.safetensors"):
        assert (smoke / name).is_file(), name
    settings = json.loads((smoke / "settings.json").read_text())
    assert settings["training"]["seed"] == 0 and settings["training"]["steps"] == 3
    assert settings["model"]["name"] == "micro"
    rows = list(csv.DictReader((smoke / "loss.csv").open()))
    assert [int(r["step"]) for r in rows] == [0, 1, 2] and all(float(r["loss"]) > 0 for r in rows)
    evals = list(csv.DictReader((smoke / "eval.csv").open()))
    assert 0 <= float(evals[-1]["color_acc"]) <= 1
    assert not list(smoke.rglob("*.bin"))  # safetensors only


def test_trained_directory_loads_through_the_harness_and_uses_its_sidecar(smoke):
    from harness.models import load_model

    adapter = load_model(str(smoke / "model"), "cpu")
    assert adapter.defaults.height == 32 and adapter.defaults.steps == 15  # toyworld.json, not SD's 512 / 50
    assert len(adapter.sites.select(kinds=["cross_attn"])) == 7  # down 2, mid 1, up 4 (layers+1 per up block): SD1.x layout
    cond, neg = adapter.encode(["a red circle on a plain background"]), adapter.encode_negative(1)
    image = adapter.generate(cond, neg, seeds=[0], steps=2, guidance_scale=4.0, height=32, width=32)
    assert image.shape == (1, 32, 32, 3) and image.dtype == np.uint8


def test_same_seed_same_training():
    data = rendered_set(16, 0, 32)
    cfg = TrainConfig(vae_steps=2, vae_batch=4, steps=2, batch=4, warmup=1)
    losses = []
    for _ in range(2):
        vae = train_vae(MICRO, cfg, data, log=lambda m: None)
        run = train_diffusion(MICRO, cfg, data, vae, log=lambda m: None)
        losses.append([r["loss"] for r in run.losses])
    assert losses[0] == losses[1]


def test_bad_flags_are_one_line(capsys):
    assert main(["toyworld", "train", "--out", "x", "--config", "mikro"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "did you mean 'micro'" in err[0]
    assert main(["toyworld", "train", "--out", "x", "--vae", "/nonexistent"]) == 2
    assert "--vae" in capsys.readouterr().err
    assert main(["toyworld", "train", "--out", "x", "--lr", "0"]) == 2
    assert "--lr: expected a positive number" in capsys.readouterr().err
    assert main(["toyworld", "train", "--out", "x", "--partial-captions", "1.5"]) == 2
    assert "--partial-captions: expected a share between 0 and 1" in capsys.readouterr().err
    assert main(["toyworld", "train", "--out", "x", "--eval-every", "-1"]) == 2
    assert "--eval-every: expected a positive number, got -1" in capsys.readouterr().err
    assert main(["toyworld", "train", "--out", "x", "--arch", "pixart", "--config", "narow"]) == 2
    assert "did you mean 'narrow'" in capsys.readouterr().err


def test_second_stage_starts_from_the_given_weights(smoke, tmp_path):
    import torch
    from diffusers import UNet2DConditionModel

    from harness.toyworld.train import train_diffusion

    data = rendered_set(8, 1, 32)
    cfg = TrainConfig(steps=1, batch=2, warmup=1, lr=1e-12, ema_decay=0.0)  # a step that cannot move the weights
    from diffusers import AutoencoderKL

    vae = AutoencoderKL.from_pretrained(smoke / "model" / "vae")
    run = train_diffusion(MICRO, cfg, data, vae, log=lambda m: None, init=smoke / "model")
    saved = UNet2DConditionModel.from_pretrained(smoke / "model" / "unet").state_dict()
    for name, tensor in run.pipe.unet.state_dict().items():
        assert torch.allclose(tensor, saved[name], atol=1e-6), name
    assert main(["toyworld", "train", "--out", str(tmp_path / "x"), "--init", str(tmp_path)]) == 2


def test_partial_captions_change_what_a_step_sees_and_repeat_from_the_seed():
    data = rendered_set(16, 0, 32)
    cfg = TrainConfig(vae_steps=1, vae_batch=4, steps=2, batch=8, warmup=1, cond_dropout=0.0)
    vae = train_vae(MICRO, cfg, data, log=lambda m: None)

    def losses(share):
        run = train_diffusion(MICRO, replace(cfg, partial_captions=share), data, vae, log=lambda m: None)
        return [r["loss"] for r in run.losses]

    full, partial = losses(0.0), losses(1.0)
    assert partial == losses(1.0)  # deterministic from the seed
    assert partial != full  # same images and noise, other captions: another loss
