"""`loco sql RUN_DIR... "SELECT ..."` and `loco sql RUN_DIR...` (interactive): read-only DuckDB over runs.

Read-only in two layers, so that neither alone has to be perfect:

* **statements**: only reading statements run (SELECT, WITH, FROM, DESCRIBE, SHOW, SUMMARIZE, and EXPLAIN
  of one of those — ``EXPLAIN ANALYZE`` *runs* what it explains, so ``EXPLAIN ANALYZE COPY ... TO`` is a
  write and is refused like COPY itself);
* **files**: the connection may open only the run directories' own files (`allowed_paths`: the Parquet
  parts, sites.csv, failures.parquet), never installs or loads an extension (a ``read_csv('https://…')``
  would otherwise fetch httpfs over the network), and its configuration is locked, so a query cannot
  switch any of this back on (`sandbox`).

A wrong table or column is one line with the close matches. Output: a table (default), CSV, JSON (a list
of records) or Parquet (needs --out; written here by pyarrow, outside the sandbox).
"""

from __future__ import annotations

import csv
import difflib
import io
import json
import re
import sys
from pathlib import Path

import duckdb

from analysis.runs import AnalysisError, open_runs
from analysis.views import COMPUTED, VIEWS, connect

FORMATS = ("table", "csv", "json", "parquet")
READING = {"SELECT"}


class SqlError(AnalysisError):
    """A query that cannot run; one line."""


EXPLAINED = re.compile(r"^\s*EXPLAIN\s+(ANALY[SZ]E\s+|\([^)]*\)\s*)?", re.IGNORECASE)


def check_read_only(con: duckdb.DuckDBPyConnection, query: str) -> None:
    try:
        statements = con.extract_statements(query)
    except duckdb.Error as exc:
        raise SqlError(f"sql: {one_line(exc)}") from None
    if not statements:
        raise SqlError("sql: the query is empty")
    for st in statements:
        kind = st.type.name
        if kind == "EXPLAIN":  # EXPLAIN ANALYZE runs the statement it explains: that one must read too
            inner = EXPLAINED.sub("", st.query, count=1)
            kinds = [s.type.name for s in con.extract_statements(inner)] if inner != st.query else [kind]
            kind = next((k for k in kinds if k != "SELECT"), "EXPLAIN")
            if kind == "EXPLAIN":
                continue
        if kind not in READING:
            raise SqlError(f"sql: read-only: only SELECT-like queries run here, got a {kind} statement")


def sandbox(con: duckdb.DuckDBPyConnection, runs) -> duckdb.DuckDBPyConnection:
    """Let `con` open only the runs' own files, with no extension installed or loaded, and lock that."""
    files = [str(p) for r in runs for p in (*r.parts, r.sites_csv, *r.failure_files()) if p.is_file()]
    allowed = ", ".join("'" + f.replace("'", "''") + "'" for f in files)
    for setting in (f"allowed_paths = [{allowed}]", "enable_external_access = false",
                    "autoinstall_known_extensions = false", "autoload_known_extensions = false",
                    "lock_configuration = true"):
        con.execute(f"SET {setting}")
    return con


def one_line(exc: Exception) -> str:
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip() and not ln.strip().startswith("LINE")]
    return lines[0] if lines else type(exc).__name__


def explain_error(con: duckdb.DuckDBPyConnection, exc: duckdb.Error) -> str:
    """One line for a failed query, with the close matches for an unknown table or column."""
    text = str(exc)
    column = re.search(r'Referenced column "([^"]+)" not found', text)
    if column:
        names = {r[0] for v in VIEWS for r in con.execute(f"DESCRIBE {v}").fetchall()}
        close = difflib.get_close_matches(column.group(1), sorted(names), n=3)
        hint = f"; close matches: {', '.join(close)}" if close else ""
        return f"sql: no column '{column.group(1)}'{hint}"
    table = re.search(r'Table with name ([^\s]+) does not exist', text)
    if table:
        name = table.group(1).strip('"')
        close = difflib.get_close_matches(name, VIEWS, n=3)
        hint = f"; close matches: {', '.join(close)}" if close else f"; views: {', '.join(VIEWS)}"
        return f"sql: no table '{name}'{hint}"
    return f"sql: {one_line(exc)}"


