"""attn_contrib through the whole sweep (job → units → Parquet → rank) on the planted model whose text reaches the
image only through cross-attention layer 8: one generation per prompt and seed, one row per layer, and the
planted layer ranked first with every other layer at exactly 0."""

import duckdb
import pytest

from analysis.rank import rank
from harness.jobs import load_job
from harness.preflight import plan
from tests.integration.conftest import CONTRIB_JOB

JOB = {**CONTRIB_JOB, "name": "planted-contrib"}


@pytest.fixture
def contrib_run(planted_contrib_run):
    return planted_contrib_run


def test_one_generation_per_prompt_and_seed_and_one_row_per_layer_as_planned(contrib_run):
    job = load_job(JOB)
    planned = plan(job)
    n = len(job.prompts) * len(job.seeds)
    assert planned.generations == n
    assert contrib_run.rows_written == planned.expected_rows == n * (16 + 1)
    rows = duckdb.sql(f"SELECT role, count(*), count(attn_contrib), min(mse), max(mse) FROM "
                      f"read_parquet('{contrib_run.run_dir}/results/**/*.parquet') GROUP BY role ORDER BY role").fetchall()
    # variant rows carry the measurement and the plain image (nothing was changed: mse 0 to the control)
    assert rows == [("control", n, 0, 0.0, 0.0), ("variant", 16 * n, 16 * n, 0.0, 0.0)]


def test_the_planted_layer_ranks_first_and_every_other_reads_zero(contrib_run):
    ranking = rank(contrib_run.run_dir, n_boot=20)
    assert ranking.metric == "attn_contrib" and ranking.order == "desc"
    assert ranking.sites[0].index == 8 and ranking.sites[0].mean > 0
    assert all(site.mean == 0.0 for site in ranking.sites[1:])


@pytest.mark.parametrize(("key", "value"), [("window", 2), ("heads", [0]), ("step_start", [2]), ("branch", "both"),
                                           ("noise_scale", 5.0)])
def test_what_a_plain_generation_cannot_take_is_refused_by_name(key, value):
    # attn_contrib measures every text-attention block over every step of one plain generation: it reads none
    # of the method-specific keys (`Method.reads`)
    with pytest.raises(ValueError, match=f"{key}: method 'attn_contrib' does not read it"):
        load_job({**JOB, key: value})


def test_a_prompt_without_a_concept_is_refused():
    prompts = [{"prompt": "a house", "attribute": "style"}]
    with pytest.raises(ValueError, match=r"prompts\[0\]\.concept: required for method 'attn_contrib'"):
        load_job({**JOB, "prompts": prompts})


def test_candidates_take_the_top_six_and_sql_has_its_effects(contrib_run):
    from analysis.candidates import build_candidates
    from analysis.runs import open_runs
    from analysis.views import connect

    pooled = next(s for s in build_candidates([contrib_run.run_dir], n_boot=50).sets if s.concept is None)
    assert pooled.method == "attn_contrib" and "top 6" in pooled.rule
    assert pooled.indices == [8]  # every other layer reads exactly 0: not distinguishable from 0, not a candidate
    con = connect(open_runs([contrib_run.run_dir]), computed=False)
    effects = con.execute("SELECT site_index, min(effect), count(reference) FROM effects WHERE metric = "
                          "'attn_contrib' GROUP BY site_index ORDER BY site_index").fetchall()
    assert [e[0] for e in effects] == list(range(16))  # the value is the effect: no reference row
    assert [e[2] for e in effects] == [0] * 16 and [e[0] for e in effects if e[1] > 0] == [8]
