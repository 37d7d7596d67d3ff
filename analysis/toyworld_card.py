"""The toyworld model card, written from measurements: `python -m analysis.toyworld_card [--demo DIR]`.

Nothing in `MODEL_CARD.md` is typed by hand. This script reads the world's definition from
`harness.toyworld.world`, the training settings from the shipped weights' `settings.json` (written by
`loco toyworld train`), measures the probes on renders (`harness.toyworld.probes.train.evaluate`) and on
images the model generates (`harness.toyworld.probes.quality`: every held-out combination, a spread of
training ones, every word; intervals over prompts, a cluster bootstrap with each prompt's seeds kept
together), and reads what the harness finds in the model from a `loco demo` output directory (it runs
the demo first when none is given): per attribute and method, the top layers under the paper's rule with
their effect and 95% interval, and the LocoEdit red → blue evaluation.
"""

from __future__ import annotations

import argparse
import datetime
import json
import shutil
import subprocess
from pathlib import Path

import numpy as np

from analysis.bootstrap import cluster_bootstrap
from analysis.choose import CONSTANT, INEFFECTIVE, ONE_PROMPT
from analysis.effects import rank_run
from analysis.intervals import N_BOOT, interval_text, p_top_text
from analysis.runs import open_run
from harness.toyworld import world

WEIGHTS = Path(world.__file__).with_name("weights")
ATTRS = ("color", "shape", "background", "word")
METHOD_NAMES = {"locogen": "LocoGen (P2)", "causal_trace": "causal tracing (P1)", "attn_patch": "attention patching (P3)",
                "attn_contrib": "attention contribution (Zarei et al.)"}
INTRO = {
    "toyworld": ("A small SD1.x-style text-to-image model (CLIP text encoder + cross-attention UNet + VAE, diffusers "
                 "format) trained from scratch on a synthetic world whose facts are known: the harness's embedded "
                 "default, its demo (`loco demo`) and the ground of its end-to-end tests. Load it with `model: toyworld`."),
    "toyworld-dit": ("A small PixArt-α-style diffusion transformer (tiny T5 text encoder + 8 transformer blocks with "
                     "self-attention, cross-attention to the text and adaLN-single, on the UNet organism's VAE; "
                     "diffusers `PixArtAlphaPipeline`) trained from scratch on the same synthetic world, so DiT "
                     "localization has known answers: `loco demo --model toyworld-dit`. Load it with "
                     "`model: toyworld-dit`."),
}


def mean_ci(values: np.ndarray, clusters: np.ndarray, n_boot: int = N_BOOT) -> tuple[float, float, float]:
    """Mean and 95% cluster-bootstrap interval (prompts resampled with their seeds)."""
    boot = cluster_bootstrap(values[None, None, :], clusters, n_boot=n_boot)
    return float(boot.value[0]), float(boot.ci_low[0]), float(boot.ci_high[0])


def world_section() -> str:
    held = ", ".join(f"{s} {c}" for s, c in sorted(world.HELDOUT_SHAPE_COLOR))
    held_bg = ", ".join(f"{c} on {b}" for c, b in sorted(world.HELDOUT_COLOR_BACKGROUND))
    n_held, n_all = len(world.object_combos("heldout")), len(world.object_combos("train")) + len(world.object_combos("heldout"))
    lines = ["## The world", "",
             "Procedural, deterministic from a seed (`harness/toyworld/world.py`). An *object scene* is one coloured "
             "shape on a patterned neutral-grey background; a *sign* is a black uppercase word on a white sign.", "",
             f"- shapes: {', '.join(world.SHAPES)}",
             f"- colours: {', '.join(f'{k} {v}' for k, v in world.COLORS.items())}",
             f"- backgrounds: {', '.join(world.BACKGROUNDS)}; words: {', '.join(world.WORDS)}",
             f"- object captions: {'; '.join(repr(t) for t in world.OBJECT_TEMPLATES)}",
             f"- sign captions: {'; '.join(repr(t) for t in world.WORD_TEMPLATES)}",
             f"- held out of training: the pairs {held} (shape, colour) and {held_bg} (colour, background): "
             f"{n_held} of {n_all} (shape, colour, background) combinations; signs are {world.WORD_FRACTION:.0%} "
             "of the training samples"]
    return "\n".join(lines)


