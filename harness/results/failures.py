"""The failures table: units that failed for a reason of their own, kept beside the results.

A unit can fail every time it runs — fp16 overflow turning an image into NaN, a prompt longer than the
text encoder takes — while the rest of the sweep is fine. Such a unit is retried ``executor.max_retries``
times, then recorded here and the sweep goes on; the summary and the exit status say how many failed.
A failed unit has no part file, so running the same command again retries exactly those units (and
removes each from this table once it succeeds).

``RUN_DIR/failures.parquet`` has one row per failed unit. Its first three columns are a contract with
the analysis views (`failures` in `loco sql`): ``unit_id, error, attempts``; the others follow them.
The file is rewritten whole on each change (it is small) and always exists after a sweep, empty when
nothing failed, so a query over it never has to ask whether it is there.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

FILENAME = "failures.parquet"


@dataclass(frozen=True)
class UnitFailure:
    unit_id: str
    error: str  # one line: "ExceptionType: message"
    attempts: int  # runs of the unit, the failing ones all counted
    error_type: str = ""  # the exception class, or "worker_died" when its actor died every time
    worker: str = ""  # the worker of the last attempt
    failed_at: str = ""  # ISO time of the last attempt
    traceback: str = ""  # the last attempt's remote traceback, for the curious


SCHEMA = pa.schema([
    pa.field("unit_id", pa.string()), pa.field("error", pa.string()), pa.field("attempts", pa.int64()),
    pa.field("error_type", pa.string()), pa.field("worker", pa.string()), pa.field("failed_at", pa.string()),
    pa.field("traceback", pa.string()),
])
assert [f.name for f in SCHEMA] == [f.name for f in fields(UnitFailure)]


def write_failures(root: Path, failures: list[UnitFailure], write=None) -> Path:
    """Write `failures` (one row per unit, sorted by unit id) to ``root/failures.parquet``.
    `write(path, fn)` writes atomically (the run store's writer); plain write when omitted."""
    rows = [asdict(f) for f in sorted(failures, key=lambda f: f.unit_id)]
    table = pa.Table.from_pylist(rows, schema=SCHEMA)
    path = Path(root) / FILENAME
    if write is None:
        pq.write_table(table, path)
    else:
        write(path, lambda tmp: pq.write_table(table, tmp))
    return path


def read_failures(root: Path) -> list[UnitFailure]:
    """The failures table of a run, [] when it has none. A damaged file is a one-line error."""
    from harness.results.integrity import RERUN_HINT, CorruptFileError

    path = Path(root) / FILENAME
    if not path.is_file():
        return []
    try:
        table = pq.read_table(path)
    except (OSError, ValueError) as exc:
        raise CorruptFileError(f"{path}: not a readable Parquet file ({str(exc).splitlines()[0]}); "
                               f"delete it and {RERUN_HINT.removeprefix('run ')}") from None
    names = {f.name for f in fields(UnitFailure)}
    return [UnitFailure(**{k: v for k, v in row.items() if k in names}) for row in table.to_pylist()]


def one_line(exc: BaseException) -> str:
    """`Type: first line of the message`, the form the table and the summary show."""
    message = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__
