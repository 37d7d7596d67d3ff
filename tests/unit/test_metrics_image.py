"""Image distances: the true MSE/PSNR, and P3's uint8-wrapping MSE/PSNR that its tables report."""

import json
import math

import numpy as np
import pytest
from PIL import Image

from harness.cli import main
from harness.metrics import ScoreBatch, direction
from harness.metrics.image import ImageDistance, mse, mse_p3, psnr


def pair(a_value: int, b_value: int) -> tuple[np.ndarray, np.ndarray]:
    a = np.full((1, 4, 4, 3), a_value, dtype=np.uint8)
    b = np.full((1, 4, 4, 3), b_value, dtype=np.uint8)
    return a, b


@pytest.mark.parametrize(("a", "b", "true_mse", "p3_mse"), [
    (3, 5, 4.0, 4.0),          # (3 - 5) wraps to 254; 254**2 = 64516 wraps to 4
    (5, 3, 4.0, 4.0),
    (20, 0, 400.0, 144.0),     # 400 mod 256
    (16, 0, 256.0, 0.0),       # a difference of 16 vanishes in P3's arithmetic
    (0, 255, 65025.0, 1.0),    # 0 - 255 wraps to 1
    (7, 7, 0.0, 0.0),
])
def test_p3_mse_wraps_the_difference_and_its_square_modulo_256(a, b, true_mse, p3_mse):
    x, y = pair(a, b)
    assert mse(x, y)[0] == true_mse
    assert mse_p3(x, y)[0] == p3_mse


def test_p3_mse_equals_the_papers_numpy_expression_on_random_images():
    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (3, 8, 8, 3), dtype=np.uint8)
    b = rng.integers(0, 256, (3, 8, 8, 3), dtype=np.uint8)
    expected = [np.mean((a[i] - b[i]) ** 2) for i in range(3)]  # P3's line, verbatim, per image
    assert mse_p3(a, b).tolist() == expected
    assert all(m <= 255 for m in expected) and (mse(a, b) > 255).all()  # wrapped values stay in 0..255


def test_the_scorer_writes_true_and_p3_columns_side_by_side():
    a, b = pair(20, 0)
    out = ImageDistance().score(ScoreBatch(images=a, references=b))
    assert out["mse"] == [400.0] and out["mse_p3"] == [144.0]
    assert out["psnr"][0] == pytest.approx(20 * math.log10(255) - 10 * math.log10(400))
    assert out["psnr_p3"][0] == pytest.approx(20 * math.log10(255) - 10 * math.log10(144))
    same = ImageDistance().score(ScoreBatch(images=a, references=a))
    assert same["psnr_p3"][0] == pytest.approx(148.1308, abs=1e-3) == psnr(np.array([0.0]))[0]
    assert direction("mse_p3") == 1 and direction("psnr_p3") == -1


def test_p3_mse_refuses_float_images():
    with pytest.raises(ValueError, match="uint8"):
        mse_p3(np.zeros((1, 2, 2, 3)), np.zeros((1, 2, 2, 3)))


def test_loco_score_json_reports_the_p3_columns(tmp_path, capsys):
    a, b = pair(20, 0)
    Image.fromarray(a[0]).save(tmp_path / "a.png")
    Image.fromarray(b[0]).save(tmp_path / "b.png")
    assert main(["score", str(tmp_path / "a.png"), "--metrics", "mse,psnr", "--reference", str(tmp_path / "b.png"),
                 "--json"]) == 0
    record = json.loads(capsys.readouterr().out)[0]
    assert record["mse"] == 400.0 and record["mse_p3"] == 144.0
    assert record["psnr_p3"] == pytest.approx(20 * math.log10(255) - 10 * math.log10(144))
