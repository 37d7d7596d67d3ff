"""Revert a saved weight edit: the original model back from an edited directory and its delta, bit-exact."""

from __future__ import annotations

from pathlib import Path

from harness.edit.delta import EDIT_DIR, copy_and_patch, read_delta
from harness.edit.run import check_out


def revert_model(edited: str | Path, out: str | Path, force: bool = False) -> None:
    """Copy `edited` to `out` with every edited parameter set back to its stored original value (the
    files keep their dtype; the delta's old values are stored in that dtype)."""
    edited, out = Path(edited), Path(out)
    old, _, _ = read_delta(edited)
    check_out(out, force)
    copy_and_patch(edited, out, old)
    import shutil

    shutil.rmtree(out / EDIT_DIR, ignore_errors=True)
