"""Run a fine-tune: validate → load → add the LoRA → train with checkpoints → write the adapter directory.

Everything that can be wrong with a spec (an unknown site or projection, candidates of another model, an
empty or uncaptioned data folder, rank 0) is found before `--out` is touched, so a bad spec writes
nothing. Training then follows diffusers' LoRA examples: PEFT's `LoraConfig(r, lora_alpha, gaussian init,
target_modules)` added with `denoiser.add_adapter`, AdamW on the LoRA parameters only (kept in fp32 under
mixed precision), a constant learning rate without warm-up, gradient clipping (P3's settings).

**Resuming.** Every `checkpoint_every` steps (and when interrupted with Ctrl-C) the LoRA weights, the
optimizer, the random generator, the loss curve and the elapsed seconds are written atomically to
``OUT/checkpoints/step-NNNNNN``; running the same spec with the same `--out` continues from the latest
one. Batches, noise and timesteps all come from that one generator, so a resumed run takes exactly the
steps an uninterrupted one would (`tests/integration/test_finetune.py` checks the weights are equal).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from harness.finetune.spec import FinetuneError, FinetuneSpec

CHECKPOINTS = "checkpoints"
KEEP_CHECKPOINTS = 2


@dataclass
class Prepared:
    """A validated fine-tune: the loaded model, its targets and data; nothing written yet."""

    spec: FinetuneSpec
    adapter: object
    targets: object
    data: object
    device: str
    dtype: str
    autocast_dtype: torch.dtype | None


def precision(spec: FinetuneSpec, device: str) -> tuple[str, torch.dtype | None]:
    """(weights dtype of the frozen model, autocast dtype) for `mixed_precision` on `device`."""
    mode = spec.mixed_precision
    if mode == "auto":
        mode = "fp16" if device.startswith("cuda") else "no"
    if mode == "no":
        return "fp32", None
    if mode == "fp16" and not device.startswith("cuda"):
        raise FinetuneError("mixed_precision: fp16 needs a GPU (this run is on the CPU); use no or bf16")
    return mode, {"fp16": torch.float16, "bf16": torch.bfloat16}[mode]


def prepare(spec: FinetuneSpec, adapter=None) -> Prepared:
    """Load and check everything the spec names (one-line errors); `adapter`: an already loaded model."""
    from harness.finetune.data import load_data
    from harness.finetune.targets import resolve_targets
    from harness.models import load_model, resolve_device

    device = resolve_device(spec.device)
    dtype, autocast_dtype = precision(spec, device)
    if adapter is None:
        adapter = load_model(spec.model, device, dtype)
    if not hasattr(adapter.pipe, "load_lora_weights"):
        raise FinetuneError(f"model: {type(adapter.pipe).__name__} has no LoRA loader in diffusers (a trained "
                            "adapter could not be loaded by plain diffusers); fine-tune another architecture")
    targets = resolve_targets(spec, adapter)
    resolution = spec.resolution or min(512, adapter.defaults.height)
    data = load_data(spec.data, resolution, spec.center_crop)
    return Prepared(spec, adapter, targets, data, device, dtype, autocast_dtype)


def check_out(out: Path, spec: FinetuneSpec, force: bool) -> Path | None:
    """The checkpoint to resume from (None: start afresh). A finished adapter, another spec's checkpoints
    or unrelated files in `out` are refused unless `force`."""
    from harness.finetune.output import MANIFEST

    if not out.exists() or (out.is_dir() and not any(out.iterdir())):
        return None
    if force:
        shutil.rmtree(out) if out.is_dir() else out.unlink()
        return None
    if not out.is_dir():
        raise FinetuneError(f"--out: '{out}' is a file")
    if (out / MANIFEST).is_file():
        raise FinetuneError(f"--out: '{out}' already holds a finished adapter (use --force to train it again)")
    latest = latest_checkpoint(out)
    if latest is None:
        raise FinetuneError(f"--out: '{out}' already exists and is not empty (use --force to replace it)")
    state = json.loads((latest / "state.json").read_text())
    if state.get("spec_fingerprint") != spec.fingerprint():
        raise FinetuneError(f"--out: '{out}' holds checkpoints of another fine-tune spec (use --force to start "
                            "this one afresh)")
    return latest


def latest_checkpoint(out: Path) -> Path | None:
    folder = out / CHECKPOINTS
    done = sorted(p for p in folder.glob("step-*") if (p / "state.json").is_file()) if folder.is_dir() else []
    return done[-1] if done else None


def add_lora(prepared: Prepared) -> list[torch.nn.Parameter]:
    """PEFT's LoRA on the target modules (P3: gaussian init, alpha = r); returns the trainable parameters
    (fp32 even when the frozen model is fp16, as diffusers' `cast_training_params`)."""
    from peft import LoraConfig

    spec, denoiser = prepared.spec, prepared.adapter.denoiser
    denoiser.requires_grad_(False)
    for name in prepared.adapter.text_encoder_names:
        encoder = getattr(prepared.adapter.pipe, name, None)
        if encoder is not None:
            encoder.requires_grad_(False)
    config = LoraConfig(r=spec.rank, lora_alpha=spec.lora_alpha, init_lora_weights="gaussian",
                        target_modules=prepared.targets.modules)
    torch.manual_seed(spec.seed)  # PEFT's gaussian init of lora_A draws from the global generator
    denoiser.add_adapter(config)
    params = [p for p in denoiser.parameters() if p.requires_grad]
    for p in params:
        p.data = p.data.float()
    if spec.gradient_checkpointing and hasattr(denoiser, "enable_gradient_checkpointing"):
        denoiser.enable_gradient_checkpointing()
    return params


def lora_state(denoiser) -> dict[str, torch.Tensor]:
    from peft.utils import get_peft_model_state_dict

    return {k: v.detach().to("cpu", torch.float32).contiguous() for k, v in get_peft_model_state_dict(denoiser).items()}


def save_checkpoint(out: Path, step: int, denoiser, optimizer, generator: torch.Generator, losses: list,
                    seconds: float, spec: FinetuneSpec, scaler=None) -> Path:
    from safetensors.torch import save_file

    folder = out / CHECKPOINTS
    folder.mkdir(parents=True, exist_ok=True)
    final = folder / f"step-{step:06d}"
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=folder))
    save_file(lora_state(denoiser), str(tmp / "lora.safetensors"))
    torch.save({"optimizer": optimizer.state_dict(), "generator": generator.get_state(),
                "scaler": scaler.state_dict() if scaler is not None else None}, tmp / "training.pt")
    (tmp / "state.json").write_text(json.dumps({"step": step, "seconds": seconds, "losses": losses,
                                                "spec_fingerprint": spec.fingerprint()}))
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    for old in sorted(folder.glob("step-*"))[:-KEEP_CHECKPOINTS]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def load_checkpoint(path: Path, denoiser, optimizer, generator: torch.Generator, scaler=None) -> dict:
    from peft.utils import set_peft_model_state_dict
    from safetensors.torch import load_file

    set_peft_model_state_dict(denoiser, load_file(str(path / "lora.safetensors")))
    training = torch.load(path / "training.pt", weights_only=True)
    optimizer.load_state_dict(training["optimizer"])
    generator.set_state(training["generator"])
    if scaler is not None and training.get("scaler"):
        scaler.load_state_dict(training["scaler"])
    return json.loads((path / "state.json").read_text())


