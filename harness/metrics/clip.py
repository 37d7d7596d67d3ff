"""CLIP alignment: does the image still match prompt A, does it match prompt B, is it still the same picture?

CLIPScore (Hessel et al., 2021) embeds an image and a text with CLIP and rescales their cosine similarity:

    CLIP-T = 2.5 · max(cos(image, text), 0)

P3 reports it with OpenAI's CLIP ViT-B/32 (224 px bicubic resize + centre crop) against the FULL prompt,
A (``clip_t_prompt``) and B (``clip_t_target``), and uses the same form between the edited image and the
un-intervened one (``clip_image``). The plain cosines are kept too (``clip_*cos*``): the clamp at 0
hides how negative a random or failed model's cosines are. Directions (+1 = larger is further from the
un-intervened image): alignment to A and to the reference image fall (−1), alignment to B rises (+1).

Weights, offline only. ``weights`` is either a checkpoint file (safetensors, or a state dict read with
``torch.load(weights_only=True)``) or an open_clip pretrained tag such as ``openai``, looked up in the
local caches only: the Hugging Face hub cache that open_clip downloads to, then open_clip's URL cache
(``~/.cache/clip``, also where OpenAI's ``clip`` package puts ``ViT-B-32.pt``). OpenAI's own file is a
TorchScript archive that ``weights_only`` cannot read; it is loaded only when its SHA-256 equals the one
open_clip pins in the download URL, i.e. when it is OpenAI's file byte for byte. Random weights (seeded,
for tests and dry runs) need ``allow_random: true`` so that a job never reports CLIP scores from an
untrained model by accident. Note that OpenAI weights need QuickGELU: a tag sets it, for a file of
OpenAI weights name the model ``ViT-B-32-quickgelu``.

Images go through open_clip's own preprocessing one by one (PIL bicubic, as P3) and through the model
in batches; each distinct text and each distinct image (the reference is shared by many rows) is
encoded once per batch.
"""

from __future__ import annotations

import zipfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from PIL import Image

from harness.metrics import ScoreBatch, Scorer, ScorerError, image_digest, register
from harness.metrics.weights import file_sha256, files_fingerprint, resolve_device

CLIPSCORE_WEIGHT = 2.5  # Hessel et al.'s w; P3 keeps it
RANDOM_SEED = 0
HF_WEIGHT_FILES = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")


def clipscore(cos: np.ndarray) -> np.ndarray:
    """CLIPScore of cosine similarities: 2.5 · max(cos, 0)."""
    return CLIPSCORE_WEIGHT * np.maximum(cos, 0.0)


# ---- weights -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ClipWeights:
    """Where a model's weights come from and how the result rows name them."""

    path: Path | None  # None = seeded random initialisation
    label: str  # the clip_weights column: "random", "sha256:<16 hex>", "<tag>@<16 hex>"
    tag_cfg: dict = field(default_factory=dict)  # open_clip's config of a pretrained tag (preprocessing, QuickGELU)


def resolve_weights(model: str, weights: str | None, allow_random: bool, cache_dir: str | None) -> ClipWeights:
    """Turn the ``weights`` option into a local file (or random), never touching the network."""
    import open_clip

    if not weights:
        if allow_random:
            return ClipWeights(None, "random")
        raise ScorerError("scorers.clip.weights: not set; give a checkpoint file or a cached open_clip tag "
                          "(e.g. openai), or set scorers.clip.allow_random: true for random weights")
    if Path(weights).expanduser().is_file():
        path = Path(weights).expanduser()
        return ClipWeights(path, f"sha256:{files_fingerprint([path])}")
    tag_cfg = open_clip.get_pretrained_cfg(model, weights)
    if not tag_cfg:
        tags = ", ".join(open_clip.list_pretrained_tags_by_model(model)) or "none"
        raise ScorerError(f"scorers.clip.weights: '{weights}' is neither a file nor an open_clip tag of "
                          f"model '{model}' (its tags: {tags})")
    path = cached_tag_file(tag_cfg, cache_dir)
    if path is None:
        raise ScorerError(f"scorers.clip.weights: open_clip weights '{weights}' of model '{model}' are not in "
                          f"the local cache (looked in {'; '.join(cache_places(tag_cfg, cache_dir))}); "
                          "download them where there is internet or give a checkpoint file")
    return ClipWeights(path, f"{weights}@{files_fingerprint([path])}", tag_cfg)


