"""A damaged run directory: a resume re-runs every part that is not whole, and every command that reads the
run names the bad file in one line instead of a DuckDB traceback."""

import json

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from analysis.rank import rank
from harness.cli import main
from harness.jobs import load_job
from harness.results.integrity import CorruptFileError, reading
from harness.sweep import run_sweep

PROMPTS = [{"prompt": f"a house number {i}", "target": "a painting"} for i in range(3)]


def job(**kw):
    return load_job({"name": "damaged", "model": "tiny:sd15", "method": "locogen", "prompts": PROMPTS,
                     "sites": {"kind": "cross_attn", "index": "12-14"}, "batch_size": 8, **kw})


def row_ids(run_dir) -> list[str]:
    return [r[0] for r in duckdb.sql(f"SELECT row_id FROM read_parquet('{run_dir}/results/**/*.parquet') "
                                     "ORDER BY row_id").fetchall()]


def truncate(path, keep: float = 0.5) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A whole run (3 units of 1 prompt × 3 variants + control + target) and its row ids."""
    run = run_sweep(job(), out=tmp_path_factory.mktemp("whole") / "run", backend="local")
    return run, row_ids(run.run_dir)


def copy_run(run, tmp_path):
    import shutil

    return shutil.copytree(run.run_dir, tmp_path / "copy")


def test_the_manifest_records_each_units_planned_rows(finished):
    run, ids = finished
    manifest = json.loads((run.run_dir / "manifest.json").read_text())
    assert sorted(manifest["unit_rows"].values()) == [5, 5, 5] and sum(manifest["unit_rows"].values()) == len(ids)


def test_a_truncated_part_is_run_again_on_resume(finished, tmp_path):
    run, ids = finished
    out = copy_run(run, tmp_path)
    parts = sorted(out.glob("results/method=*/part-*.parquet"))
    truncate(parts[1])
    again = run_sweep(job(), out=out, backend="local")
    assert (again.units_run, again.units_skipped, again.units_repaired) == (1, 2, 1)
    assert row_ids(out) == ids  # every row exactly once
    assert parts[1].with_name(parts[1].name + ".corrupt").exists()  # kept aside for inspection


def test_a_part_with_the_wrong_row_count_is_run_again(finished, tmp_path):
    run, ids = finished
    out = copy_run(run, tmp_path)
    part = sorted(out.glob("results/method=*/part-*.parquet"))[0]
    pq.write_table(pq.read_table(part).slice(0, 2), part)  # a whole file, but 2 of its 5 rows
    again = run_sweep(job(), out=out, backend="local")
    assert (again.units_run, again.units_repaired) == (1, 1) and row_ids(out) == ids


def test_rank_names_a_truncated_part_in_one_line(finished, tmp_path, capsys):
    run, _ = finished
    out = copy_run(run, tmp_path)
    part = sorted(out.glob("results/method=*/part-*.parquet"))[2]
    truncate(part)
    with pytest.raises(CorruptFileError, match=f"{part.name}: not a readable Parquet file"), reading(out):
        rank(out, n_boot=10)
    assert main(["rank", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and part.name in err and "loco sweep" in err and "Traceback" not in err


def test_an_empty_part_and_a_damaged_manifest_are_named(finished, tmp_path, capsys):
    run, _ = finished
    out = copy_run(run, tmp_path)
    sorted(out.glob("results/method=*/part-*.parquet"))[0].write_bytes(b"")
    assert main(["rank", str(out)]) == 2
    assert "0 bytes" in capsys.readouterr().err
    (out / "manifest.json").write_text('{"job_name": "dam')
    assert main(["sweep", "--local", "--out", str(out), "--set", "name=damaged"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("loco: error:") and "manifest.json: not valid JSON" in err and "\n" not in err


def test_a_table_that_is_not_a_part_of_this_run_is_left_alone(finished, tmp_path):
    # Only planned units are verified: a stray file is the reader's business, not the resume's.
    run, ids = finished
    out = copy_run(run, tmp_path)
    pq.write_table(pa.table({"row_id": ["x"]}), out / "results" / "notes.parquet")
    again = run_sweep(job(), out=out, backend="local")
    assert again.units_run == 0 and (out / "results" / "notes.parquet").exists()


def test_the_sql_failures_view_reads_the_sweeps_failures_table(finished, tmp_path):
    from analysis.query import run_query
    from harness.results.failures import UnitFailure, write_failures

    run, _ = finished
    out = copy_run(run, tmp_path)
    write_failures(out, [UnitFailure("u9", "FloatingPointError: NaN image", 3, "FloatingPointError")])
    text = run_query([str(out)], "SELECT unit_id, error, attempts FROM failures", "csv")
    assert text.strip().splitlines()[-1] == "u9,FloatingPointError: NaN image,3"