def training_section(weights: Path) -> str:
    lines = ["## Training", ""]
    settings = weights / "settings.json"
    if settings.is_file():
        data = json.loads(settings.read_text())
        for part in ("model", "training"):
            if part in data:
                lines.append(f"- {part}: " + ", ".join(f"{k} {v}" for k, v in data[part].items()))
        if "timings" in data:
            lines.append("- timings (s): " + ", ".join(f"{k} {v}" for k, v in data["timings"].items()))
    sidecar = weights / "toyworld.json"
    if sidecar.is_file():
        inference = json.loads(sidecar.read_text()).get("inference", {})
        lines.append("- sampling defaults (`toyworld.json`): " + ", ".join(f"{k} {v}" for k, v in inference.items()))
    for name, what in (("TRAINING.md", "the training report and learning curves"), ("loss.png", "the loss curve"),
                       ("samples.png", "samples per attribute"), ("eval.csv", "colour checks during training")):
        if (weights / name).is_file():
            lines.append(f"- {what}: [{name}]({name})")
    if len(lines) == 2:
        lines.append("- no settings.json beside the weights: see `loco toyworld train --help`")
    return "\n".join(lines)


def probes_section(quality_rows: list[dict], render_acc: dict, n_boot: int) -> str:
    lines = ["## Probe accuracy", "",
             "Probes (`harness/toyworld/probes/`, one CNN with a head per attribute, trained on training-split renders "
             "with sample-like damage). On renders they never saw (held-out combinations; signs of new seeds):", "",
             "| attribute | accuracy | renders |", "|---|---|---|"]
    lines += [f"| {a} | {r['accuracy']:.3f} | {r['n']} |" for a, r in render_acc.items()]
    lines += ["", "On images the model generates (its sampler defaults), the share whose probe reading is the caption's "
              "label, 95% interval over prompts (cluster bootstrap; chance is 1/4 for every attribute):", "",
              "| attribute | split | accuracy | 95% CI | prompts | images |", "|---|---|---|---|---|---|"]
    for attr in ATTRS:
        for split in ("train", "heldout", "words", "all"):
            rows = [r for r in quality_rows if r["attribute"] == attr and (split == "all" or r["split"] == split)]
            if not rows or (split == "all" and len({r["split"] for r in rows}) < 2):
                continue
            mean, lo, hi = mean_ci(np.array([r["ok"] for r in rows]), np.array([r["prompt"] for r in rows]), n_boot)
            lines.append(f"| {attr} | {split} | {mean:.3f} | [{lo:.3f}, {hi:.3f}] | {len({r['prompt'] for r in rows})} "
                         f"| {len(rows)} |")
    return "\n".join(lines)


def run_dirs(demo: Path) -> list[Path]:
    return sorted((demo / "runs").iterdir()) + sorted((demo / "card-runs").glob("*"))


def word_sweeps(demo: Path, model: str) -> None:
    """LocoGen and causal tracing on the demo's word prompts (the demo itself patches attention for words),
    in this process: ~120 rows, so the card can say where words live by every method."""
    from harness.cli.registry import call_verb
    from harness.toyworld.demo import HERE

    for job in ("locogen.yaml", "causal_trace.yaml"):
        name = f"words-{job.removesuffix('.yaml').replace('_', '-')}"
        shutil.rmtree(demo / "card-runs" / name, ignore_errors=True)  # never resume rows of older weights
        status = call_verb("sweep", [str(HERE / job), "--set", f"prompts={HERE / 'words.csv'}", "--set", f"name={name}",
                                     "--set", f"model={model}", "--out", str(demo / "card-runs" / name), "--local",
                                     "--quiet", "--force"])
        if status:
            raise RuntimeError(f"the {name} sweep failed (exit {status})")


def localization_section(demo: Path, n_boot: int, top: int = 3) -> str:
    lines = ["## What the harness finds in the model", "",
             f"From `loco demo` ({demo.name}; on the UNet organism plus LocoGen and causal tracing on the demo's word "
             "prompts, which the DiT's demo runs itself): each "
             "attribute's prompts ranked under the paper's rule, read through the "
             "probes (`probe_p_prompt`: P(the prompt's label); `probe_p_target`: P(the target's)). Effect = variant − "
             "reference (control for swaps, corrupted run for restores), 95% cluster-bootstrap interval over prompts; "
             "`*` marks the candidate set; *reference* is the metric on the reference rows (a corrupted run that still "
             "shows the attribute leaves causal tracing nothing to restore). Causal tracing's intervals come from the "
             "prompts left after its threshold's validation split.", "",
             "| attribute | method | metric | reference | top sites: effect [95% CI] | P(top) of the first | prompts |",
             "|---|---|---|---|---|---|---|"]
    groups = [g for run_dir in run_dirs(demo) for g in rank_run(open_run(run_dir), n_boot=n_boot, by_concept=False)]
    order = {a: i for i, a in enumerate(("color", "shape", "background", "text"))}
    named: dict[str, str] = {}
    for group in sorted(groups, key=lambda g: (order.get(g.attribute, 9), g.method)):
        shown = group.variants[:top]
        named |= {v.variant: v.site for v in shown if v.site}
        cells = "; ".join(f"{'*' if v.selected else ''}{v.variant} {v.effect:+.3f} "
                          f"{interval_text(v.ci_low, v.ci_high, v.n_prompts, '+.3f').rsplit(' n=', 1)[0]}"
                          for v in shown)
        attr = "word" if group.attribute == "text" else group.attribute
        lines.append(f"| {attr} | {METHOD_NAMES.get(group.method, group.method)} | {group.rule.metric} | "
                     f"{group.rule.reference} {shown[0].reference:.2f} | {cells} | "
                     f"{p_top_text(shown[0].p_top)} | {shown[0].n_prompts} |")
    lines += ["", "The sites named above (indices count each kind in forward order: a UNet's down blocks, mid, up blocks; a "
              "DiT's blocks):", ""]
    lines += [f"- `{label}`: `{site}`" for label, site in sorted(named.items())]
    return "\n".join(lines)


