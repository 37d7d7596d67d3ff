"""`loco sql RUN_DIR... ["SELECT ..."]`: read-only DuckDB over runs (see `analysis.views`, `analysis.query`)."""

from __future__ import annotations

HELP = "read-only SQL (DuckDB) over runs: results, sites, effects, rankings, candidates, failures"
DESCRIPTION = ("Query one or many run directories with DuckDB. Views: results, sites, effects, rankings, "
               "candidates, failures. The last argument is the query when it looks like SQL; without one, an "
               "interactive prompt.")
SQL_START = ("SELECT", "WITH", "DESCRIBE", "SHOW", "FROM", "SUMMARIZE", "EXPLAIN", "PRAGMA", "CREATE", "DROP",
             "INSERT", "UPDATE", "DELETE", "COPY", "ATTACH")


def add_arguments(p) -> None:
    p.add_argument("args", nargs="+", metavar="RUN_DIR... [QUERY]", help="run directories, then a query")
    p.add_argument("--format", default="table", help="table (default), csv, json or parquet")
    p.add_argument("--out", help="write the result to this file (required for parquet)")


def split(words: list[str]) -> tuple[list[str], str | None]:
    """Run directories and the query: a last argument with a space or an SQL keyword first is the query."""
    last = words[-1].strip()
    if len(words) > 1 and (" " in last or last.upper().startswith(SQL_START)):
        return words[:-1], words[-1]
    return words, None


def run(args) -> int:
    from analysis.query import run_query, shell

    run_dirs, query = split(args.args)
    if query is None:
        return shell(run_dirs)
    text = run_query(run_dirs, query, args.format, args.out)
    if text:
        print(text, end="" if text.endswith("\n") else "\n")
    return 0
