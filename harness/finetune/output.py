"""The adapter directory a fine-tune writes, and how a job loads one (`lora: DIR`).

    OUT/
      pytorch_lora_weights.safetensors   # diffusers' LoRA format: plain `pipe.load_lora_weights(OUT)` reads it
      manifest.json                      # loco-lora/1: base model and fingerprint, target modules, trainable
                                         # parameters and their share, spec, data hash, steps, seconds, loss curve
      loss.csv                           # step, loss

The manifest is written last, so a directory with one is complete. The adapter's id (`lora_id`: the spec's
name, or "lora", and a hash of the weights file) is what result rows record in their `lora_id` column.

A job's `lora: DIR` loads the adapter into the worker's pipeline and *fuses* it into the weights
(`fuse_lora`, then `unload_lora_weights`, which keeps the fused values): every Linear layer is then a
plain `torch.nn.Linear` again, so interventions and edits that compute a projection from its weight (K/V
injection, text patching, closed-form edits) see the adapted model, not the base one. The fused model's
images equal those of the unfused `load_lora_weights` pipeline to float rounding.
"""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

from harness.edit.delta import sha256
from harness.errors import UserError

WEIGHTS = "pytorch_lora_weights.safetensors"
MANIFEST = "manifest.json"
FORMAT = "loco-lora/1"


class LoraError(UserError):
    """An adapter directory that cannot be loaded as given; one line naming it."""


def save_lora(adapter, state: dict, folder: Path) -> None:
    """diffusers' own writer for the pipeline class (unet_lora_layers / transformer_lora_layers)."""
    from diffusers.utils import convert_state_dict_to_diffusers

    layers = convert_state_dict_to_diffusers(state)
    key = "transformer_lora_layers" if adapter.denoiser_name == "transformer" else "unet_lora_layers"
    type(adapter.pipe).save_lora_weights(str(folder), **{key: layers}, safe_serialization=True)


def write_adapter(prepared, out: Path, losses: list, seconds: float) -> dict:
    from harness.finetune.train import CHECKPOINTS, lora_state
    from harness.results import provenance

    spec, adapter, targets, data = prepared.spec, prepared.adapter, prepared.targets, prepared.data
    out.mkdir(parents=True, exist_ok=True)
    state = lora_state(adapter.denoiser)
    save_lora(adapter, state, out)
    trainable = sum(v.numel() for v in state.values())
    base = sum(p.numel() for n, p in adapter.denoiser.named_parameters() if "lora_" not in n)
    with (out / "loss.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["step", "loss"])
        writer.writerows(losses)
    digest = sha256(out / WEIGHTS)
    manifest = {
        "format": FORMAT, "lora_id": f"{spec.name or 'lora'}-{digest[:12]}", "name": spec.name,
        "base_model": spec.model, "base_fingerprint": adapter.info.fingerprint, "arch": adapter.arch,
        "pipeline_class": type(adapter.pipe).__name__, "denoiser": adapter.denoiser_name,
        "sites": [{"name": s.name, "label": s.label} for s in targets.sites], "target_modules": targets.modules,
        "rank": spec.rank, "alpha": spec.lora_alpha, "trainable_params": trainable, "denoiser_params": base,
        "trainable_share": trainable / base, "spec": spec.model_dump(mode="json", exclude_none=True),
        "spec_fingerprint": spec.fingerprint(),
        "data": {"kind": data.kind, "hash": data.digest, "images": len(data), "resolution": data.resolution},
        "steps": len(losses), "seconds": round(seconds, 2), "loss_curve": losses,
        "final_loss": sum(v for _, v in losses[-50:]) / max(1, len(losses[-50:])),
        "weights_sha256": digest, "device": prepared.device, "dtype": prepared.dtype,
        "created_at": provenance.now(), **provenance.versions(),
    }
    tmp = out / f".{MANIFEST}.tmp"
    tmp.write_text(json.dumps(manifest, indent=2))
    tmp.replace(out / MANIFEST)
    shutil.rmtree(out / CHECKPOINTS, ignore_errors=True)
    return manifest


def read_manifest(folder: str | Path) -> dict:
    """The manifest of an adapter directory; a plain diffusers LoRA directory (weights, no manifest) gets
    one that names only its weights' hash."""
    path = Path(folder).expanduser()
    if not path.is_dir():
        raise LoraError(f"lora: '{folder}' is not a directory (expected the --out of loco finetune)")
    if not (path / WEIGHTS).is_file():
        raise LoraError(f"lora: '{folder}' has no {WEIGHTS} (expected the --out of loco finetune, or a diffusers "
                        "LoRA directory)")
    if (path / MANIFEST).is_file():
        try:
            manifest = json.loads((path / MANIFEST).read_text())
        except json.JSONDecodeError:
            raise LoraError(f"lora: '{path / MANIFEST}' is not valid JSON") from None
        if manifest.get("format") == FORMAT:
            return manifest
    return {"lora_id": f"lora-{sha256(path / WEIGHTS)[:12]}", "base_fingerprint": None}


def check_lora(value: str | None) -> str | None:
    """A job's `lora:` value, checked when the job is validated (a ValueError naming what is wrong)."""
    if value is not None:
        try:
            read_manifest(value)
        except LoraError as exc:
            raise ValueError(str(exc).removeprefix("lora: ")) from None
    return value


def attach_lora(adapter, folder: str | Path) -> str:
    """Load the adapter in `folder` into `adapter`'s pipeline, fused (see the module docstring); returns its
    id. An adapter trained on another model is refused (its manifest names the base's fingerprint)."""
    manifest = read_manifest(folder)
    base = manifest.get("base_fingerprint")
    if base is not None and base != adapter.info.fingerprint:
        raise LoraError(f"lora: '{folder}' was trained on '{manifest.get('base_model')}' (fingerprint {base}), not "
                        f"on '{adapter.info.model_id}' ({adapter.info.fingerprint})")
    from diffusers.utils import logging as diffusers_logging

    pipe = adapter.pipe
    level = diffusers_logging.get_verbosity()
    diffusers_logging.set_verbosity_error()  # not "no LoRA keys for the text encoder": P3 adapts the denoiser only
    try:
        pipe.load_lora_weights(str(Path(folder).expanduser()), adapter_name="loco")
    finally:
        diffusers_logging.set_verbosity(level)
    pipe.fuse_lora(lora_scale=1.0)
    pipe.unload_lora_weights()
    return manifest["lora_id"]