def _hf_candidates(tag_cfg: dict) -> tuple[str, list[str]]:
    """(hub repo, file names to try, safetensors first) of a tag; 'org/repo/' means open_clip's default."""
    repo, _, filename = tag_cfg["hf_hub"].rpartition("/")
    if not filename:
        return repo, list(HF_WEIGHT_FILES)
    stem, _, suffix = filename.rpartition(".")
    return repo, ([f"{stem}.safetensors"] if suffix in ("bin", "pth", "pt") else []) + [filename]


def _url_file(tag_cfg: dict, cache_dir: str | None) -> Path | None:
    url = tag_cfg.get("url", "")
    return Path(cache_dir or "~/.cache/clip").expanduser() / url.rsplit("/", 1)[-1] if url else None


def cached_tag_file(tag_cfg: dict, cache_dir: str | None) -> Path | None:
    """The tag's weights file in the HF hub cache or open_clip's URL cache, or None (local lookups only)."""
    from huggingface_hub import try_to_load_from_cache

    if tag_cfg.get("hf_hub"):
        repo, names = _hf_candidates(tag_cfg)
        for name in names:
            found = try_to_load_from_cache(repo, name, cache_dir=cache_dir)
            if isinstance(found, str):
                return Path(found)
    url_file = _url_file(tag_cfg, cache_dir)
    return url_file if url_file is not None and url_file.is_file() else None


def cache_places(tag_cfg: dict, cache_dir: str | None) -> list[str]:
    """Human-readable places `cached_tag_file` looks in, for the error message."""
    from huggingface_hub import constants

    places = []
    if tag_cfg.get("hf_hub"):
        repo, names = _hf_candidates(tag_cfg)
        places.append(f"{cache_dir or constants.HF_HUB_CACHE} for {repo}/{'|'.join(names)}")
    url_file = _url_file(tag_cfg, cache_dir)
    if url_file is not None:
        places.append(str(url_file))
    return places


def is_torchscript(path: Path) -> bool:
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return any(name.endswith("constants.pkl") for name in archive.namelist())


def torchscript_state_dict(path: Path, tag_cfg: dict) -> dict[str, torch.Tensor]:
    """The state dict of OpenAI's TorchScript checkpoint, only if it is the file open_clip's URL pins."""
    url = tag_cfg.get("url", "")
    pinned = url.split("/")[-2] if "openaipublic" in url else ""
    if not pinned or not file_sha256(path).startswith(pinned):
        raise ScorerError(f"scorers.clip.weights: '{path}' is a TorchScript archive, loaded only as OpenAI's "
                          "own file (weights: openai, with its published SHA-256); else convert it to safetensors")
    return torch.jit.load(str(path), map_location="cpu").state_dict()


