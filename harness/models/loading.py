"""Model loading: offline by construction.

A local diffusers directory, or a hub id resolved from the local Hugging Face cache with
`local_files_only=True`; weights from safetensors only; never remote code. `tiny:<arch>` builds a tiny
random model and `random:<arch>` a full-size one, with the builders the architecture's module declares
(`harness.models.registry`), and a ``+planted=<site>`` suffix plants a known answer (`harness.planted`).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import torch

from harness.models import registry
from harness.models.adapters import DTYPES, ModelAdapter, ModelInfo, ModelLoadError


def resolve_device(device: str) -> str:
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ModelLoadError(f"device '{device}' requested but no CUDA device is available; use 'cpu' or 'auto'")
    return device


def resolve_dtype(dtype: str, device: str, adapter: type[ModelAdapter]) -> str:
    """fp32 on CPU; on GPU the adapter's `gpu_dtype`."""
    if dtype != "auto":
        return dtype
    if device == "cpu":
        return "fp32"
    return adapter.gpu_dtype


def _state_fingerprint(modules: dict[str, torch.nn.Module]) -> str:
    digest = hashlib.sha256()
    for name in sorted(modules):
        for key, tensor in sorted(modules[name].state_dict().items()):
            digest.update(f"{name}.{key}".encode())
            digest.update(tensor.detach().to(torch.float32).cpu().numpy().tobytes())
    return digest.hexdigest()[:16]


DOCUMENT_SUFFIXES = (".md", ".png", ".jpg", ".csv", ".html")  # reports beside the weights, not the model


def dir_fingerprint(path: Path) -> str:
    """Configs' content plus weight files' names and sizes: cheap, and changes with any new checkpoint. Reports
    kept beside the weights (a model card, loss curves, samples) are not the model: writing MODEL_CARD.md after
    a sweep must not make the sweep's runs another model's."""
    digest = hashlib.sha256()
    for file in sorted(path.rglob("*")):
        if not file.is_file() or file.suffix.lower() in DOCUMENT_SUFFIXES:
            continue
        rel = file.relative_to(path).as_posix()
        digest.update(rel.encode())
        if file.suffix == ".json" or file.suffix == ".txt":
            digest.update(file.read_bytes())
        else:
            digest.update(str(file.stat().st_size).encode())
    return digest.hexdigest()[:16]


def locate(model: str) -> Path:
    """A built-in model's shipped directory, a local directory as given, or the cached snapshot of a hub
    id (never a download)."""
    from harness.models.builtin import builtin_path

    builtin = builtin_path(model)
    if builtin is not None and not Path(model).expanduser().is_dir():
        if not (builtin / "model_index.json").is_file():
            raise ModelLoadError(f"model '{model}': the built-in weights are missing at {builtin} "
                                 "(train them with `loco toyworld train`)")
        return builtin
    path = Path(model).expanduser()
    if path.is_dir():
        if not (path / "model_index.json").is_file():
            raise ModelLoadError(f"model '{model}': directory has no model_index.json (expected a diffusers "
                                 "pipeline directory)")
        return path
    if model.startswith((".", "/", "~")) or os.sep in model.strip("/").replace("/", "", 1):
        raise ModelLoadError(f"model '{model}': no such directory")
    from huggingface_hub import constants, snapshot_download

    try:
        return Path(snapshot_download(model, local_files_only=True))
    except Exception as exc:  # huggingface_hub raises several types for "not cached" and bad ids
        raise ModelLoadError(
            f"model '{model}' is not a local directory and is not in the local Hugging Face cache "
            f"({constants.HF_HUB_CACHE}); download it beforehand or pass a directory "
            f"({type(exc).__name__})") from None


def set_reproducible(enabled: bool = True, cpu: bool = True) -> None:
    """Make a row's image independent of where it sits in its batch.

    On CPU, oneDNN picks convolution algorithms by batch size, and a multi-threaded GEMM rounds rows in
    different thread partitions differently (~1e-7), so identical rows of one batch could differ in the
    last bit. With this on, CPU work runs on ATen's batch-independent convolution kernels and one
    intra-op thread (parallelism comes from running one worker per core instead; for the tiny models one
    thread is as fast as two), and cuDNN is deterministic on GPU. A variant with no effect then equals its
    control exactly. `reproducible: false` in a job turns it off.
    """
    torch.backends.mkldnn.enabled = not enabled
    torch.backends.cudnn.deterministic = enabled
    torch.backends.cudnn.benchmark = not enabled
    if enabled and cpu:
        torch.set_num_threads(1)


PLANT_SEP = "+planted="


