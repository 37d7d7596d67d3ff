"""`loco sql` is read-only in a way a query cannot escape (issue #20 item 9): no statement that writes runs
(COPY, EXPLAIN ANALYZE COPY, EXPORT, ATTACH, INSTALL/LOAD, SET), no file outside the run's own is opened
(other files, URLs), no extension is fetched, and none of that can be switched back on by a query. Every
escape is tried against a run whose files must come out byte for byte the same."""

import hashlib

import pytest
from analysis_fixtures import make_run, swap_rows

from analysis.query import run_query, shell
from analysis.runs import AnalysisError


@pytest.fixture
def run(tmp_path):
    rows = swap_rows(lambda i, p: 0.1 * (i == 2), [f"p{i}" for i in range(3)], [0], n_sites=3)
    return make_run(tmp_path, "a", "locogen", rows)


def digest(folder) -> dict:
    return {p.relative_to(folder): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def escapes(run, outside) -> list[str]:
    part = next(run.glob("results/*/*.parquet"))
    return [
        f"COPY (SELECT 42 AS v) TO '{outside}/x.csv'",
        f"COPY (SELECT 42 AS v) TO '{part}' (FORMAT parquet)",  # overwrite a run's own part
        f"EXPLAIN ANALYZE COPY (SELECT 42 AS v) TO '{outside}/y.csv'",
        f"EXPLAIN (ANALYZE, FORMAT json) COPY (SELECT 42 AS v) TO '{part}' (FORMAT parquet)",
        f"SELECT 1; COPY (SELECT 42 AS v) TO '{outside}/z.csv'",
        f"EXPORT DATABASE '{outside}/db'",
        f"ATTACH '{outside}/w.db' AS w",
        "INSTALL httpfs",
        "LOAD httpfs",
        "SET enable_external_access = true",
        "SET allowed_paths = ['/']",
        "RESET lock_configuration",
        "SELECT * FROM read_csv('/etc/passwd')",
        f"SELECT * FROM read_csv('{outside}/secret.csv')",
        "SELECT * FROM read_csv('https://example.com/data.csv')",
        "SELECT * FROM read_text('/etc/hostname')",
        "CREATE TABLE t AS SELECT 1",
    ]


def test_no_escape_writes_or_reads_outside_the_run(run, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.csv").write_text("a,b\n1,2\n")
    before, around = digest(run), digest(outside)
    for query in escapes(run, outside):
        with pytest.raises(AnalysisError) as caught:
            run_query([run], query)
        assert str(caught.value).count("\n") == 0, query
    assert digest(run) == before and digest(outside) == around


def test_reading_queries_still_work_explain_included(run, tmp_path):
    assert "42" in run_query([run], "SELECT 42 AS v")
    assert run_query([run], "SELECT count(*) AS n FROM results", "csv").splitlines()[1] == str(3 * 4)
    assert "QUERY PLAN" in run_query([run], "EXPLAIN SELECT count(*) FROM results") or \
        "physical_plan" in run_query([run], "EXPLAIN SELECT count(*) FROM results")
    assert run_query([run], "EXPLAIN ANALYZE SELECT count(*) FROM results")
    assert "cross_attn" in run_query([run], "SELECT DISTINCT kind FROM sites")
    run_query([run], "SELECT * FROM results", "parquet", str(tmp_path / "out.parquet"))
    assert (tmp_path / "out.parquet").stat().st_size > 0


def test_the_shell_is_sandboxed_too(run, tmp_path):
    import io

    out = io.StringIO()
    shell([run], stdin=io.StringIO(f"COPY (SELECT 1) TO '{tmp_path}/x.csv';\nSELECT 7 AS seven;\n"), stdout=out)
    assert not (tmp_path / "x.csv").exists()
    assert "error: sql: read-only" in out.getvalue() and "7" in out.getvalue()
