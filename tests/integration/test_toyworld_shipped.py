"""The shipped toyworld model: `model: toyworld` loads it through the normal loader (safetensors, local
files), with its own sampler defaults, and it generates 32x32 images."""

import numpy as np

from harness.models import load_model
from harness.models.builtin import BUILTIN_DIRS


def test_shipped_weights_are_safetensors_and_small():
    root = BUILTIN_DIRS["toyworld"]
    files = [f for f in root.rglob("*") if f.is_file()]
    assert (root / "model_index.json").is_file() and (root / "toyworld.json").is_file()
    assert not [f for f in files if f.suffix in (".bin", ".pt", ".pth", ".ckpt")]
    assert sum(f.stat().st_size for f in files) < 25 * 2**20


def test_model_toyworld_loads_and_generates_at_its_size():
    for name in ("toyworld", "builtin:toyworld"):
        adapter = load_model(name, "cpu")
        assert adapter.info.model_id == name and adapter.arch == "sd15"
    config = adapter.defaults
    assert (config.height, config.width) == (32, 32) and config.steps <= 20
    cond, neg = adapter.encode(["a red circle on a plain background", "a sign that says CAT"]), adapter.encode_negative(2)
    images = adapter.generate(cond, neg, seeds=[0, 1], steps=config.steps, guidance_scale=config.guidance_scale,
                              height=32, width=32)
    assert images.shape == (2, 32, 32, 3) and images.dtype == np.uint8
    assert images.std() > 5  # an image, not a constant


def test_unknown_builtin_is_one_line():
    import pytest

    from harness.models.adapters import ModelLoadError

    with pytest.raises(ModelLoadError, match="did you mean 'builtin:toyworld'|did you mean 'toyworld'"):
        load_model("builtin:toyworl", "cpu")
