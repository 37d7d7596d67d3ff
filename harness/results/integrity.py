"""Integrity of a run directory: a finished part is one whose footer reads and whose row count is the
one planned for its unit; anything else is re-run on resume and named, in one line, to every reader.

A part is written to a temporary name and renamed into place, so a crash of the sweep itself never leaves
half a file behind. But files are also copied between machines (`ray rsync-down`, a shared volume that
filled up, a copy interrupted by a preemption), and a truncated copy looks like a finished unit to a
resume that only checks whether the file exists. Two checks catch it without reading any data:

* the Parquet footer (schema, row groups, row count) is at the end of the file, so a truncated or empty
  file has none — `pyarrow.parquet.read_metadata` fails;
* the footer's row count must equal the unit's planned row count (prompts × seeds × variants, plus the
  reference rows of the first variant chunk), which the manifest records per unit as ``unit_rows``;
* every row's ``unit_id`` must be the unit the file is named for — a part copied over another unit's
  name with the same row count would otherwise count one unit twice and lose the other. The footer's
  column statistics (min and max of ``unit_id`` per row group) answer that without reading the rows.

A bad part is renamed to ``part-<unit>.parquet.corrupt`` (kept for inspection, no longer matched by the
``*.parquet`` globs the readers use) and its unit runs again.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pyarrow.parquet as pq

from harness.errors import UserError

RERUN_HINT = "run `loco sweep` again with the same job and --out to regenerate it"


class CorruptFileError(UserError):
    """A file of a run directory that cannot be read (truncated, empty, not what its name says)."""


@dataclass(frozen=True)
class PartCheck:
    """The verdict on one part file: `problem` is None for a good part."""

    unit_id: str
    path: Path
    rows: int | None
    problem: str | None


def footer_rows(path: Path) -> int:
    """The row count in `path`'s Parquet footer; `CorruptFileError` naming the file if it has none."""
    try:
        return pq.read_metadata(path).num_rows
    except (OSError, ValueError) as exc:  # pyarrow's ArrowInvalid is a ValueError; IO errors are OSError
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise CorruptFileError(f"{path}: not a readable Parquet file ({reason}); {RERUN_HINT}") from None


def check_part(unit_id: str, path: Path, expected_rows: int | None) -> PartCheck:
    """Footer readable and, when the plan says how many rows the unit has, that many rows."""
    try:
        rows = footer_rows(path)
    except CorruptFileError as exc:
        return PartCheck(unit_id, path, None, str(exc))
    if expected_rows is not None and rows != expected_rows:
        return PartCheck(unit_id, path, rows, f"{path}: {rows} rows, the manifest plans {expected_rows} for unit "
                                               f"{unit_id}")
    others = sorted(part_unit_ids(path) - {unit_id})
    if others:
        return PartCheck(unit_id, path, rows, f"{path}: holds rows of unit {others[0]}, not of unit {unit_id} "
                                               "(a part copied over another's name?)")
    return PartCheck(unit_id, path, rows, None)


def part_unit_ids(path: Path) -> set[str]:
    """The `unit_id`s in a part, from the footer's per-row-group min/max (the column itself when a row
    group has no statistics)."""
    meta = pq.read_metadata(path)
    names = [meta.schema.column(i).name for i in range(meta.num_columns)]
    if "unit_id" not in names:
        return set()
    column = names.index("unit_id")
    ids: set[str] = set()
    for group in range(meta.num_row_groups):
        stats = meta.row_group(group).column(column).statistics
        if stats is None or not stats.has_min_max:
            return set(pq.read_table(path, columns=["unit_id"]).column(0).to_pylist()) - {None}
        ids |= {stats.min, stats.max}
    return ids


def quarantine(path: Path) -> Path:
    """Move a bad part out of the readers' globs, keeping it for inspection."""
    target = path.with_name(path.name + ".corrupt")
    path.replace(target)
    return target


def read_json(path: Path) -> dict:
    """A run's JSON file (the manifest), or a one-line `CorruptFileError` naming it."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CorruptFileError(f"{path}: not valid JSON ({exc}); the run directory is damaged") from None


def find_corrupt_parts(paths: Iterable[Path]) -> list[str]:
    """The one-line problem of every unreadable file among `paths`."""
    problems = []
    for path in paths:
        try:
            footer_rows(path)
        except CorruptFileError as exc:
            problems.append(str(exc))
    return problems


_FILE_IN_MESSAGE = re.compile(r"""file ['"]([^'"]+)['"]""")


def explain_read_error(exc: Exception, parts: Iterable[Path] = ()) -> CorruptFileError | None:
    """A DuckDB (or pyarrow) read error turned into one line naming the bad file, or None when `exc` is not
    about a damaged file. DuckDB names the file in its message; otherwise every part is checked."""
    text = str(exc)
    named = _FILE_IN_MESSAGE.search(text)
    if named and Path(named.group(1)).exists():
        problems = find_corrupt_parts([Path(named.group(1))])
        if problems:
            return CorruptFileError(problems[0])
    if not any(word in text.lower() for word in ("magic bytes", "parquet", "corrupt", "truncated")):
        return None
    problems = find_corrupt_parts(parts)
    if not problems:
        return None
    more = f" (and {len(problems) - 1} more damaged part files)" if len(problems) > 1 else ""
    return CorruptFileError(problems[0] + more)


@contextmanager
def reading(run_dir: str | Path) -> Iterator[None]:
    """Wrap the queries a command runs over `run_dir`: a damaged part file ends the command with one line
    naming it instead of a DuckDB traceback. Costs nothing on the good path — files are checked only
    after a query failed."""
    import duckdb

    try:
        yield
    except (duckdb.Error, OSError, ValueError) as exc:
        if isinstance(exc, UserError):
            raise
        better = explain_read_error(exc, sorted(Path(run_dir).glob("results/**/*.parquet")))
        if better is None:
            raise
        raise better from None