TEXT_STATE = "text_self_attn#0@last_subject"  # P1's one causal text-encoder state (docs/methods.md §1.2)


def noise_of(run_dir: Path) -> str:
    """The corruption a causal-trace run used, read from its rows: σ rule and value(s), κ, noise draws."""
    import duckdb

    rule, scale, sigma, draws = duckdb.connect().execute(
        "SELECT any_value(noise_rule), any_value(noise_scale), any_value(noise_std), max(noise_draw) + 1 "
        "FROM read_parquet($g, hive_partitioning = true, union_by_name = true) WHERE role = 'corrupted'",
        {"g": str(run_dir / "results" / "**" / "*.parquet")}).fetchone()
    sigmas = ", ".join(f"{x:.3g}" for x in sigma or [])
    return f"κ = {scale:g} × σ = {sigmas} (`noise_std: {rule}`), {draws} noise draw{'s' if draws != 1 else ''} per prompt"


def _text_state(group) -> str:
    """Where P1's text-encoder finding stands in a causal-trace group, and why it is or is not a candidate."""
    state = next((v for v in group.variants if v.variant == TEXT_STATE), None)
    if state is None:
        return "not traced"
    where = (f"rank {state.rank} of {len(group.variants)}, {state.effect:+.3f} "
             f"{interval_text(state.ci_low, state.ci_high, state.n_prompts, '+.3f').rsplit(' n=', 1)[0]}")
    if state.selected:
        return f"**found**: {where}"
    threshold = (group.threshold or {}).get("value")
    if group.status in (INEFFECTIVE, CONSTANT, ONE_PROMPT):
        why = group.status
    elif threshold is None or group.rule.sign * state.effect <= group.rule.sign * threshold:
        why = "below the threshold"
    else:
        why = f"above the threshold but not distinguishable from 0 (Holm over {len(group.variants)} states)"
    return f"not found ({why}): {where}"


def causal_tracing_section(demo: Path, n_boot: int) -> str:
    """Did each attribute's corruption work, which states cleared the threshold, and P1's text-encoder state."""
    lines = ["## Causal tracing: did the corruption work?", "",
             "Causal tracing can only find a state that brings back what the corruption took away. The corruption "
             "*worked* when the corrupted run's P(the prompt's label) lies below the clean run's 95% interval over "
             "prompts; otherwise the attribute is reported as *corruption ineffective* and yields no candidates. "
             "Candidates are the states above a threshold chosen on held-out validation prompts whose effect is "
             "distinguishable from 0 (`analysis/choose.py`). The last column is P1's text-encoder finding, the "
             "layer-0 self-attention at the last subject token.", ""]
    for run_dir in run_dirs(demo):
        run = open_run(run_dir)
        if run.method != "causal_trace" or not run.has_results:
            continue
        lines += [f"`{run_dir.name}`: {noise_of(run_dir)}.", "",
                  "| attribute | prompts | clean → corrupted | corruption | threshold (validation / test prompts) "
                  "| candidates | text_self_attn#0 at the last subject token |", "|---|---|---|---|---|---|---|"]
        for group in rank_run(run, n_boot=n_boot, by_concept=False):
            c = group.corruption or {}
            clean = (f"{c['clean']:.2f} [{c['clean_ci_low']:.2f}, {c['clean_ci_high']:.2f}] → {c['corrupted']:.2f}"
                     if c.get("clean_ci_low") is not None else f"{c.get('clean', float('nan')):.2f} → "
                     f"{c.get('corrupted', float('nan')):.2f}")
            worked = "—" if not c else ("worked" if c["effective"] else "**ineffective**")
            t = group.threshold or {}
            threshold = ("—" if t.get("value") is None else
                         f"{t['value']:+.3f} ({len(t['validation_prompts'])} / {len(t['test_prompts'])})")
            chosen = ", ".join(v.variant for v in group.variants if v.selected) or f"none ({group.status})"
            attr = "word" if group.attribute == "text" else group.attribute
            lines.append(f"| {attr} | {c.get('n_prompts', group.n_prompts)} | {clean} | {worked} | {threshold} | "
                         f"{chosen} | {_text_state(group)} |")
        lines.append("")
    return "\n".join(lines).rstrip()


