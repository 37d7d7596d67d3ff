"""P3's 300-word text-edit evaluation is one shipped job (jobs/p3_text_edit_sdxl_300words.yaml): its word
pairs are exactly what harness.datasets builds from the GlyphControl lists (the 3 non-top buckets, SimpleBench
and CreativeBench, seed 42), and the job runs through `loco sweep` on tiny SDXL with the words cut to a few."""

import csv
from pathlib import Path

import duckdb

from harness import datasets
from harness.cli import main
from harness.jobs import load_job

JOB = Path(__file__).parents[2] / "jobs" / "p3_text_edit_sdxl_300words.yaml"
EDIT_BUCKETS = ("1000_10000", "10000_100000", "100000_plus")


def test_the_word_pairs_are_the_300_edit_words_of_both_benchmarks():
    job = load_job(JOB)
    expected = [row for build in (datasets.simplebench_pairs, datasets.creativebench_pairs)
                for bucket in EDIT_BUCKETS for row in build(bucket, 42)]
    assert [r.model_dump(exclude_none=True) for r in job.prompts] == expected
    assert len(job.prompts) == 600 and sum(r.id.startswith("simple-") for r in job.prompts) == 300
    held_out = {r["text"] for r in datasets.simplebench_pairs("top_1000")}
    assert not held_out & {r.text for r in job.prompts}  # the localization split stays out
    assert (job.sites.index, job.window, job.step_start, job.seeds) == ([55, 56, 57], 3, [4], [42])


def test_the_job_runs_on_tiny_sdxl_with_a_few_words(tmp_path, capsys):
    rows = list(csv.DictReader((JOB.parent / "prompts" / "p3_text_edit_300words.csv").open(encoding="utf-8")))
    few = [r for r in rows if r["id"].startswith("simple-")][:2] + [r for r in rows if r["id"].startswith("creative-")][:2]
    with (tmp_path / "few.csv").open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(few)
    out = tmp_path / "run"
    code = main(["sweep", str(JOB), "--local", "--quiet", "--out", str(out), "--set", "model=tiny:sdxl",
                 "--set", f"prompts={tmp_path / 'few.csv'}", "--set", "steps=6", "--set", "height=null",
                 "--set", "width=null", "--set", "metrics=[mse, psnr]", "--set", "scorers={}"])
    assert code == 0, capsys.readouterr().err
    got = duckdb.sql(f"SELECT prompt_id, role, variant, step_start, target_text FROM read_parquet('{out}/results/**/*.parquet') "
                     "ORDER BY prompt_id, role").fetchall()
    assert len(got) == 4 * 3  # per pair: control (A), target (B), A with layers 55-57 fed B from step 4
    assert {g[0] for g in got} == {r["id"] for r in few}
    assert {(g[1], g[2], g[3]) for g in got if g[1] == "variant"} == {("variant", "cross_attn#55-57@s4", 4)}
