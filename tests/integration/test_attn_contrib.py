"""attn_contrib through the whole sweep (job → units → Parquet → rank) on the planted model whose text reaches the
image only through cross-attention layer 8: one generation per prompt and seed, one row per layer, and the
planted layer ranked first with every other layer at exactly 0."""

import duckdb
import pytest

from analysis.rank import rank
from harness.jobs import load_job
from harness.preflight import plan
from harness.sweep import run_sweep
from tests.integration.conftest import PLANTED_JOB

JOB = {**PLANTED_JOB, "name": "planted-attn-contrib", "method": "attn_contrib", "save_images": False}


@pytest.fixture(scope="session")
def contrib_run(tmp_path_factory):
    job = load_job(JOB)
    return run_sweep(job, out=tmp_path_factory.mktemp("contrib") / "run", backend="local")


def test_one_generation_per_prompt_and_seed_and_one_row_per_layer_as_planned(contrib_run):
    job = load_job(JOB)
    planned = plan(job)
    assert planned.generations == len(job.prompts) * len(job.seeds) == 2
    assert contrib_run.rows_written == planned.expected_rows == 2 * (16 + 1)
    rows = duckdb.sql(f"SELECT role, count(*), count(attn_contrib), min(mse), max(mse) FROM "
                      f"read_parquet('{contrib_run.run_dir}/results/**/*.parquet') GROUP BY role ORDER BY role").fetchall()
    # variant rows carry the measurement and the plain image (nothing was changed: mse 0 to the control)
    assert rows == [("control", 2, 0, 0.0, 0.0), ("variant", 32, 32, 0.0, 0.0)]


def test_the_planted_layer_ranks_first_and_every_other_reads_zero(contrib_run):
    ranking = rank(contrib_run.run_dir, n_boot=20)
    assert ranking.metric == "attn_contrib" and ranking.order == "desc"
    assert ranking.sites[0].index == 8 and ranking.sites[0].mean > 0
    assert all(site.mean == 0.0 for site in ranking.sites[1:])


@pytest.mark.parametrize(("key", "value"), [("window", 2), ("heads", [0]), ("step_start", [2]), ("branch", "both")])
def test_what_a_plain_generation_cannot_take_is_refused_by_name(key, value):
    with pytest.raises(ValueError, match=f"{key}: method 'attn_contrib' measures every text-attention block"):
        load_job({**JOB, key: value})


def test_a_prompt_without_a_concept_is_refused():
    prompts = [{"prompt": "a house", "attribute": "style"}]
    with pytest.raises(ValueError, match=r"prompts\[0\]\.concept: required for method 'attn_contrib'"):
        load_job({**JOB, "prompts": prompts})
