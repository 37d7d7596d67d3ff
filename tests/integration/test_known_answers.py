"""Known-answer tests: on a model whose text reaches the image through one planted layer, every
localization method must find exactly that layer — through the whole sweep: job → units → Parquet → rank."""

import duckdb
import pytest

from analysis.effects import rank_run
from analysis.rank import rank
from analysis.runs import open_run
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


def test_causal_tracing_candidates_are_exactly_the_planted_layer(planted_trace_run):
    # the decision, not only the ranking: the corruption worked, the threshold is > 0, and the one state above
    # it whose interval excludes 0 is the planted layer; the 15 states that restore nothing are never selected
    (group, *concepts) = rank_run(open_run(planted_trace_run))
    assert group.status == "selected" and group.corruption["effective"]
    assert [v.index for v in group.variants if v.selected] == [PLANTED["sd15"]]
    assert group.threshold["value"] < 0  # mse: a restore lowers the distance to the clean image...
    top = group.variants[0]
    assert top.ci_high < 0 and top.effect < group.threshold["value"]  # ...by more than the threshold, surely
    # restoring any other layer changes nothing (but a uint8 level on a pixel or two: BLAS picks kernels by batch size)
    assert all(abs(v.effect) < 1e-3 for v in group.variants[1:])
    assert group.n_prompts == 8 and len(group.threshold["validation_prompts"]) == 4
    # each artist's 6 prompts (2 to choose the threshold, 4 to test) may be too few to select, never a wrong layer
    assert all([v.index for v in c.variants if v.selected] in ([], [PLANTED["sd15"]]) for c in concepts)