def load_matching(net: torch.nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Load `state` into `net`, ignoring extra entries (OpenAI's input_resolution etc.), requiring all of net's."""
    missing = [k for k in net.state_dict() if k not in state]
    if missing:
        raise ScorerError(f"scorers.clip.weights: the checkpoint lacks {len(missing)} tensors of the model, "
                          f"e.g. '{missing[0]}' (wrong scorers.clip.model?)")
    net.load_state_dict({k: state[k] for k in net.state_dict()})


def build_model(model: str, weights: ClipWeights) -> tuple[torch.nn.Module, Any]:
    """(open_clip model in eval mode, its eval preprocessing) for `weights`, on the CPU."""
    import open_clip

    if model not in open_clip.list_models():
        raise ScorerError(f"scorers.clip.model: unknown open_clip model '{model}'")
    cfg = weights.tag_cfg
    jit = weights.path is not None and is_torchscript(weights.path)
    pretrained = str(weights.path) if weights.path is not None and not jit else None
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(RANDOM_SEED)
        net, _, preprocess = open_clip.create_model_and_transforms(
            model, pretrained=pretrained, weights_only=True, force_quick_gelu=bool(cfg.get("quick_gelu")),
            image_mean=cfg.get("mean"), image_std=cfg.get("std"), image_interpolation=cfg.get("interpolation"),
            image_resize_mode=cfg.get("resize_mode"))
    if jit:
        load_matching(net, torchscript_state_dict(weights.path, cfg))
    return net.eval(), preprocess


# ---- the scorer ----------------------------------------------------------------------------------
def _cosines(rows: np.ndarray, table: dict[Any, np.ndarray], keys: list) -> list[float | None]:
    return [None if key is None else float(row @ table[key]) for row, key in zip(rows, keys)]


def _clipscores(cosines: list[float | None]) -> list[float | None]:
    return [None if c is None else float(clipscore(np.float64(c))) for c in cosines]


@register("clip_score")
class ClipScorer(Scorer):
    """CLIP-T of each image vs its prompt (A) and target prompt (B), and CLIP image similarity vs the reference.

    Options: ``model`` (open_clip name, default ViT-B-32), ``weights`` (checkpoint file or cached open_clip
    tag), ``allow_random`` (random weights when no ``weights``; default false), ``cache_dir`` (where
    tags are looked up; default the HF hub cache, then ~/.cache/clip), ``device`` ("auto"), ``batch_size``.
    """

    heavy = True

    name = "clip"
    metrics = ("clip_score",)
    directions: ClassVar[dict[str, int]] = {
        "clip_t_prompt": -1, "clip_t_target": 1, "clip_cos_prompt": -1, "clip_cos_target": 1,
        "clip_image": -1, "clip_image_cos": -1,
    }

    def __init__(self, model: str = "ViT-B-32", weights: str | None = None, allow_random: bool = False,
                 cache_dir: str | None = None, device: str = "auto", batch_size: int = 32, **options: Any):
        super().__init__(**options)
        import open_clip

        self.model_name = model
        self.weights = resolve_weights(model, weights, allow_random, cache_dir)
        self.device = resolve_device(device)
        self.batch_size = batch_size
        net, self.preprocess = build_model(model, self.weights)
        self.model = net.to(self.device)
        self.tokenizer = open_clip.get_tokenizer(model)

    def identity(self) -> dict[str, str]:
        return {"clip_model": self.model_name, "clip_weights": self.weights.label}

    @torch.inference_mode()
    def encode_images(self, images: Sequence[np.ndarray]) -> np.ndarray:
        """L2-normalised image features (N, D) of uint8 (H, W, 3) images."""
        out = []
        for start in range(0, len(images), self.batch_size):
            chunk = [self.preprocess(Image.fromarray(im)) for im in images[start:start + self.batch_size]]
            out.append(self.model.encode_image(torch.stack(chunk).to(self.device), normalize=True).float().cpu())
        return torch.cat(out).numpy() if out else np.zeros((0, 0), np.float32)

    @torch.inference_mode()
    def encode_texts(self, texts: list[str]) -> np.ndarray:
        """L2-normalised text features (N, D)."""
        out = []
        for start in range(0, len(texts), self.batch_size):
            tokens = self.tokenizer(texts[start:start + self.batch_size]).to(self.device)
            out.append(self.model.encode_text(tokens, normalize=True).float().cpu())
        return torch.cat(out).numpy() if out else np.zeros((0, 0), np.float32)

    def score(self, batch: ScoreBatch) -> dict[str, list]:
        n = len(batch)
        prompts = list(batch.prompts) or [None] * n
        targets = list(batch.targets) or [None] * n
        image_keys = [image_digest(im) for im in batch.images]
        reference_keys = [image_digest(im) for im in batch.references] if batch.references is not None else [None] * n
        images = self._image_table(batch, image_keys, reference_keys)
        texts = self._text_table([t for t in prompts + targets if t is not None])
        rows = np.stack([images[k] for k in image_keys]) if n else np.zeros((0, 0))
        cos = {"prompt": _cosines(rows, texts, prompts), "target": _cosines(rows, texts, targets),
               "image": _cosines(rows, images, reference_keys)}
        return {"clip_t_prompt": _clipscores(cos["prompt"]), "clip_t_target": _clipscores(cos["target"]),
                "clip_cos_prompt": cos["prompt"], "clip_cos_target": cos["target"],
                "clip_image": _clipscores(cos["image"]), "clip_image_cos": cos["image"]}

    def _image_table(self, batch: ScoreBatch, image_keys: list[str], reference_keys: list) -> dict[str, np.ndarray]:
        """Features of each distinct image among the batch's images and references, by content key."""
        pool = list(batch.images) + (list(batch.references) if batch.references is not None else [])
        unique: dict[str, np.ndarray] = {}
        for key, image in zip(image_keys + reference_keys, pool):
            if key is not None:
                unique.setdefault(key, image)
        features = self.encode_images(list(unique.values()))
        return dict(zip(unique, features))

    def _text_table(self, texts: list[str]) -> dict[str, np.ndarray]:
        distinct = list(dict.fromkeys(texts))
        return dict(zip(distinct, self.encode_texts(distinct))) if distinct else {}
