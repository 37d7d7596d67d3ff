"""Saving a weight edit: a complete diffusers directory, plus a small delta that reverts and composes.

``loco edit EDIT.yaml --out DIR`` writes::

    DIR/                         a diffusers pipeline directory: plain `diffusers` loads it, `model: DIR`
      model_index.json ...       in any job accepts it; only the edited parameters differ from the source
      loco_edit/delta.safetensors   for every edited parameter: ``old.<name>`` and ``new.<name>``
      loco_edit/manifest.json       edit id, the spec, source model and fingerprint, the delta's sha256,
                                    per-parameter solver residuals, edit and solve seconds

From a local (or cached) diffusers directory the source is copied file by file and only the safetensors
files holding edited parameters are rewritten, in their own dtype — nothing else changes, not even the
storage dtype. A built-in model (``tiny:``/``random:``) has no files, so it is written with
`save_pretrained`.

The delta stores old and new values rather than their difference, so reverting is bit-exact (W − ΔW
would round) and composing can check that a delta is applied to the weights it was computed on.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from harness.edit.weights import EditResult, apply, parameter
from harness.errors import UserError

EDIT_DIR = "loco_edit"
DELTA_FILE = "delta.safetensors"
MANIFEST_FILE = "manifest.json"


class DeltaError(UserError):
    """A delta that does not fit the model it is applied to, or a directory without one."""


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_delta(result: EditResult, folder: Path, manifest: dict) -> dict:
    """Write the delta and its manifest into `folder`; returns the manifest as written."""
    folder.mkdir(parents=True, exist_ok=True)
    tensors = {f"old.{n}": t.contiguous().cpu() for n, t in result.old.items()}
    tensors |= {f"new.{n}": t.contiguous().cpu() for n, t in result.new.items()}
    save_file(tensors, str(folder / DELTA_FILE), metadata={"format": "loco-edit-delta/1"})
    manifest = dict(manifest, delta_sha256=sha256(folder / DELTA_FILE), parameters=sorted(result.new),
                    residuals=result.solves, edit_seconds=result.edit_seconds, solve_seconds=result.solve_seconds,
                    extract_seconds=result.extract_seconds,
                    edited_params=int(sum(t.numel() for t in result.new.values())))
    if result.prior is not None:  # MEMIT's covariance prior: its rank and any ridge it needed
        manifest["prior"] = result.prior
    (folder / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2, default=str))
    return manifest


def read_delta(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor], dict]:
    """(old, new, manifest) from an edited model directory or its ``loco_edit`` folder."""
    folder = Path(path)
    if (folder / EDIT_DIR).is_dir():
        folder = folder / EDIT_DIR
    if not (folder / DELTA_FILE).is_file():
        raise DeltaError(f"'{path}' holds no edit delta ({EDIT_DIR}/{DELTA_FILE}); was it written by loco edit?")
    manifest = json.loads((folder / MANIFEST_FILE).read_text()) if (folder / MANIFEST_FILE).is_file() else {}
    if manifest.get("delta_sha256") and manifest["delta_sha256"] != sha256(folder / DELTA_FILE):
        raise DeltaError(f"{folder / DELTA_FILE}: sha256 differs from its manifest (file changed or corrupt)")
    tensors = load_file(str(folder / DELTA_FILE))
    old = {k[4:]: v for k, v in tensors.items() if k.startswith("old.")}
    new = {k[4:]: v for k, v in tensors.items() if k.startswith("new.")}
    return old, new, manifest


@torch.no_grad()
def apply_delta(adapter, path: str | Path, revert: bool = False, compose: bool = False) -> dict:
    """Apply a saved edit to a loaded pipeline (`revert`: put the old values back).

    Strict by default: the parameters must hold exactly the delta's "before" values, so an edit is never
    applied on top of weights it was not computed for. `compose` instead adds new − old (in float64) to
    whatever the weights hold, to stack edits computed independently on the same base model.
    """
    old, new, manifest = read_delta(path)
    before, after = (new, old) if revert else (old, new)
    for name in after:
        try:
            param = parameter(adapter, name)
        except (KeyError, AttributeError):
            raise DeltaError(f"{path}: parameter '{name}' does not exist in this model") from None
        if param.shape != after[name].shape:
            raise DeltaError(f"{path}: '{name}' has shape {tuple(param.shape)} here, {tuple(after[name].shape)} "
                             "in the delta (another model?)")
        if not compose and not torch.equal(param.detach().cpu().to(before[name].dtype), before[name]):
            state = "edited" if revert else "original"
            raise DeltaError(f"{path}: '{name}' does not hold the {state} values this delta expects "
                             "(use compose to add it on top of other edits)")
    if compose:
        sign = -1.0 if revert else 1.0
        for name in after:
            param = parameter(adapter, name)
            step = (new[name].to(torch.float64) - old[name].to(torch.float64)) * sign
            param.copy_((param.detach().to(torch.float64).cpu() + step).to(param.device, param.dtype))
    else:
        apply(adapter, after)
    return manifest


def _component_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.glob("*.safetensors"))


def copy_and_patch(source: Path, out: Path, tensors: dict[str, torch.Tensor]) -> dict[str, torch.dtype]:
    """Copy the diffusers directory `source` to `out`, rewriting only the safetensors files that hold the
    edited parameters (name → new value; names start with the component folder). Returns each edited
    parameter's storage dtype."""
    shutil.copytree(source, out, symlinks=False, dirs_exist_ok=True,
                    ignore=shutil.ignore_patterns(EDIT_DIR))
    by_component: dict[str, dict[str, torch.Tensor]] = {}
    dtypes: dict[str, torch.dtype] = {}
    for name, value in tensors.items():
        component, _, path = name.partition(".")
        by_component.setdefault(component, {})[path] = value
    for component, values in by_component.items():
        files = _component_files(out / component)
        if not files:
            raise DeltaError(f"model '{source}': component '{component}' has no safetensors weights to patch")
        found = set()
        for file in files:
            stored = load_file(str(file))
            changed = False
            for path, value in values.items():
                match = [k for k in stored if k == path or k.endswith("." + path)]
                if len(match) == 1:
                    stored[match[0]] = value.to(stored[match[0]].dtype).contiguous()
                    found.add(path)
                    dtypes[f"{component}.{path}"] = stored[match[0]].dtype
                    changed = True
            if changed:
                from safetensors import safe_open

                with safe_open(str(file), "pt") as handle:
                    metadata = handle.metadata()
                file.unlink()  # the copy may be a hard link to a cache blob: never write through it
                save_file(stored, str(file), metadata=metadata)
        missing = sorted(set(values) - found)
        if missing:
            raise DeltaError(f"model '{source}': parameter '{component}.{missing[0]}' not found in its "
                             "safetensors files")
    return dtypes


def write_model(adapter, spec_model: str, result: EditResult, out: Path) -> None:
    """The complete edited pipeline at `out` (the edit already applied to `adapter`). The delta's tensors
    are cast to the dtype the files store, so the delta describes the written model exactly."""
    from harness.models import locate

    if spec_model.startswith(("tiny:", "random:")):
        adapter.pipe.save_pretrained(str(out), safe_serialization=True)
        return
    dtypes = copy_and_patch(locate(spec_model), out, result.new)
    for name, dtype in dtypes.items():
        result.old[name], result.new[name] = result.old[name].to(dtype), result.new[name].to(dtype)
