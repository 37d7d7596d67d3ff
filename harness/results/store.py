"""Storage: a run directory that never loses finished work.

Layout (``RUN_DIR``)::

    job.yaml            the validated job, as it ran
    manifest.json       run metadata: job fingerprint, model, library versions, unit counts, timings
    sites.csv           the model's site table (kind, forward index, name, module type, params)
    results/method=<m>/part-<unit>.parquet   one file per finished work unit (Hive-partitioned)
    images/<unit>/<row>.png                  when the job sets save_images
    failures.parquet    units that failed for a reason of their own (harness/results/failures.py)

Each unit's file is written to a temporary name and renamed into place, so a file that exists is
complete; a sweep that is interrupted and started again skips the units whose files are whole (footer
readable, the planned row count: `harness/results/integrity.py`) and re-runs the others. A run
directory remembers the job fingerprint it was made for and refuses to mix in results of another job.
"""

from __future__ import annotations

import csv
import json
import os
import tempfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import yaml

from harness.errors import UserError
from harness.results.failures import FILENAME as FAILURES
from harness.results.failures import UnitFailure, read_failures, write_failures
from harness.results.integrity import check_part, quarantine, read_json
from harness.results.schema import column_type


class RunDirError(UserError):
    """A run directory that belongs to another job, or cannot be written."""


def _infer_type(values: list) -> pa.DataType:
    """A metric column's type. A column with no values in this part (e.g. OCR metrics of a prompt with no
    text to render) is float64, as metric columns are: typed as text it would turn the column into text in
    every part DuckDB unions it with."""
    sample = next((v for v in values if v is not None), None)
    if sample is None:
        return pa.float64()
    if isinstance(sample, bool):
        return pa.bool_()
    if isinstance(sample, (int, float, np.floating, np.integer)):
        return pa.float64()
    if isinstance(sample, (list, tuple)):
        return pa.list_(pa.string())
    return pa.string()


def to_table(rows: list[dict]) -> pa.Table:
    """Rows → Arrow table: schema columns get their types from `harness.results.schema`, metric columns
    float64 (or string)."""
    names = list(dict.fromkeys(k for row in rows for k in row))
    arrays, fields = [], []
    for name in names:
        values = [row.get(name) for row in rows]
        dtype = column_type(name) or _infer_type(values)
        if dtype == pa.float64():
            values = [None if v is None else float(v) for v in values]
        arrays.append(pa.array(values, type=dtype))
        fields.append(pa.field(name, dtype))
    return pa.Table.from_arrays(arrays, schema=pa.schema(fields))


def _atomic_write(path: Path, write) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class RunStore:
    """Reads and writes one run directory."""

    def __init__(self, root: Path):
        self.root = Path(root)

    @property
    def results_dir(self) -> Path:
        return self.root / "results"

    def open(self, job, fingerprint: str, layout: dict, force: bool = False) -> None:
        """Create the directory for `job`, or reopen it to resume; another job's directory is an error,
        and so is resuming with another unit layout (`layout`: how prompts and variants are split into
        units), whose unit ids would not match the finished ones and would write their rows twice."""
        manifest = self.read_manifest()
        problem = None
        if manifest and manifest.get("job_fingerprint") != fingerprint:
            problem = (f"run directory '{self.root}' holds results of a different job "
                       f"({manifest.get('job_name')}, fingerprint {manifest.get('job_fingerprint')}); "
                       "choose another --out or pass --force to replace them")
        elif manifest and manifest.get("unit_layout", layout) != layout and self.completed_units():
            old = ", ".join(f"executor.{k}={v}" for k, v in manifest["unit_layout"].items())
            problem = (f"run directory '{self.root}' was split into units with {old}; resume with the same "
                       "values or pass --force to start again")
        if problem:
            if not force:
                raise RunDirError(problem)
            self.clear()
        self.root.mkdir(parents=True, exist_ok=True)
        text = yaml.safe_dump(job.model_dump(mode="json"), sort_keys=False)
        _atomic_write(self.root / "job.yaml", lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))

    def clear(self) -> None:
        import shutil

        for name in ("results", "images"):
            shutil.rmtree(self.root / name, ignore_errors=True)
        for name in ("manifest.json", "job.yaml", "sites.csv", FAILURES):
            (self.root / name).unlink(missing_ok=True)

    def read_manifest(self) -> dict:
        path = self.root / "manifest.json"
        return read_json(path) if path.is_file() else {}

    def write_manifest(self, manifest: dict) -> None:
        text = json.dumps(manifest, indent=2, sort_keys=True, default=str)
        _atomic_write(self.root / "manifest.json", lambda tmp: Path(tmp).write_text(text))

    def write_sites(self, records: list[dict]) -> None:
        def write(tmp):
            with open(tmp, "w", newline="") as handle:
                writer = csv.DictWriter(handle, fieldnames=list(records[0]))
                writer.writeheader()
                writer.writerows(records)

        _atomic_write(self.root / "sites.csv", write)

    def unit_path(self, method: str, unit_id: str) -> Path:
        return self.results_dir / f"method={method}" / f"part-{unit_id}.parquet"

    def completed_units(self) -> set[str]:
        return {p.stem.removeprefix("part-") for p in self.results_dir.glob("method=*/part-*.parquet")}

    def verify_units(self, planned_rows: dict[str, int]) -> tuple[set[str], list[str]]:
        """The units whose part file is whole (footer readable, the planned row count), and the problem of
        each bad part, which is moved aside so that its unit runs again (see `harness.results.integrity`).
        A part of a unit outside the plan is left alone: `open` already refused a run split differently."""
        good, problems = set(), []
        for path in sorted(self.results_dir.glob("method=*/part-*.parquet")):
            unit_id = path.stem.removeprefix("part-")
            if unit_id not in planned_rows:
                continue
            check = check_part(unit_id, path, planned_rows[unit_id])
            if check.problem is None:
                good.add(unit_id)
            else:
                quarantine(path)
                problems.append(check.problem)
        return good, problems

    def read_failures(self) -> list[UnitFailure]:
        return read_failures(self.root)

    def write_failures(self, failures: list[UnitFailure]) -> Path:
        return write_failures(self.root, failures, write=_atomic_write)

    def write_unit(self, method: str, unit_id: str, rows: list[dict],
                   images: dict[str, np.ndarray] | None = None) -> Path:
        """Write one unit's images, then its rows (the rows file is the unit's completion marker)."""
        for row_id, image in (images or {}).items():
            path = self.root / "images" / unit_id / f"{row_id}.png"
            _atomic_write(path, lambda tmp, image=image: _save_png(image, tmp))
        table = to_table(rows)
        path = self.unit_path(method, unit_id)
        _atomic_write(path, lambda tmp: pq.write_table(table, tmp))
        return path


def _save_png(image: np.ndarray, path: str) -> None:
    from PIL import Image

    Image.fromarray(image).save(path, format="PNG")