def needs_computed(query: str) -> bool:
    return any(re.search(rf"\b{v}\b", query, re.IGNORECASE) for v in COMPUTED)


def execute(con: duckdb.DuckDBPyConnection, query: str) -> duckdb.DuckDBPyRelation | None:
    check_read_only(con, query)
    try:
        return con.sql(query)
    except duckdb.Error as exc:
        raise SqlError(explain_error(con, exc)) from None


def render(rel: duckdb.DuckDBPyRelation, fmt: str, out: str | None = None) -> str:
    """The relation as text in `fmt` (written to `out` when given; Parquet only to a file)."""
    if fmt not in FORMATS:
        raise SqlError(f"--format: expected one of {', '.join(FORMATS)}, got '{fmt}'")
    if fmt == "parquet":
        if not out:
            raise SqlError("--format parquet: needs --out FILE (Parquet is binary)")
        import pyarrow.parquet as pq

        pq.write_table(rel.fetch_arrow_table(), str(out))  # by pyarrow: the connection may not write files
        return ""
    names, rows = rel.columns, rel.fetchall()
    if fmt == "table":
        text = str(rel)
    elif fmt == "csv":
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(names)
        writer.writerows(rows)
        text = buf.getvalue()
    else:
        text = json.dumps([dict(zip(names, r)) for r in rows], indent=2, default=str) + "\n"
    if out:
        Path(out).write_text(text, encoding="utf-8")
        return ""
    return text


def run_query(paths, query: str, fmt: str = "table", out: str | None = None) -> str:
    runs = open_runs(paths)
    if fmt not in FORMATS:
        raise SqlError(f"--format: expected one of {', '.join(FORMATS)}, got '{fmt}'")
    con = sandbox(connect(runs, computed=needs_computed(query)), runs)
    rel = execute(con, query)
    return "" if rel is None else render(rel, fmt, out)


SHELL_HELP = """views: results, sites, effects, rankings, candidates, agreement_sites, agreement, failures
end a query with ';'.  .tables  .schema VIEW  .mode table|csv|json  .quit"""


def shell(paths, stdin=None, stdout=None) -> int:
    """A small read-only prompt over the views (the plain `duckdb` CLI works too; see README)."""
    stdin, stdout = stdin or sys.stdin, stdout or sys.stdout
    runs = open_runs(paths)
    con = sandbox(connect(runs), runs)
    mode, buffer = "table", []
    interactive = stdin.isatty()
    print(f"loco sql over {', '.join(r.name for r in runs)}\n{SHELL_HELP}", file=stdout)
    while True:
        if interactive:
            stdout.write("loco> " if not buffer else "  ..> ")
            stdout.flush()
        line = stdin.readline()
        if not line:
            return 0
        line = line.strip()
        if not buffer and line.startswith("."):
            cmd, _, arg = line.partition(" ")
            if cmd in (".quit", ".exit"):
                return 0
            if cmd == ".tables":
                print("  ".join(VIEWS), file=stdout)
            elif cmd == ".schema":
                query = f"DESCRIBE {arg.strip() or 'results'}"
                _print_result(con, query, "table", stdout)
            elif cmd == ".mode" and arg.strip() in ("table", "csv", "json"):
                mode = arg.strip()
            else:
                print(SHELL_HELP, file=stdout)
            continue
        buffer.append(line)
        if line.endswith(";"):
            _print_result(con, "\n".join(buffer), mode, stdout)
            buffer = []


def _print_result(con, query: str, mode: str, stdout) -> None:
    try:
        rel = execute(con, query)
        if rel is not None:
            print(render(rel, mode), file=stdout)
    except AnalysisError as exc:
        print(f"error: {exc}", file=stdout)
