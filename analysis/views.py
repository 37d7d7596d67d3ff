"""DuckDB views over one or many run directories: `results`, `sites`, `effects`, `rankings`,
`candidates`, `agreement` (over `agreement_sites`), `failures`.

| view | one row per | from |
|---|---|---|
| `results` | generated image (every column a sweep writes, plus `run`: the run directory's name) | `results/**/*.parquet` |
| `sites` | site of the run's model (kind, index, name, module type, params) | `sites.csv` |
| `effects` | (variant row, metric): value, paired reference value, effect = value − reference | `results` (SQL) |
| `rankings` | (run, attribute, concept, variant): paper rule, cluster-bootstrap CI, P(top) | `analysis.effects` |
| `candidates` | (run, attribute, concept): the candidate layer set and its evidence | `analysis.candidates` |
| `agreement_sites` | (two runs, attribute, concept, common site): each run's strength, common prompts | `analysis.agreement` |
| `agreement` | (two runs, attribute, concept): Kendall τ over the common sites, top-k overlap | `sql/agreement_view.sql` |
| `failures` | failed unit (columns: `harness.results.failures.SCHEMA`) from `failures.parquet`; else empty | the run |

Every view exists even when a run has no rows (an empty run, or a run whose units all failed), with the
columns it would have, so a query written for a full run still binds. Columns are typed by the
harness's row schema (`harness.results.schema.COLUMNS`).
"""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import pyarrow as pa

from analysis.agreement import create_views
from analysis.intervals import N_BOOT
from analysis.runs import Run
from harness.results.schema import COLUMNS

SQL_DIR = Path(__file__).with_name("sql")
VIEWS = ("results", "sites", "effects", "rankings", "candidates", "agreement_sites", "agreement", "failures")
VIEW_COLUMNS = ("run",)  # what the views add to the row schema: the run directory's name
COMPUTED = ("rankings", "candidates", "agreement_sites", "agreement")
SITES_COLUMNS = {"kind": "VARCHAR", "index": "BIGINT", "name": "VARCHAR", "module_type": "VARCHAR",
                 "params": "BIGINT", "label": "VARCHAR"}
EFFECTS_COLUMNS = {"method": "VARCHAR", "attribute": "VARCHAR", "concept": "VARCHAR", "variant": "VARCHAR",
                   "site": "VARCHAR", "kind": "VARCHAR", "site_index": "BIGINT", "window_start": "BIGINT",
                   "window_size": "BIGINT", "step_start": "BIGINT", "position": "VARCHAR", "prompt_id": "VARCHAR",
                   "seed": "BIGINT", "noise_draw": "BIGINT", "metric": "VARCHAR", "value": "DOUBLE", "reference": "DOUBLE",
                   "reference_role": "VARCHAR", "effect": "DOUBLE"}


def duck_type(dtype: pa.DataType) -> str:
    if pa.types.is_list(dtype):
        return duck_type(dtype.value_type) + "[]"
    return {pa.string(): "VARCHAR", pa.int64(): "BIGINT", pa.float64(): "DOUBLE", pa.bool_(): "BOOLEAN"}[dtype]


def literal(text: str) -> str:
    return "'" + str(text).replace("'", "''") + "'"


def quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def empty_select(columns: dict[str, str]) -> str:
    """A typed relation with no rows: the view's columns when no run has data for it."""
    cols = ", ".join(f"CAST(NULL AS {t}) AS {quote(c)}" for c, t in {"run": "VARCHAR", **columns}.items())
    return f"SELECT {cols} WHERE false"


def _union(selects: list[str]) -> str:
    return "\nUNION ALL BY NAME\n".join(selects)


def results_sql(runs: list[Run]) -> str:
    base = empty_select({c: duck_type(t) for c, t in COLUMNS.items()})
    parts = [f"SELECT {literal(r.name)} AS run, * FROM read_parquet([{', '.join(literal(p) for p in r.parts)}], "
             "hive_partitioning = true, union_by_name = true)" for r in runs if r.has_results]
    return _union([base, *parts])


def sites_sql(runs: list[Run]) -> str:
    parts = [f"SELECT {literal(r.name)} AS run, * FROM read_csv({literal(r.sites_csv)}, header = true)"
             for r in runs if r.sites_csv.is_file()]
    return _union([empty_select(SITES_COLUMNS), *parts])


def failures_sql(runs: list[Run]) -> str:
    """One row per failed unit, with the columns of `harness.results.failures.SCHEMA` (its one owner)."""
    from harness.results.failures import SCHEMA as FAILURES_SCHEMA

    parts = [f"SELECT {literal(r.name)} AS run, * FROM read_parquet([{', '.join(literal(p) for p in r.failure_files())}], "
             "union_by_name = true)" for r in runs if r.failure_files()]
    return _union([empty_select({f.name: duck_type(f.type) for f in FAILURES_SCHEMA}), *parts])


