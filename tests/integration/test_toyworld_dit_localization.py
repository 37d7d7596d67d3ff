"""Localization on the DiT organism predicts where an edit works (issue 19), with the force of the UNet
organism's end-to-end tests:

* LocoGen's per-block sweep on the demo's colour prompts (`harness/toyworld/demo/dit/`, one seed) ranks the
  8 blocks; a LocoEdit of "red" → "blue" in the block ranked *first* lowers P(red) on red prompts more than the
  same edit in the block ranked *last*;
* the first block's edit takes red away from red prompts and is specific: prompts of the other colours keep
  their colour and their shape.

Thresholds are margins for a 32-px model; measured values are in weights-dit/MODEL_CARD.md. CI runs this
at one seed on the colour prompts only (the whole `loco demo --model toyworld-dit` takes a few minutes)."""

import csv
import json

import numpy as np
import pyarrow.parquet as pq
import pytest
import yaml

from analysis.effects import rank_run
from analysis.runs import open_run
from harness.cli.registry import call_verb
from harness.edit.evaluate import evaluate_edit
from harness.edit.run import run_edit
from harness.edit.spec import load_edit
from harness.toyworld.demo import DEMOS, HERE

pytestmark = pytest.mark.slow
DIT = DEMOS["toyworld-dit"]


def write_csv(path, rows):
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


@pytest.fixture(scope="module")
def colour_ranking(tmp_path_factory):
    folder = tmp_path_factory.mktemp("dit")
    with (DIT.folder / "prompts.csv").open(newline="") as handle:
        colour = [r for r in csv.DictReader(handle) if r["attribute"] == "color"]
    prompts = write_csv(folder / "colour.csv", colour)
    status = call_verb("sweep", [str(DIT.job("locogen")), "--set", f"prompts={prompts}", "--set", "seeds=[0]",
                                 "--set", "save_images=false", "--out", str(folder / "locogen"), "--local", "--quiet"])
    assert status == 0
    (group,) = [g for g in rank_run(open_run(folder / "locogen"), n_boot=200, by_concept=False)
                if g.attribute == "color"]
    return group


@pytest.fixture(scope="module")
def edits(colour_ranking, tmp_path_factory):
    """The demo's red → blue edit in the block ranked first and in the block ranked last, evaluated on the
    demo's red prompts (efficacy, generalization) and the other colours' (specificity)."""
    folder = tmp_path_factory.mktemp("dit-edits")
    base = yaml.safe_load((DIT.folder / DIT.edit).read_text())
    base.pop("candidate")
    out = {}
    for name, variant in (("first", colour_ranking.variants[0]), ("last", colour_ranking.variants[-1])):
        run_edit(load_edit({**base, "sites": variant.sites}), folder / name)
        evaluate_edit(folder / name, str(HERE / "edit_eval.csv"), folder / f"{name}-eval", metrics=["probe"])
        out[name] = pq.read_table(folder / f"{name}-eval" / "results.parquet").to_pylist()
    return out


def mean(rows, key):
    return float(np.mean([r[key] for r in rows if r[key] is not None]))


def test_the_block_ranked_first_for_colour_moves_red_more_than_the_block_ranked_last(colour_ranking, edits):
    assert colour_ranking.variants[0].effect < colour_ranking.variants[-1].effect
    drop = {}
    for name, rows in edits.items():
        red = [r for r in rows if r["set"] == "efficacy"]
        assert mean(red, "probe_color_ok_original") >= 0.75, "the model draws red when asked"
        drop[name] = mean(red, "probe_color_p_original") - mean(red, "probe_color_p")
    assert drop["first"] > drop["last"] + 0.2, drop


def test_the_first_blocks_edit_moves_red_and_keeps_the_other_colours_and_shapes(edits):
    rows = edits["first"]
    red = [r for r in rows if r["set"] in ("efficacy", "generalization")]
    others = [r for r in rows if r["set"] == "specificity"]
    # Measured (seed 0): P(red) on red prompts 1.00 → 0.30, their colour read as red 1.00 → 0.22, but read as
    # blue only 0.00 → 0.11, and their shapes 1.00 → 0.67; other colours 1.00 → 1.00 (colour and shape). One
    # block's edit takes red away; the colour it draws instead is not reliably blue (MODEL_CARD.md).
    assert mean(red, "probe_color_p") < mean(red, "probe_color_p_original") - 0.2  # red prompts lose red
    assert mean(others, "probe_color_ok") >= mean(others, "probe_color_ok_original") - 0.15
    assert abs(mean(others, "probe_shape_ok") - mean(others, "probe_shape_ok_original")) <= 0.15
    assert json.dumps(sorted({r["set"] for r in rows})) == '["efficacy", "generalization", "specificity"]'
