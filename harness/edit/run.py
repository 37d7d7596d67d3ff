"""Run one edit file: validate → load the model → edit → write the output directory atomically.

Weight edits (diffquickfix, locoedit, uce, time) write a complete diffusers directory plus the delta
(`harness.edit.delta`); inference-time edits (neurons, text_patch) write ``edit.yaml``, the spec a job's
``edit:`` key and `install_edit` accept. Everything is written into a temporary sibling folder and
renamed into place at the end, so a failed edit leaves no partial output.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from harness.edit import delta as delta_io
from harness.edit.spec import EditSpec
from harness.errors import UserError


def editor(method: str):
    """The function that computes a weight edit (`EditResult`) or an inference-time spec (dict)."""
    from harness.edit import baselines, diffquickfix, locoedit, neurons, text_patch, time_edit, uce

    return {"diffquickfix": diffquickfix.run, "locoedit": locoedit.run, "uce": uce.run, "time": time_edit.run,
            "neurons": neurons.run, "text_patch": text_patch.run,
            **dict.fromkeys(baselines.BASELINES, baselines.run)}[method]


def check_out(out: Path, force: bool) -> None:
    if out.exists() and (not out.is_dir() or any(out.iterdir())) and not force:
        raise UserError(f"--out: '{out}' already exists and is not empty (use --force to replace it)")


def provenance(spec: EditSpec, adapter) -> dict:
    from harness.results import provenance as prov

    return {"edit_id": spec.edit_id(), "method": spec.method,
            "spec": spec.model_dump(mode="json", by_alias=True, exclude_none=True),
            "source_model": spec.model, "source_fingerprint": adapter.info.fingerprint,
            "arch": adapter.arch, "device": adapter.info.device, "dtype": adapter.info.dtype,
            "created_at": prov.now(), **prov.versions()}


def run_edit(spec: EditSpec, out: str | Path, force: bool = False, adapter=None) -> dict:
    """Carry out `spec` and write its output to `out`; returns the manifest. `adapter`: an already loaded
    `spec.model` to edit (its weights are restored before returning)."""
    from harness.models import load_model

    out = Path(out)
    check_out(out, force)
    adapter = adapter or load_model(spec.model, spec.device, spec.dtype)
    produced = editor(spec.method)(spec, adapter)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        manifest = provenance(spec, adapter)
        if spec.is_weight_edit:
            from harness.edit.weights import apply

            apply(adapter, produced.new)
            try:
                delta_io.write_model(adapter, spec.model, produced, tmp)
            finally:  # the loaded model is left as it was: the edit lives in the written directory
                apply(adapter, produced.old)
            manifest = delta_io.write_delta(produced, tmp / delta_io.EDIT_DIR, manifest)
        else:
            from harness.edit.install import write_spec

            manifest = write_spec(produced, tmp, manifest)
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return manifest
