"""Models: load a diffusers pipeline offline and give every architecture the same small interface.

The harness never calls a pipeline with prompt strings during a sweep. It encodes prompts once
(`encode` for the positive rows, `encode_negative` for the shared unconditional row), stacks the rows it
wants in one batch, and calls the pipeline with `prompt_embeds=` and one seeded CPU generator per row.
That is what lets one denoising pass carry many variants, and it is exactly what the pipeline does
inside a plain call, so an un-intervened row equals the plain pipeline's image.

Loading is offline by construction: a local diffusers directory, or a hub id resolved from the local
Hugging Face cache with `local_files_only=True`; weights from safetensors only; never remote code.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from harness.errors import UserError
from harness.sites import SiteTable, discover

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


class ModelLoadError(UserError):
    """A model that cannot be found or loaded; the message names the model and where it looked."""


@dataclass(frozen=True)
class GenerationDefaults:
    """Paper defaults per architecture (METHODS.md §4.4); tiny models use small, fast settings."""

    steps: int
    guidance_scale: float
    height: int
    width: int


@dataclass(frozen=True)
class ModelInfo:
    """What a result row records about the model that produced it."""

    model_id: str
    arch: str
    pipeline_class: str
    revision: str
    fingerprint: str
    dtype: str
    device: str


class ModelAdapter:
    """One loaded pipeline plus what the harness needs to know about its architecture."""

    arch: str = ""
    denoiser_name: str = "unet"
    text_encoder_names: tuple[str, ...] = ("text_encoder",)
    tokenizer_names: tuple[str, ...] = ("tokenizer",)
    # True when a cross-attention layer's K/V projections read the pipeline's prompt_embeds unchanged,
    # so injecting another prompt's embeddings is exact and needs no donor row.
    kv_input_is_prompt_embeds: bool = True
    kv_projections: tuple[str, str] = ("to_k", "to_v")
    paper_defaults = GenerationDefaults(50, 7.5, 512, 512)
    # Per-row tensors the pipeline's callback_on_step_end can replace; None: the pipeline has no such
    # callback, so a batch cannot branch mid-trajectory (see harness.generate).
    branch_tensors: tuple[str, ...] | None = ("latents", "prompt_embeds")

    def __init__(self, pipe, info: ModelInfo, tiny: bool):
        self.pipe = pipe
        self.info = info
        self.tiny = tiny

    # ---- structure -------------------------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        return torch.device(self.info.device)

    @property
    def dtype(self) -> torch.dtype:
        return DTYPES[self.info.dtype]

    @property
    def denoiser(self) -> torch.nn.Module:
        return getattr(self.pipe, self.denoiser_name)

    def components(self) -> dict[str, torch.nn.Module]:
        """Denoiser and text encoders by component name (the prefix of every site name)."""
        names = (self.denoiser_name, *self.text_encoder_names)
        return {n: getattr(self.pipe, n) for n in names if getattr(self.pipe, n, None) is not None}

    def pipeline_text(self, prompt: str) -> str:
        """The prompt as the pipeline hands it to its tokenizers (token positions are found in this)."""
        return prompt

    def text_encoders(self) -> dict[str, tuple[torch.nn.Module, object]]:
        """Text encoder and its tokenizer, by component name."""
        out = {}
        for enc, tok in zip(self.text_encoder_names, self.tokenizer_names):
            if getattr(self.pipe, enc, None) is not None:
                out[enc] = (getattr(self.pipe, enc), getattr(self.pipe, tok))
        return out

    def module(self, site_name: str) -> torch.nn.Module:
        component, _, path = site_name.partition(".")
        return self.components()[component].get_submodule(path)

    def kv_modules(self, site_name: str) -> tuple[torch.nn.Module, torch.nn.Module]:
        """The K and V projections through which text enters at a text-reading attention site."""
        attn = self.module(site_name)
        return getattr(attn, self.kv_projections[0]), getattr(attn, self.kv_projections[1])

    @property
    def defaults(self) -> GenerationDefaults:
        if self.tiny:
            size = 16 if self.arch == "if" else 64
            return GenerationDefaults(10, self.paper_defaults.guidance_scale, size, size)
        return self.paper_defaults

    def denoiser_calls(self, steps: int) -> int:
        """How many denoising steps (denoiser calls) a pipeline call of `steps` inference steps makes.

        Usually `steps`; PNDM (SD1.x's default) makes one more. Step windows (`step_start`) count calls.
        """
        import copy

        cache = self.__dict__.setdefault("_denoiser_calls", {})  # asked once per batch: keep the answer
        key = (steps, id(self.pipe.scheduler))
        if key not in cache:
            scheduler = copy.deepcopy(self.pipe.scheduler)
            try:
                scheduler.set_timesteps(steps)
                cache[key] = len(scheduler.timesteps)
            except (TypeError, ValueError):  # schedulers that need pipeline-computed arguments (e.g. mu)
                cache[key] = steps
        return cache[key]

    @functools.cached_property
    def sites(self) -> SiteTable:
        """The site table, found by one short traced generation (forward-call order)."""
        size = 16 if self.arch == "if" else 8 * self.pipe.vae_scale_factor

        def run_once():
            cond, neg = self.encode(["a photo"]), self.encode_negative(1)
            self.generate(cond, neg, seeds=[0], steps=1, guidance_scale=2.0, height=size, width=size,
                          decode=False)

        return discover(self.components(), run_once)

    # ---- text ------------------------------------------------------------------------------------
    @torch.no_grad()
    def encode(self, prompts: list[str]) -> dict[str, torch.Tensor]:
        """Positive conditioning for `prompts`: pipeline keyword → tensor with one row per prompt.

        Under no_grad: tensors that track gradients make SDPA pick another kernel, and the image would
        then differ (by ~1e-6) from a plain pipeline call.
        """
        return self._encode(list(prompts))

    @torch.no_grad()
    def encode_negative(self, n: int) -> dict[str, torch.Tensor]:
        """The unconditional conditioning a plain pipeline call uses (empty prompt), `n` rows."""
        return {k: v.expand(n, *v.shape[1:]) for k, v in self._encode_negative().items()}

    def _encode(self, prompts: list[str]) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def _encode_negative(self) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    # ---- generation ------------------------------------------------------------------------------
    def generate(self, cond: dict[str, torch.Tensor], negative: dict[str, torch.Tensor] | None,
                 seeds: list[int], steps: int, guidance_scale: float, height: int, width: int,
                 decode: bool = True, as_float: bool = False, callback=None) -> np.ndarray | None:
        """One pipeline call; row i starts from CPU-generator noise seeded with `seeds[i]`.

        Returns uint8 images (N, H, W, 3), rounded as the pipelines' own PIL conversion does (float32 in
        [0, 1] with `as_float`, for tight numerical comparisons).
        """
        kwargs = dict(cond)
        if guidance_scale > 1 and negative is not None:
            kwargs.update(negative)
        generators = [torch.Generator("cpu").manual_seed(int(s)) for s in seeds]
        if callback is not None:
            kwargs.update(callback_on_step_end=callback, callback_on_step_end_tensor_inputs=list(self.branch_tensors))
        out = self.pipe(**kwargs, num_inference_steps=steps, guidance_scale=guidance_scale,
                        height=height, width=width, generator=generators,
                        output_type=self._output_type(decode))
        if not decode:
            return None
        images = np.asarray(out.images, dtype=np.float32)
        if as_float:
            return images
        return (images * 255).round().clip(0, 255).astype(np.uint8)

    def _output_type(self, decode: bool) -> str:
        return "np" if decode else "latent"


class SD15Adapter(ModelAdapter):
    """SD 1.x / 2.x: one CLIP text encoder; K/V of `attn2` read prompt_embeds directly."""

    arch = "sd15"

    def _encode(self, prompts):
        embeds, _ = self.pipe.encode_prompt(prompts, self.device, 1, False)
        return {"prompt_embeds": embeds}

    def _encode_negative(self):
        _, neg = self.pipe.encode_prompt([""], self.device, 1, True)
        return {"negative_prompt_embeds": neg}


class SDXLAdapter(ModelAdapter):
    """SDXL: two CLIP encoders concatenated for attn2; pooled text embedding as added conditioning."""

    arch = "sdxl"
    branch_tensors = ("latents", "prompt_embeds", "add_text_embeds", "add_time_ids")
    text_encoder_names = ("text_encoder", "text_encoder_2")
    tokenizer_names = ("tokenizer", "tokenizer_2")
    paper_defaults = GenerationDefaults(50, 5.0, 1024, 1024)

    def _encode(self, prompts):
        embeds, _, pooled, _ = self.pipe.encode_prompt(prompt=prompts, device=self.device,
                                                        num_images_per_prompt=1,
                                                        do_classifier_free_guidance=False)
        return {"prompt_embeds": embeds, "pooled_prompt_embeds": pooled}

    def _encode_negative(self):
        _, neg, _, neg_pooled = self.pipe.encode_prompt(prompt=[""], device=self.device,
                                                         num_images_per_prompt=1,
                                                         do_classifier_free_guidance=True)
        return {"negative_prompt_embeds": neg,
                "negative_pooled_prompt_embeds": neg_pooled}


class IFAdapter(ModelAdapter):
    """DeepFloyd IF stage I: pixel-space UNet, T5 text; text enters AttnAddedKV attentions through
    add_k_proj/add_v_proj after encoder_hid_proj and a per-layer norm, so injection needs a donor row."""

    arch = "if"
    branch_tensors = None  # IFPipeline has no callback_on_step_end
    kv_input_is_prompt_embeds = False
    kv_projections = ("add_k_proj", "add_v_proj")
    paper_defaults = GenerationDefaults(50, 7.0, 64, 64)

    def pipeline_text(self, prompt: str) -> str:
        # IFPipeline.encode_prompt(clean_caption=False) lower-cases and strips; T5's tokenizer is cased.
        return prompt.lower().strip()

    def _encode(self, prompts):
        embeds, _ = self.pipe.encode_prompt(prompts, do_classifier_free_guidance=False, device=self.device,
                                            clean_caption=False)
        return {"prompt_embeds": embeds}

    def _encode_negative(self):
        _, neg = self.pipe.encode_prompt([""], do_classifier_free_guidance=True, device=self.device,
                                         clean_caption=False)
        return {"negative_prompt_embeds": neg}

    def _output_type(self, decode):
        return "np" if decode else "pt"


class SD3Adapter(ModelAdapter):
    """SD3: MMDiT joint attention; the text stream evolves block to block, so text-side K/V are
    patched from a donor row run in the same batch rather than injected from embeddings."""

    arch = "sd3"
    branch_tensors = ("latents", "prompt_embeds", "pooled_prompt_embeds")
    denoiser_name = "transformer"
    text_encoder_names = ("text_encoder", "text_encoder_2", "text_encoder_3")
    tokenizer_names = ("tokenizer", "tokenizer_2", "tokenizer_3")
    kv_input_is_prompt_embeds = False
    kv_projections = ("add_k_proj", "add_v_proj")
    paper_defaults = GenerationDefaults(28, 7.0, 1024, 1024)

    def _encode(self, prompts):
        embeds, _, pooled, _ = self.pipe.encode_prompt(prompt=prompts, prompt_2=None, prompt_3=None,
                                                        device=self.device, do_classifier_free_guidance=False)
        return {"prompt_embeds": embeds, "pooled_prompt_embeds": pooled}

    def _encode_negative(self):
        _, neg, _, neg_pooled = self.pipe.encode_prompt(prompt=[""], prompt_2=None, prompt_3=None,
                                                         device=self.device, do_classifier_free_guidance=True)
        return {"negative_prompt_embeds": neg,
                "negative_pooled_prompt_embeds": neg_pooled}


ADAPTERS: dict[str, type[ModelAdapter]] = {
    "StableDiffusionPipeline": SD15Adapter,
    "StableDiffusionXLPipeline": SDXLAdapter,
    "IFPipeline": IFAdapter,
    "StableDiffusion3Pipeline": SD3Adapter,
}
_TINY_CLASS = {"sd15": "StableDiffusionPipeline", "sdxl": "StableDiffusionXLPipeline", "if": "IFPipeline",
               "sd3": "StableDiffusion3Pipeline"}


def resolve_device(device: str) -> str:
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ModelLoadError(f"device '{device}' requested but no CUDA device is available; use 'cpu' or 'auto'")
    return device


def resolve_dtype(dtype: str, device: str, arch: str) -> str:
    """fp32 on CPU; on GPU bf16 for SD3 (its reference runs tolerate it best), fp16 otherwise."""
    if dtype != "auto":
        return dtype
    if device == "cpu":
        return "fp32"
    return "bf16" if arch == "sd3" else "fp16"


def _state_fingerprint(modules: dict[str, torch.nn.Module]) -> str:
    digest = hashlib.sha256()
    for name in sorted(modules):
        for key, tensor in sorted(modules[name].state_dict().items()):
            digest.update(f"{name}.{key}".encode())
            digest.update(tensor.detach().to(torch.float32).cpu().numpy().tobytes())
    return digest.hexdigest()[:16]


def _dir_fingerprint(path: Path) -> str:
    """Configs' content plus weight files' names and sizes: cheap, and changes with any new checkpoint."""
    digest = hashlib.sha256()
    for file in sorted(path.rglob("*")):
        if not file.is_file():
            continue
        rel = file.relative_to(path).as_posix()
        digest.update(rel.encode())
        if file.suffix == ".json" or file.suffix == ".txt":
            digest.update(file.read_bytes())
        else:
            digest.update(str(file.stat().st_size).encode())
    return digest.hexdigest()[:16]


def locate(model: str) -> Path:
    """A local directory as given, or the cached snapshot of a hub id (never a download)."""
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
    if model.startswith("random:"):
        from harness.fullsize import FULLSIZE_ARCHS, build_fullsize

        arch = model.split(":", 1)[1]
        if arch not in FULLSIZE_ARCHS:
            raise ModelLoadError(f"model '{model}': unknown full-size random model; expected one of "
                                 + ", ".join(f"random:{a}" for a in FULLSIZE_ARCHS))
        dtype = resolve_dtype(dtype, device, arch)
        pipe = build_fullsize(arch, device, DTYPES[dtype])
        info = ModelInfo(model, arch, _TINY_CLASS[arch], "random", "random-weights", dtype, device)
        return ADAPTERS[_TINY_CLASS[arch]](pipe, info, tiny=False)
    if model.startswith("tiny:"):
        from harness.tiny import build_tiny

        arch = model.split(":", 1)[1]
        if arch not in _TINY_CLASS:
            raise ModelLoadError(f"model '{model}': unknown tiny model; expected one of "
                                 + ", ".join(f"tiny:{a}" for a in _TINY_CLASS))
        pipe = build_tiny(arch)
        cls = ADAPTERS[_TINY_CLASS[arch]]
        dtype = resolve_dtype(dtype, device, arch)
        pipe.to(device)
        if dtype != "fp32":
            pipe.to(dtype=DTYPES[dtype])
        fingerprint = _state_fingerprint({n: m for n, m in _pipe_modules(pipe).items()})
        info = ModelInfo(model, arch, _TINY_CLASS[arch], "tiny", fingerprint, dtype, device)
        return cls(pipe, info, tiny=True)
    path = locate(model)
    index = json.loads((path / "model_index.json").read_text())
    class_name = index.get("_class_name", "")
    if class_name not in ADAPTERS:
        raise ModelLoadError(f"model '{model}': pipeline class '{class_name}' is not supported; expected one of "
                             + ", ".join(ADAPTERS))
    cls = ADAPTERS[class_name]
    dtype = resolve_dtype(dtype, device, cls.arch)
    pipe = _from_pretrained(path, class_name, index, DTYPES[dtype])
    pipe.to(device)
    pipe.set_progress_bar_config(disable=True)
    revision = path.name if path.parent.name == "snapshots" else "local"
    info = ModelInfo(model, cls.arch, class_name, revision, _dir_fingerprint(path), dtype, device)
    return cls(pipe, info, tiny=False)


def _pipe_modules(pipe) -> dict[str, torch.nn.Module]:
    return {n: m for n, m in pipe.components.items() if isinstance(m, torch.nn.Module)}


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
    try:
        return getattr(diffusers, class_name).from_pretrained(path, **kwargs)
    except (OSError, ValueError, EnvironmentError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelLoadError(f"model at '{path}' could not be loaded: {first}") from None