def run_finetune(spec: FinetuneSpec, out: str | Path, force: bool = False, adapter=None, progress: bool = True,
                 stop_after: int | None = None, log=print) -> dict | None:
    """Train `spec` into `out` (resuming from its checkpoints); returns the manifest, or None when
    `stop_after` steps of this invocation ended it early (a checkpoint is written first: tests use it to
    stand for an interruption)."""
    from tqdm import tqdm

    from harness.finetune.objective import Objective
    from harness.finetune.output import write_adapter

    out = Path(out).expanduser().resolve()
    prepared = prepare(spec, adapter)  # every check before anything is written
    resume = check_out(out, spec, force)
    params = add_lora(prepared)
    denoiser = prepared.adapter.denoiser
    optimizer = torch.optim.AdamW(params, lr=spec.lr, betas=(0.9, 0.999), weight_decay=spec.weight_decay, eps=1e-8)
    generator = torch.Generator().manual_seed(spec.seed)
    scaler = torch.amp.GradScaler("cuda") if prepared.autocast_dtype == torch.float16 else None
    losses: list[list[float]] = []
    done, seconds_before = 0, 0.0
    if resume is not None:
        state = load_checkpoint(resume, denoiser, optimizer, generator, scaler)
        done, seconds_before, losses = state["step"], state["seconds"], state["losses"]
        log(f"resuming from {resume} (step {done} of {spec.steps})")
    objective = Objective(prepared.adapter, spec.snr_gamma)
    device_type = "cuda" if prepared.device.startswith("cuda") else "cpu"

    def autocast():
        if prepared.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type, dtype=prepared.autocast_dtype)

    data = prepared.data
    denoiser.train()
    started = time.perf_counter()
    bar = tqdm(total=spec.steps, initial=done, desc=spec.name or "finetune", unit="step", dynamic_ncols=True,
               disable=not progress or None)
    step = done
    try:
        while step < spec.steps:
            optimizer.zero_grad(set_to_none=True)
            total = 0.0
            for _ in range(spec.accumulate):
                index = torch.randint(0, len(data), (spec.batch,), generator=generator).tolist()
                loss = objective.loss(data.batch(index), generator, autocast) / spec.accumulate
                (scaler.scale(loss) if scaler else loss).backward()
                total += loss.item()
            if scaler:
                scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(params, spec.max_grad_norm)
            if scaler:
                scaler.step(optimizer)
                scaler.update()
            else:
                optimizer.step()
            step += 1
            losses.append([step, round(total, 6)])
            bar.update(1)
            bar.set_postfix(loss=f"{total:.4f}")
            seconds = seconds_before + time.perf_counter() - started
            if step % spec.checkpoint_every == 0 and step < spec.steps:
                save_checkpoint(out, step, denoiser, optimizer, generator, losses, seconds, spec, scaler)
            if stop_after is not None and step - done >= stop_after and step < spec.steps:
                save_checkpoint(out, step, denoiser, optimizer, generator, losses, seconds, spec, scaler)
                return None
    except KeyboardInterrupt:
        if step > done:
            save_checkpoint(out, step, denoiser, optimizer, generator, losses,
                            seconds_before + time.perf_counter() - started, spec, scaler)
        raise
    finally:
        bar.close()
    denoiser.eval()
    seconds = seconds_before + time.perf_counter() - started
    return write_adapter(prepared, out, losses, seconds)
