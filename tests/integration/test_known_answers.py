"""Known-answer tests: on a model whose text reaches the image through one planted layer, every
localization method must find exactly that layer — through the whole sweep: job → units → Parquet → rank."""

import duckdb
import pytest

from analysis.rank import rank
from harness.jobs import load_job
from harness.sweep import run_sweep

PROMPTS = [{"prompt": "a house in the style of van gogh", "target": "a red bicycle on a beach",
            "attribute": "style", "concept": "van gogh"},
           {"prompt": "a photo of r2d2 in a street", "target": "a bowl of soup", "attribute": "object", "concept": "r2d2"}]
PLANTED = {"sd15": 8, "sdxl": 55}


def sweep(tmp_path, arch: str, method: str, batch_size: int = 24, **extra):
    job = load_job({"name": f"planted-{arch}-{method}", "model": f"tiny:{arch}+planted=cross_attn#{PLANTED[arch]}",
                    "method": method, "sites": {"kind": "cross_attn"}, "prompts": PROMPTS,
                    "seeds": [0, 1] if arch == "sd15" else [0],
                    "batch_size": batch_size, **extra})
    summary = run_sweep(job, out=tmp_path / job.name, backend="local")
    return summary.run_dir


def effects(run_dir, metric="mse") -> dict[int, list[float]]:
    rows = duckdb.sql(f"SELECT site_index, list({metric}) FROM read_parquet('{run_dir}/results/**/*.parquet') "
                      "WHERE role = 'variant' GROUP BY site_index").fetchall()
    return {index: values for index, values in rows}


@pytest.mark.parametrize("arch", ["sd15", "sdxl"])
@pytest.mark.parametrize("method", ["locogen", "attn_patch"])
def test_the_planted_layer_ranks_first_and_every_other_layer_has_zero_effect(tmp_path, arch, method):
    # batch_size 24 splits SDXL's 70 variants over several batches: zero must still read exactly zero
    run_dir = sweep(tmp_path, arch, method)
    ranking = rank(run_dir)
    assert ranking.sites[0].index == PLANTED[arch]
    assert ranking.sites[0].ci_low > 0
    per_site = effects(run_dir)
    assert all(v > 0 for v in per_site[PLANTED[arch]])
    assert all(v == 0.0 for index, values in per_site.items() if index != PLANTED[arch] for v in values)
    assert len(per_site) == (16 if arch == "sd15" else 70)


@pytest.mark.parametrize("arch", ["sd15", "sdxl"])
def test_causal_tracing_restores_the_clean_image_only_at_the_planted_layer(tmp_path, arch):
    run_dir = sweep(tmp_path, arch, "causal_trace")
    per_site = effects(run_dir)
    assert all(v == 0.0 for v in per_site[PLANTED[arch]])  # identical to the clean image
    assert all(v > 0 for index, values in per_site.items() if index != PLANTED[arch] for v in values)
    corrupted = duckdb.sql(f"SELECT min(mse) FROM read_parquet('{run_dir}/results/**/*.parquet') "
                           "WHERE role = 'corrupted'").fetchall()[0][0]
    assert corrupted > 0
    assert rank(run_dir).sites[0].index == PLANTED[arch]


def test_the_known_answer_holds_for_windows_and_late_step_starts(tmp_path):
    run_dir = sweep(tmp_path, "sd15", "attn_patch", window=3, step_start=[0, 5])
    for site in rank(run_dir).sites:
        covers = site.window_start <= PLANTED["sd15"] < site.window_start + 3
        assert (site.mean > 0) == covers, site
    late = {s.window_start: s.mean for s in rank(run_dir).sites if s.step_start == 5}
    early = {s.window_start: s.mean for s in rank(run_dir).sites if s.step_start == 0}
    assert 0 < late[PLANTED["sd15"]] < early[PLANTED["sd15"]]
