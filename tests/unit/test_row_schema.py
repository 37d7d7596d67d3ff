"""The result row has one owner (`harness.results.schema`): the worker builds rows with exactly its
columns, the writer gives them exactly its types, and the analysis SQL names only its columns."""

import re
from pathlib import Path

import pyarrow as pa
import pytest

from analysis import rank as rank_module
from analysis.views import VIEW_COLUMNS, VIEWS
from harness.jobs import load_job
from harness.results.schema import COLUMNS, DESIGN, PARTS, build_row
from harness.results.store import to_table
from harness.run.plan import plan_units
from harness.run.worker import Worker

SQL_DIR = Path(rank_module.__file__).with_name("sql")
PROMPT = {"prompt": "a house in the style of van gogh", "target": "a house", "attribute": "style", "concept": "van gogh"}
JOBS = {
    "locogen": {"sites": {"kind": "cross_attn", "index": "0-1"}, "window": 2},
    "attn_patch": {"sites": {"kind": "cross_attn", "index": "0"}, "step_start": [0, 3], "heads": [0]},
    "causal_trace": {"sites": {"kind": ["resnet", "text_mlp"], "index": "0"}, "positions": ["last"]},
}


@pytest.mark.parametrize("method", list(JOBS))
def test_a_produced_row_has_exactly_the_schema_columns_with_the_schema_types(method):
    spec = load_job({"name": "schema", "method": method, "prompts": [PROMPT], "steps": 4, **JOBS[method]})
    worker = Worker(spec)
    rows = worker.run_unit(plan_units(spec, worker.variants)[0]).rows
    assert {r["role"] for r in rows} >= {"control", "variant"}
    for row in rows:  # the job's metrics mse, psnr, ssim: their columns, with P3's wrapped mse_p3/psnr_p3
        assert set(row) == set(COLUMNS) | {"mse", "psnr", "ssim", "mse_p3", "psnr_p3"}, set(row) ^ set(COLUMNS)
    table = to_table(rows)
    for name, dtype in COLUMNS.items():
        assert table.schema.field(name).type == dtype, name
    assert {table.schema.field(m).type for m in ("mse", "psnr", "ssim")} == {pa.float64()}
    variant = next(r for r in rows if r["role"] == "variant")
    assert variant["method"] == method and variant["site_index"] == 0


def test_a_row_part_with_a_missing_or_unknown_column_is_refused():
    parts = {name: dict.fromkeys(part) for name, part in PARTS.items()}
    assert set(build_row(**parts, metrics={"mse": 1.0})) == set(COLUMNS) | {"mse"}
    with pytest.raises(ValueError, match="part 'design': missing \\['noise_scale'\\], unexpected \\['noise'\\]"):
        design = {k: None for k in DESIGN if k != "noise_scale"} | {"noise": 1.0}
        build_row(**{**parts, "design": design}, metrics={})
    with pytest.raises(ValueError, match="shadow"):
        build_row(**parts, metrics={"seed": 1.0})


SQL_WORDS = {"select", "from", "where", "and", "group", "by", "order", "as", "count", "read_parquet",
             "hive_partitioning", "union_by_name", "true", "false", "list", "any_value", "null", "is", "not",
             "with", "left", "join", "on", "create", "view", "unpivot", "into", "name", "value", "case", "when",
             "then", "else", "end", "double", "coalesce", "distinct", "or"}


SQL_KEYWORDS_AFTER_TABLE = {"WHERE", "ON", "GROUP", "ORDER", "JOIN", "LEFT"}


def sql_identifiers(text: str) -> set[str]:
    """Identifiers a SQL file names, without comments, placeholders, parameters, strings and aliases."""
    text = re.sub(r"--[^\n]*", "", text)
    text = re.sub(r"\{\w+\}|\$\w+|'[^']*'", " ", text)
    aliases = set(re.findall(r"\bAS\s+(\w+)", text, flags=re.IGNORECASE))
    aliases |= set(re.findall(r"(\w+)\s+AS\s*\(", text, flags=re.IGNORECASE))  # WITH name AS (...)
    aliases |= set(re.findall(r"\b(?:FROM|JOIN)\s+\w+\s+(\w+)", text, flags=re.IGNORECASE)) - SQL_KEYWORDS_AFTER_TABLE
    aliases |= set(re.findall(r"\bCREATE\s+VIEW\s+(\w+)", text, flags=re.IGNORECASE))
    aliases |= {w for pair in re.findall(r"\bINTO\s+NAME\s+(\w+)\s+VALUE\s+(\w+)", text, flags=re.IGNORECASE)
                for w in pair}
    words = set(re.findall(r"[A-Za-z_]\w*", text))
    return {w for w in words if w.lower() not in SQL_WORDS and w not in aliases}


ROW_SQL = sorted(p for p in SQL_DIR.glob("*.sql") if p.name != "agreement_view.sql")  # that one reads agreement_sites


@pytest.mark.parametrize("path", ROW_SQL, ids=lambda p: p.name)
def test_the_sql_files_name_only_schema_columns(path):
    names = sql_identifiers(path.read_text())
    allowed = set(COLUMNS) | set(VIEWS) | set(VIEW_COLUMNS)  # the analysis views and the columns they add
    assert names and names <= allowed, names - allowed


def test_the_identifier_check_catches_a_column_the_schema_does_not_have():
    assert sql_identifiers("SELECT variant, sitez FROM read_parquet($results) WHERE role = 'x'") - set(COLUMNS) \
        == {"sitez"}


def test_the_ranking_reads_only_schema_design_columns():
    assert set(rank_module.DESIGN_COLUMNS) <= set(DESIGN)


def test_the_agreement_view_names_only_the_columns_of_agreement_sites():
    from analysis.agreement import SITES_SCHEMA

    functions = {"filter", "row_number", "over", "partition", "desc", "greatest", "len", "list_intersect", "nullif",
                 "kendall_tau", "k"}  # SQL functions and keywords (kendall_tau: scipy's), the alias of the tau CTE
    names = {n for n in sql_identifiers((SQL_DIR / "agreement_view.sql").read_text()) if n.lower() not in functions}
    computed = {"held_a", "held_b"}  # the strengths held at 0 where there is no effect
    assert names and names <= set(SITES_SCHEMA.names) | computed | {"agreement_sites", "agreement"}, names
