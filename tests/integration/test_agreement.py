"""Known answers of the agreement between localizers, on tiny planted runs over the same prompts, ranked with
the default bootstrap (`analysis.intervals.N_BOOT`), as `loco candidates`, `loco sql` and `loco report` rank.

Where the methods must agree — text reaches the image through one layer, and that layer is all any of them
can find — they agree exactly: τ = 1 and the same top set. Where they must not — layers that read the concept
as strongly as ever but whose output never reaches the image — the attention contribution ranks those layers
and the interventions do not, and the agreement drops. Twelve prompts: with eight, LocoGen's and patching's
image distances at the planted layer sit at the edge of what Holm over 16 layers lets through (t ≈ 4 with 7
degrees of freedom), and the known answer would hang on the bootstrap's draws (`AGREE_JOB` in conftest)."""

import duckdb
import pytest
import torch

from analysis.agreement import agreement_table
from analysis.candidates import build_candidates
from analysis.effects import rank_run
from analysis.runs import open_runs
from analysis.views import connect
from harness.jobs import load_job
from harness.models import load_model
from harness.sweep import run_sweep
from tests.integration.conftest import AGREE_JOB

READ_ONLY = range(10, 16)  # up_blocks.2 and .3: the layers that read the text and write nothing


def pooled(*run_dirs) -> dict[frozenset, object]:
    """The attribute-level agreement rows of the runs, by the pair of methods."""
    runs = open_runs(list(run_dirs))
    groups = [g for run in runs for g in rank_run(run)]
    return {frozenset((a.method_a, a.method_b)): a for a in agreement_table(groups, runs) if a.concept is None}


@pytest.fixture(scope="module")
def planted_runs(planted_agree_runs, tmp_path_factory):
    """attn_contrib, LocoGen and attention patching on the planted model (text enters at layer 8 only)."""
    spec = load_job({**AGREE_JOB, "name": "agree-attn_patch", "method": "attn_patch"})
    patch = run_sweep(spec, out=tmp_path_factory.mktemp("agree") / "attn_patch", backend="local").run_dir
    return {**planted_agree_runs, "attn_patch": patch}


def test_on_the_planted_model_every_pair_agrees_exactly(planted_runs):
    rows = pooled(*planted_runs.values())
    assert set(rows) == {frozenset(("attn_contrib", "locogen")), frozenset(("attn_contrib", "attn_patch")),
                         frozenset(("locogen", "attn_patch"))}
    for agreement in rows.values():
        assert (agreement.n_prompts, agreement.n_sites) == (12, 16)
        assert agreement.kendall_tau == pytest.approx(1.0)  # the 15 layers every method reads as exactly 0 are ties
        assert agreement.top_a == agreement.top_b == ["cross_attn#8"] and agreement.top_k_share == 1.0
    pair = [planted_runs["attn_contrib"], planted_runs["locogen"]]
    field = next(a for a in build_candidates(pair).agreement if a["concept"] is None)  # `loco candidates`' field
    assert field["kendall_tau"] == pytest.approx(1.0) and field["top_a"] == field["top_b"] == ["cross_attn#8"]
    con = connect(open_runs(pair))  # `loco sql`'s views
    ((tau, top_a, top_b),) = con.execute("SELECT kendall_tau, top_a, top_b FROM agreement WHERE concept IS NULL").fetchall()
    assert tau == pytest.approx(1.0) and top_a == top_b == ["cross_attn#8"]


def test_runs_are_compared_on_the_prompts_they_share(planted_runs, planted_trace_run):
    # causal tracing ranks its held-out test prompts (8 of its 12), attn_contrib all 12: attn_contrib is ranked
    # again on tracing's 8, and the two agree there as everywhere
    runs = open_runs([planted_runs["attn_contrib"], planted_trace_run])
    trace = next(g for g in rank_run(runs[1]) if not g.concept)
    assert len(trace.extra["resamples"]["prompts"]) == 8 < len(AGREE_JOB["prompts"])
    (agreement,) = pooled(planted_runs["attn_contrib"], planted_trace_run).values()
    assert agreement.n_prompts == 8 and agreement.kendall_tau == pytest.approx(1.0)
    assert agreement.top_a == agreement.top_b == ["cross_attn#8"]


def test_too_few_common_prompts_to_tell_an_effect_from_0_leave_tau_empty(planted_contrib_run, planted_trace_run):
    # LocoGen's eight prompts (attn_contrib's shared fixture) and tracing's test prompts share 4: with 4 prompts
    # and Holm over 16 layers not even the planted layer is distinguishable from 0 (as `loco candidates` would
    # say), so neither run orders a pair
    texts = dict(duckdb.sql(f"SELECT DISTINCT prompt_id, prompt FROM read_parquet('{planted_trace_run}/results/**/*.parquet')"
                            ).fetchall())
    (agreement,) = pooled(planted_contrib_run.run_dir, planted_trace_run).values()
    assert len(texts) == 12 and agreement.n_prompts == 4 and agreement.n_sites == 16
    assert agreement.kendall_tau is None and (agreement.top_a, agreement.top_b, agreement.top_k_share) == ([], [], None)


@pytest.fixture(scope="module")
def read_only_runs(tmp_path_factory):
    """The planted model (text enters at layer 8) with layers 10-15 reading the text again (their K/V
    projections restored) inside transformers whose output projection is zeroed: those layers attend to the
    concept as strongly as ever, and nothing they compute reaches the image. attn_contrib and LocoGen on it."""
    root = tmp_path_factory.mktemp("read-only")
    model = load_model("tiny:sd15+planted=cross_attn#8", "cpu")
    fresh = load_model("tiny:sd15", "cpu")
    with torch.no_grad():
        for site in [s for s in model.sites.of_kind("cross_attn") if s.index in READ_ONLY]:
            for mine, original in zip(model.kv_modules(site.name), fresh.kv_modules(site.name)):
                mine.weight.copy_(original.weight)
            proj_out = model.module(site.name.rsplit(".transformer_blocks", 1)[0]).proj_out
            proj_out.weight.zero_()
            proj_out.bias.zero_()
    model.pipe.save_pretrained(root / "model", safe_serialization=True)
    runs = []
    for method in ("attn_contrib", "locogen"):
        spec = load_job({**AGREE_JOB, "name": f"read-only-{method}", "method": method, "model": str(root / "model")})
        runs.append(run_sweep(spec, out=root / method, backend="local").run_dir)
    return runs


def test_layers_that_read_the_concept_but_never_write_make_the_methods_disagree(read_only_runs):
    (agreement,) = pooled(*read_only_runs).values()
    assert agreement.method_a == "attn_contrib" and agreement.n_sites == 16
    # the contribution ranks the read-only layers among its top 6; LocoGen finds only layer 8
    assert len(agreement.top_a) == 6 and {int(s.split("#")[1]) for s in agreement.top_a} <= {8, *READ_ONLY}
    assert agreement.top_b == ["cross_attn#8"]
    assert agreement.top_k_overlap <= 1 and agreement.top_k_share <= 1 / 6
    assert agreement.kendall_tau < 0.5
