"""OCR scoring with EasyOCR's real English weights on CPU: rendered words are read back, compared with the
expected texts, and nothing is written to the user's home. Also the text-masked image distances."""

from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFont

from harness.metrics import ScoreBatch, ScorerError, direction
from harness.metrics import ocr as ocr_module
from harness.metrics.notext import TextMaskedImageDistance, text_mask
from harness.metrics.ocr import OcrScorer

DEJAVU = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")
CASES = [(40, "STOP"), (64, "OPEN 24"), (80, "HELLO")]  # (font size in px, text)
OTHER = "world"


def font(name: str, size: int) -> ImageFont.ImageFont:
    if name == "dejavu":
        if not DEJAVU.is_file():
            pytest.skip(f"{DEJAVU} is not installed")
        return ImageFont.truetype(str(DEJAVU), size)
    return ImageFont.load_default(size=size)


def render(text: str, face: ImageFont.ImageFont, pad: int = 24, at: tuple[int, int] = (0, 0),
           canvas: tuple[int, int] | None = None, background: str = "white") -> np.ndarray:
    """Black `text` on a plain canvas: tight around the text, or `canvas` (w, h) with the text at `at`."""
    left, top, right, bottom = ImageDraw.Draw(Image.new("RGB", (1, 1))).textbbox((0, 0), text, font=face)
    size = canvas or (right - left + 2 * pad, bottom - top + 2 * pad)
    image = Image.new("RGB", size, background)
    ImageDraw.Draw(image).text((at[0] + pad - left, at[1] + pad - top), text, fill="black", font=face)
    return np.asarray(image)


@pytest.fixture(scope="module")
def scorer() -> OcrScorer:
    return OcrScorer(device="cpu")


@pytest.mark.parametrize("face", ["default", "dejavu"])
def test_rendered_words_are_read_back(scorer, face):
    rows = [scorer.score(ScoreBatch(images=render(text, font(face, size))[None], texts=[text],
                                    target_texts=[OTHER])) for size, text in CASES]
    for (size, text), out in zip(CASES, rows):
        assert out["ocr_text"] == [text.lower()], (face, size)
        assert out["ocr_char_f1_text"] == [1.0] and out["ocr_word_f1_text"] == [1.0]
        assert out["ocr_word_exact_text"] == [1] and out["lev_text"] == [0]
        assert out["ocr_word_f1_target"] == [0.0] and out["ocr_char_f1_target"][0] < 0.5
        assert out["lev_target"][0] > 0


def test_rows_without_an_expected_text_get_none(scorer):
    image = render("STOP", font("default", 40))
    out = scorer.score(ScoreBatch(images=np.stack([image, image]), texts=["stop", None], target_texts=[None, "go"]))
    assert out["ocr_char_f1_text"] == [1.0, None] and out["lev_text"] == [0, None]
    assert out["ocr_word_p_target"][0] is None and out["ocr_word_p_target"][1] == 0.0


def test_identity_names_the_easyocr_version_and_weights(scorer):
    identity = scorer.identity()
    assert identity["ocr_model"].startswith("easyocr-1.") and identity["ocr_model"].endswith(":en:craft_mlt_25k+english_g2")
    assert len(identity["ocr_weights"]) == 16


def test_directions_count_text_a_vanishing_and_text_b_appearing_as_effects():
    assert direction("ocr_char_f1_text") == -1 and direction("ocr_word_p_text") == -1
    assert direction("ocr_char_f1_target") == 1 and direction("ocr_word_exact_target") == 1
    assert direction("lev_text") == 1 and direction("lev_target") == -1
    assert direction("ocr_text") == 0


def test_reading_writes_nothing_to_the_home_folder(tmp_path, monkeypatch):
    import easyocr.easyocr

    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setattr(easyocr.easyocr, "MODULE_PATH", str(home / ".EasyOCR"))  # where EasyOCR would write
    reader = ocr_module.get_reader.__wrapped__(ocr_module.resolve_weights_dir(None), False)  # a fresh reader
    assert reader.readtext(render("HELLO", font("default", 40)), detail=0) == ["HELLO"]
    assert list(home.iterdir()) == []


def test_a_weights_dir_without_the_weights_names_the_option(tmp_path):
    with pytest.raises(ScorerError, match=r"scorers\.ocr\.weights_dir: .* lacks craft_mlt_25k\.pth"):
        OcrScorer(weights_dir=str(tmp_path))


# ---- text-masked image distance (P3's "no_text" metrics) -------------------------------------------
def test_text_mask_covers_the_polygons():
    mask = text_mask((10, 20), [((2, 1), (5, 1), (5, 3), (2, 3))])
    assert mask.shape == (10, 20) and mask[2, 3] and not mask[5, 10]
    assert mask.sum() == 4 * 3


def test_changing_only_the_text_leaves_the_background_untouched(scorer):
    notext = TextMaskedImageDistance(device="cpu")
    face = font("default", 40)
    image = render("STOP", face, canvas=(320, 120), at=(10, 10))
    reference = render("HELLO", face, canvas=(320, 120), at=(120, 30))
    shifted = render("STOP", face, canvas=(320, 120), at=(10, 10), background="#f0f0f0")
    out = notext.score(ScoreBatch(images=np.stack([image, shifted]), references=np.stack([reference, reference])))
    assert out["mse_notext"][0] == 0.0 and out["ssim_notext"][0] == pytest.approx(1.0)
    assert out["mse_notext"][1] > 0 and out["psnr_notext"][1] < out["psnr_notext"][0]
    assert direction("mse_notext") == 1 and direction("ssim_notext") == -1
