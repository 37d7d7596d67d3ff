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
readable, the planned row count, its own unit's rows: `harness/results/integrity.py`) and re-runs the
others. A run directory remembers the job fingerprint it was made for and refuses to mix in results of
another job, and one sweep at a time holds it (`harness/results/lock.py`). Files follow the umask (a
shared results volume stays readable to the group), and a full disk stops the sweep with one line naming
the directory and the space it needs (`DiskFull`), leaving no half-written file behind.
"""

from __future__ import annotations

import csv
import errno
import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import yaml

from harness.errors import Stopped, UserError
from harness.results.failures import FILENAME as FAILURES
from harness.results.failures import UnitFailure, read_failures, write_failures
from harness.results.integrity import check_part, quarantine, read_json
from harness.results.lock import RunLock, RunLocked
from harness.results.schema import column_type


class RunDirError(UserError):
    """A run directory that belongs to another job, or cannot be written."""


class DiskFull(Stopped):
    """The filesystem of the run directory is full (or the user's quota is spent)."""


def umask() -> int:
    """The process's umask, read without changing it (``/proc/self/status``; else set and restored)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


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


def _atomic_write(path: Path, write, needed: int = 0) -> None:
    """Write through `write(tmp)` to a temporary file beside `path`, then rename it into place, with the
    permissions the umask gives a new file (mkstemp's are 0600). A full disk raises `DiskFull` after the
    temporary file is removed, so the space it took is free again for the manifest that says `stopped`."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=path.parent)
    except OSError as exc:
        raise _disk_full(exc, path, needed) or exc from None
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o666 & ~umask())
        os.replace(tmp, path)
    except BaseException as exc:
        Path(tmp).unlink(missing_ok=True)
        full = _disk_full(exc, path, needed) if isinstance(exc, OSError) else None
        if full is not None:
            raise full from None
        raise


def _size(n: int) -> str:
    return f"{n / 2**20:.1f} MiB" if n >= 2**20 else f"{n / 2**10:.0f} KiB"


def _disk_full(exc: OSError, path: Path, needed: int) -> DiskFull | None:
    """A one-line `DiskFull` for an out-of-space error (pyarrow reports it as an OSError too), else None."""
    if exc.errno not in (errno.ENOSPC, errno.EDQUOT) and "No space left on device" not in str(exc):
        return None
    folder = next((p for p in (path.parent, *path.parents) if p.exists()), Path("/"))
    free = shutil.disk_usage(folder).free
    need = f"; writing it needs about {_size(needed)}" if needed else ""
    return DiskFull(f"no space left on device writing {path} ({_size(free)} free in {folder}{need}); "
                    "free some space and run the same command again: finished units are kept")


class RunStore:
    """Reads and writes one run directory."""

    def __init__(self, root: Path):
        self.root = Path(root).absolute()
        self.lock: RunLock | None = None
        self.created: str | None = None  # "dir": this sweep made the directory; "files": it was empty
        self.replace = False  # --force on another job's directory: cleared when the sweep starts writing

    @property
    def results_dir(self) -> Path:
        return self.root / "results"

    def open(self, job, fingerprint: str, layout: dict, force: bool = False) -> None:
        """Claim the directory for `job`: take its lock (creating it if needed), then check that it is new
        or holds this job; another job's directory is an error, and so is resuming with another unit
        layout (`layout`: how prompts and variants are split into units), whose unit ids would not match
        the finished ones and would write their rows twice. Nothing else is written yet: `start` does
        that once the model has loaded, so a job that fails early leaves the directory as it was."""
        self.created = "dir" if not self.root.exists() else None if any(self.root.iterdir()) else "files"
        try:
            self.lock = RunLock(self.root).acquire()
        except RunLocked:
            raise
        except BaseException:
            self.abandon()
            raise
        try:
            self._check(job, fingerprint, layout, force)
        except BaseException:
            self.abandon()
            raise
        self.job_text = yaml.safe_dump(job.model_dump(mode="json"), sort_keys=False)

    def _check(self, job, fingerprint: str, layout: dict, force: bool) -> None:
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
            self.replace = True

    def start(self) -> None:
        """The sweep is about to write its results: clear another job's files (`--force`) and write job.yaml."""
        if self.replace:
            self.clear()
            self.replace = False
        _atomic_write(self.root / "job.yaml", lambda tmp: Path(tmp).write_text(self.job_text, encoding="utf-8"))
        self.created = None

    def abandon(self) -> None:
        """The sweep ends before `start`: leave the directory as it was (removed if this sweep made it,
        emptied again if it was empty), and release the lock."""
        if self.lock is not None:
            self.lock.release(remove=True)
            self.lock = None
        if self.created == "dir":
            shutil.rmtree(self.root, ignore_errors=True)
        elif self.created == "files":
            for child in self.root.iterdir():
                shutil.rmtree(child) if child.is_dir() else child.unlink(missing_ok=True)

    def close(self) -> None:
        if self.lock is not None:
            self.lock.release()
            self.lock = None

    def clear(self) -> None:
        for name in ("results", "images"):
            shutil.rmtree(self.root / name, ignore_errors=True)
        for name in ("manifest.json", "job.yaml", "sites.csv", FAILURES):
            (self.root / name).unlink(missing_ok=True)

    def read_manifest(self) -> dict:
        path = self.root / "manifest.json"
        return read_json(path) if path.is_file() else {}

    def write_manifest(self, manifest: dict) -> None:
        """Write the manifest atomically. On a full disk, where even its temporary copy does not fit, it is
        rewritten in place — the old copy's blocks are freed first — so a sweep stopped by the full disk
        can still say `stopped` (a crash inside that rewrite is the one way to damage it)."""
        text = json.dumps(manifest, indent=2, sort_keys=True, default=str)
        path = self.root / "manifest.json"
        try:
            _atomic_write(path, lambda tmp: Path(tmp).write_text(text))
        except DiskFull:
            if not path.is_file():
                raise
            with open(path, "r+", encoding="utf-8") as handle:
                handle.truncate(0)
                handle.write(text)
                handle.flush()
                os.fsync(handle.fileno())

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
        _atomic_write(path, lambda tmp: pq.write_table(table, tmp), needed=table.nbytes)
        return path


def _save_png(image: np.ndarray, path: str) -> None:
    from PIL import Image

    Image.fromarray(image).save(path, format="PNG")
