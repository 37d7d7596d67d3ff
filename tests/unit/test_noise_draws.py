"""Several noise draws per prompt (ROME averages 10): each draw is its own row (`noise_draw`), a restore is
paired with the corrupted row of its own prompt, seed *and draw*, and a prompt's draws are averaged within
the prompt — intervals stay over prompts."""

import pytest
from analysis_fixtures import make_run, site_name

from analysis.effects import rank_run
from analysis.runs import open_run
from analysis.views import connect

PROMPTS = [f"p{k}" for k in range(6)]
CLEAN, RESTORE = 0.9, {0: 0.2, 1: 0.0}  # site 0 brings back 0.2 × (d + 1) in draw d; site 1 nothing


def corrupted(draw: int) -> float:
    return 0.1 + 0.3 * draw  # the draws differ a lot, so pairing a restore with another draw shows


def rows(draws: int = 2) -> list[dict]:
    out = []
    for p in PROMPTS:
        base = {"prompt_id": p, "prompt": f"prompt {p}", "attribute": "color", "concept": "red", "seed": 0}
        out.append(base | {"role": "control", "variant": "control", "probe_p_prompt": CLEAN})
        for d in range(draws):
            out.append(base | {"role": "corrupted", "variant": "corrupted", "noise_draw": d,
                               "probe_p_prompt": corrupted(d)})
            for i, gain in RESTORE.items():
                out.append(base | {"role": "variant", "variant": f"resnet#{i}", "site": site_name(i),
                                   "sites": [site_name(i)], "kind": "resnet", "site_index": i, "indices": [i],
                                   "noise_draw": d, "probe_p_prompt": corrupted(d) + gain * (d + 1)})
    return out


def test_a_restore_is_paired_with_the_corrupted_row_of_its_own_draw_and_draws_average_within_a_prompt(tmp_path):
    run = make_run(tmp_path, "ct", "causal_trace", rows(), n_sites=2)
    (group,) = [g for g in rank_run(open_run(run), n_boot=200, by_concept=False) if g.attribute == "color"]
    top = {v.variant: v for v in group.variants}["resnet#0"]
    # per draw: 0.2 and 0.4 above that draw's corrupted row → 0.3; paired across draws it would be
    # 0.2 − 0.3, 0.4 + 0.3, ... and a draw-blind pairing keeps one draw per prompt
    assert top.effect == pytest.approx(0.3)
    assert (top.ci_low, top.ci_high) == (pytest.approx(0.3), pytest.approx(0.3))
    assert top.n_rows == 2 * top.n_prompts  # two draws of each prompt, one cluster per prompt
    con = connect([open_run(run)], computed=False)
    effects = con.execute("SELECT noise_draw, effect FROM effects WHERE variant = 'resnet#0' "
                          "AND metric = 'probe_p_prompt' ORDER BY prompt_id, noise_draw").fetchall()
    assert effects == [(d, pytest.approx(0.2 * (d + 1))) for _ in PROMPTS for d in range(2)]