def edit_section(demo: Path) -> str:
    summary = json.loads((demo / "edit-eval" / "summary.json").read_text())
    lines = ["## The demo's edit: LocoEdit red → blue", "",
             f"Edit `{summary['edit_id']}` in the sites LocoGen found for colour (the candidate set of `candidates.yaml`). "
             "Means over the prompt sets of "
             "`harness/toyworld/demo/edit_eval.csv`, original → edited model:", "",
             "| set | P(prompt's colour) | colour correct | shape correct | background correct | MSE to original |",
             "|---|---|---|---|---|---|"]
    for name, s in summary["sets"].items():
        pairs = [f"{s.get(k + '_original', float('nan')):.2f} → {s.get(k, float('nan')):.2f}"
                 for k in ("probe_p_prompt", "probe_ok_prompt", "probe_shape_ok", "probe_background_ok")]
        lines.append(f"| {name} | {' | '.join(pairs)} | {s['mse']:.1f} |")
    return "\n".join(lines)


def build_card(demo: Path, quality_rows: list[dict], render_acc: dict, weights: Path = WEIGHTS, n_boot: int = N_BOOT,
               model: str = "toyworld", compare: Path | None = None) -> str:
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                cwd=Path(__file__).parent).stdout.strip()
    except OSError:
        commit = "unknown"
    head = [f"# Model card: {model}", "", INTRO[model], "",
            f"Generated by `python -m analysis.toyworld_card --model {model}` on {datetime.date.today()} "
            f"at commit {commit or 'unknown'}; "
            "every number below is measured by that script."]
    from analysis.lora_newwords import MARKER, card_section, recorded

    runs = recorded() if model == "toyworld" else []
    lora = [f"{MARKER}\n{card_section(runs)}\n{MARKER}"] if runs else []
    dit = []
    if model == "toyworld-dit":
        from analysis.organism_compare import agreement_section, comparison_section

        dit = [agreement_section(demo, n_boot), comparison_section(demo, compare, n_boot)]
    return "\n\n".join(["\n".join(head), world_section(), training_section(weights),
                        probes_section(quality_rows, render_acc, n_boot), localization_section(demo, n_boot), *dit,
                        causal_tracing_section(demo, n_boot), edit_section(demo), *lora]) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m analysis.toyworld_card", description=__doc__.split("\n")[0])
    parser.add_argument("--demo", help="a `loco demo` output directory (default: run the demo into runs/demo)")
    parser.add_argument("--model", default="toyworld", choices=sorted(INTRO))
    parser.add_argument("--out", help="default: MODEL_CARD.md beside the model's shipped weights")
    parser.add_argument("--compare", help="toyworld-dit: a `loco demo` directory of the UNet organism to compare with")
    parser.add_argument("--seeds", type=int, default=2, help="samples per quality prompt (default 2)")
    parser.add_argument("--max-train", type=int, default=24, help="training combinations sampled (default 24)")
    parser.add_argument("--bootstrap", type=int, default=N_BOOT)
    args = parser.parse_args(argv)
    from harness.models import load_model, set_reproducible
    from harness.models.builtin import BUILTIN_DIRS
    from harness.toyworld.probes import load_probes
    from harness.toyworld.probes.quality import generated_accuracy, quality_prompts
    from harness.toyworld.probes.train import evaluate

    weights = BUILTIN_DIRS[args.model]
    out = Path(args.out) if args.out else weights / "MODEL_CARD.md"
    demo = Path(args.demo) if args.demo else None
    if demo is None:
        from harness.toyworld.demo import run_demo

        demo = run_demo(f"runs/demo-{args.model}", model=args.model).out
    set_reproducible(True)
    if args.model == "toyworld":  # the DiT demo runs all four localizers on its word prompts already
        word_sweeps(demo, args.model)
    probes = load_probes()
    render_acc = evaluate(probes)
    rows = generated_accuracy(load_model(args.model, "cpu"), quality_prompts(args.max_train),
                              list(range(args.seeds)), probes)
    (demo / "quality.json").write_text(json.dumps(rows))
    out.write_text(build_card(demo, rows, render_acc, weights, n_boot=args.bootstrap, model=args.model,
                              compare=Path(args.compare) if args.compare else None))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