def load_model(model: str, device: str = "auto", dtype: str = "auto") -> ModelAdapter:
    """Load `model` (``tiny:<arch>``, a diffusers directory, or a cached hub id) onto `device`.

    A ``+planted=<site>`` suffix (``tiny:sdxl+planted=cross_attn#55``) returns the model with every text
    path cut except that site's (see `harness.planted`): a model whose localization answer is known.
    """
    base, _, planted_site = model.partition(PLANT_SEP)
    adapter = _load(base, device, dtype)
    if planted_site:
        from harness.planted import plant

        site = adapter.sites.resolve(planted_site)
        plant(adapter, site.name)
        fingerprint = (_state_fingerprint(_pipe_modules(adapter.pipe)) if adapter.tiny
                       else f"{adapter.info.fingerprint}+{site.label}")
        adapter.info = ModelInfo(model, adapter.arch, adapter.info.pipeline_class, adapter.info.revision,
                                 fingerprint, adapter.info.dtype, adapter.info.device)
    return adapter


def _load(model: str, device: str, dtype: str) -> ModelAdapter:
    device = resolve_device(device)
    if model.startswith(("random:", "tiny:")):
        return _build(model, device, dtype)
    path = locate(model)
    index = json.loads((path / "model_index.json").read_text())
    class_name = index.get("_class_name", "")
    arch = registry.for_checkpoint(path, class_name)
    if arch is None:
        raise ModelLoadError(f"model '{model}': pipeline class '{class_name}' is not supported; expected one of "
                             + ", ".join(p for a in registry.architectures() for p in a.pipelines))
    cls = arch.adapter
    dtype = resolve_dtype(dtype, device, cls)
    pipe = _from_pretrained(path, class_name, index, DTYPES[dtype])
    pipe.to(device)
    pipe.set_progress_bar_config(disable=True)
    revision = path.name if path.parent.name == "snapshots" else "local"
    info = ModelInfo(model, cls.arch, class_name, revision, dir_fingerprint(path), dtype, device)
    adapter = cls(pipe, info, tiny=False)
    adapter.generation_override = sidecar_defaults(path)
    return adapter


def _build(model: str, device: str, dtype: str) -> ModelAdapter:
    """``tiny:<arch>`` (fixed-seed weights, built on the CPU) or ``random:<arch>`` (full size, random weights
    drawn on `device`), from the architecture module's builders."""
    from harness.models.parts import build_random, seeded

    kind, _, name = model.partition(":")
    arch = registry.get(name)
    builder = arch and (arch.tiny if kind == "tiny" else arch.fullsize)
    if builder is None:
        known = [a.name for a in registry.architectures() if (a.tiny if kind == "tiny" else a.fullsize)]
        label = "tiny" if kind == "tiny" else "full-size random"
        raise ModelLoadError(f"model '{model}': unknown {label} model; expected one of "
                             + ", ".join(f"{kind}:{a}" for a in known))
    cls, pipeline_class = arch.adapter, arch.pipelines[0]
    dtype = resolve_dtype(dtype, device, cls)
    if kind == "random":
        pipe = build_random(builder, device, DTYPES[dtype])
        return cls(pipe, ModelInfo(model, name, pipeline_class, "random", "random-weights", dtype, device), tiny=False)
    pipe = seeded(builder)
    pipe.to(device)
    if dtype != "fp32":
        pipe.to(dtype=DTYPES[dtype])
    fingerprint = _state_fingerprint({n: m for n, m in _pipe_modules(pipe).items()})
    return cls(pipe, ModelInfo(model, name, pipeline_class, "tiny", fingerprint, dtype, device), tiny=True)


def sidecar_defaults(path: Path):
    """Sampler defaults a model ships beside its weights (`toyworld.json`), or None (the paper's)."""
    from harness.models.adapters import GenerationConfig
    from harness.toyworld.sidecar import read_sidecar

    sidecar = read_sidecar(path)
    if sidecar is None:
        return None
    inf = sidecar["inference"]
    return GenerationConfig(int(inf["steps"]), float(inf["guidance_scale"]), int(inf["height"]), int(inf["width"]))


def _pipe_modules(pipe) -> dict[str, torch.nn.Module]:
    return {n: m for n, m in pipe.components.items() if isinstance(m, torch.nn.Module)}


def quiet_loading() -> None:
    """No "Loading pipeline components..." / "Loading weights" bars: a sweep loads a model once per worker
    (again after each restart), and those bars would break the driver's one progress display. Set here, in
    the process that loads — a Ray actor never runs the CLI's `quiet()`."""
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    diffusers_logging.disable_progress_bar()
    transformers_logging.disable_progress_bar()


def _from_pretrained(path: Path, class_name: str, index: dict, torch_dtype):
    import diffusers

    kwargs: dict = dict(torch_dtype=torch_dtype, local_files_only=True, use_safetensors=True)
    for optional in ("safety_checker", "feature_extractor", "watermarker", "text_encoder_3", "tokenizer_3"):
        if optional in index and (optional in ("safety_checker", "watermarker") or index[optional][0] is None):
            kwargs[optional] = None
    if "safety_checker" in index:
        kwargs["requires_safety_checker"] = False
    if torch_dtype != torch.float32 and any(path.rglob("*.fp16.safetensors")):
        kwargs["variant"] = "fp16"
    quiet_loading()
    try:
        return getattr(diffusers, class_name).from_pretrained(path, **kwargs)
    except (OSError, ValueError, EnvironmentError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelLoadError(f"model at '{path}' could not be loaded: {first}") from None