def metric_columns(con: duckdb.DuckDBPyConnection) -> list[str]:
    from harness.metrics import direction

    described = con.execute("DESCRIBE results").fetchall()
    return [name for name, dtype, *_ in described if direction(name) != 0 and dtype in ("DOUBLE", "FLOAT", "BIGINT")]


def _arrow(records: list[dict], empty: dict[str, str]) -> pa.Table | None:
    if not records:
        return None
    rows = [{k: (json.dumps(v) if isinstance(v, dict) else v) for k, v in r.items()} for r in records]
    return pa.Table.from_pylist(rows)


def computed_records(runs: list[Run], n_boot: int) -> tuple[list[dict], list[dict], list[dict]]:
    """Rankings, candidate sets and agreement sites (`analysis.agreement`) of every run with results, as flat
    records."""
    from analysis.agreement import agreement_sites
    from analysis.candidates import group_to_set
    from analysis.effects import rank_run

    rankings, candidates, every = [], [], []
    for run in runs:
        if not run.has_results:
            continue
        groups = rank_run(run, n_boot=n_boot)
        every += groups
        for g in groups:
            rankings += g.records()
            s = group_to_set(g).model_dump(mode="json")
            candidates.append({"run": run.name, **{k: v for k, v in s.items() if k not in ("evidence", "threshold")},
                               "threshold": None if s["threshold"] is None else s["threshold"]["value"],
                               "evidence": json.dumps(s["evidence"])})
    return rankings, candidates, agreement_sites(every, [r for r in runs if r.has_results])


RANKINGS_COLUMNS = {"method": "VARCHAR", "attribute": "VARCHAR", "concept": "VARCHAR", "metric": "VARCHAR",
                    "aggregate": "VARCHAR", "reference_role": "VARCHAR", "best": "VARCHAR", "rule": "VARCHAR",
                    "separated": "BOOLEAN", "status": "VARCHAR", "rank": "BIGINT", "variant": "VARCHAR", "site": "VARCHAR",
                    "sites": "VARCHAR[]", "kind": "VARCHAR", "index": "BIGINT", "indices": "BIGINT[]",
                    "window_start": "BIGINT", "window_size": "BIGINT", "step_start": "BIGINT", "position": "VARCHAR",
                    "value": "DOUBLE", "reference": "DOUBLE", "effect": "DOUBLE", "ci_low": "DOUBLE",
                    "ci_high": "DOUBLE", "p_top": "DOUBLE", "n_prompts": "BIGINT", "n_rows": "BIGINT",
                    "selected": "BOOLEAN", "distinct": "BOOLEAN"}
CANDIDATES_COLUMNS = {"attribute": "VARCHAR", "concept": "VARCHAR", "method": "VARCHAR", "rule": "VARCHAR",
                      "metric": "VARCHAR", "kind": "VARCHAR", "sites": "VARCHAR[]", "indices": "BIGINT[]",
                      "separated": "BOOLEAN", "status": "VARCHAR", "n_prompts": "BIGINT", "warning": "VARCHAR",
                      "threshold": "DOUBLE", "corruption": "VARCHAR", "evidence": "VARCHAR"}


def connect(runs: list[Run], computed: bool = True, n_boot: int = N_BOOT) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB connection with the views defined over `runs` (the files are only read).
    `computed=False` leaves `rankings`, `candidates` and the agreement views empty (they run the bootstrap)."""
    con = duckdb.connect()
    con.execute(f"CREATE VIEW results AS {results_sql(runs)}")
    con.execute(f"CREATE VIEW sites AS {sites_sql(runs)}")
    con.execute(f"CREATE VIEW failures AS {failures_sql(runs)}")
    metrics = metric_columns(con)
    if metrics:
        cols = ", ".join(quote(m) for m in metrics)
        con.execute((SQL_DIR / "effects_view.sql").read_text().replace("{metric_columns}", cols))
    else:
        con.execute(f"CREATE VIEW effects AS {empty_select(EFFECTS_COLUMNS)}")
    rankings, candidates, agreement = computed_records(runs, n_boot) if computed else ([], [], [])
    create_views(con, agreement)
    for name, records, columns in (("rankings", rankings, RANKINGS_COLUMNS), ("candidates", candidates, CANDIDATES_COLUMNS)):
        table = _arrow(records, columns)
        if table is None:
            con.execute(f"CREATE VIEW {name} AS {empty_select(columns)}")
        else:
            con.register(f"{name}_data", table)
            con.execute(f"CREATE VIEW {name} AS SELECT * FROM {name}_data")
    return con
