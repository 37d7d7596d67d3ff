"""P3's LoRA claim on the toyworld model: teach it new words through the localized layer or through all of them.

    uv run python -m analysis.lora_newwords --out runs/lora-newwords            # the full comparison
    uv run python -m analysis.lora_newwords --out runs/lora-newwords-short --short   # the CI-sized one

P3 (docs/methods.md §3.8) fine-tunes SDXL with LoRA on only the three cross-attention layers attention patching
localized for rendered text and reports better text with generations otherwise preserved, against a LoRA on
every attention layer and one on random layers. On the toyworld model the claim can be checked against
known facts: attention patching localized its `word` attribute to one layer (`cross_attn#1`, the model
card), and the world's renderer can draw words the model has never seen. So:

* **data**: signs of four words the model never drew (`NEW_WORDS`, letters its font already has), in the
  world's sign phrasings — text images only, as P3 trained on MARIO-LAION's;
* **arms**, same data, steps, batch, rank and learning rate: LoRA on the localized layer (`cross_attn#1`, or
  the `word` set of a `loco candidates` file), on every attention layer (self and cross: P3's "all
  layers"), and on `random: 1` cross-attention layer (as many layers as the localized arm), plus the
  untouched base model;
* **measures**, read by probes whose word head was retrained to read the new words too
  (`probes_newwords.safetensors`, `python -m harness.toyworld.probes.train --extra-words ...`): new-word
  accuracy (what should improve), old-word accuracy and shape / colour / background accuracy on object
  prompts (what should be preserved), with 95% cluster-bootstrap intervals over prompts (each prompt's
  seeds kept together), and paired differences against the localized arm; trainable parameters and
  training seconds.

Whatever comes out is written down (`report.md`, `summary.json`, `rows.csv`), including when the
localized adapter loses; the model card and README quote the full run.
"""

from __future__ import annotations

import argparse
import csv
import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from analysis.toyworld_card import mean_ci

NEW_WORDS = ("BUG", "NUT", "TAX", "COD")
PROBES = Path(__file__).resolve().parents[1] / "harness" / "toyworld" / "probes" / "weights" / "probes_newwords.safetensors"
LOCALIZED = ["cross_attn#1"]  # attention patching's `word` layer on the shipped toyworld (MODEL_CARD.md)
RECORD = Path(__file__).resolve().parents[1] / "harness" / "toyworld" / "weights" / "lora_newwords.json"
README = Path(__file__).resolve().parents[1] / "README.md"
MARKER = "<!-- lora-newwords -->"
MEASURES = (("new words", "words_new", "word"), ("old words", "words_old", "word"), ("shape", "objects", "shape"),
            ("colour", "objects", "color"), ("background", "objects", "background"))


@dataclass(frozen=True)
class Settings:
    steps: int = 600
    batch: int = 16
    rank: int = 4
    lr: float = 1e-3
    images: int = 2000
    seeds: tuple[int, ...] = (0, 1, 2, 3)
    object_prompts: int = 16  # training combinations
    heldout_objects: bool = True  # every held-out combination too
    templates: int = 3  # sign phrasings per word (world.WORD_TEMPLATES)
    seed: int = 42
    n_boot: int = 2000


SHORT = Settings(steps=2, batch=2, images=16, seeds=(0,), object_prompts=2, heldout_objects=False, templates=1,
                 n_boot=200)


def arm_specs(settings: Settings, candidates: str | None) -> dict[str, dict]:
    common = {"model": "toyworld", "rank": settings.rank, "lr": settings.lr, "steps": settings.steps,
              "batch": settings.batch, "seed": settings.seed, "gradient_checkpointing": False,
              "checkpoint_every": max(1, settings.steps // 4),
              "data": {"toyworld": {"words": list(NEW_WORDS), "n": settings.images, "seed": 0}}}
    where = {"candidates": candidates, "candidate": "word"} if candidates else {"sites": LOCALIZED}
    return {"localized": {**common, "name": "newwords-localized", **where},
            "all_attention": {**common, "name": "newwords-all-attention", "baseline": "all_attention"},
            "random": {**common, "name": "newwords-random", "random": 1}}


def prompts(settings: Settings):
    from harness.toyworld import world
    from harness.toyworld.probes.quality import QualityPrompt, quality_prompts

    def signs(words, split):
        return [QualityPrompt(t.format(word=w), split, (("word", w),)) for w in words
                for t in world.WORD_TEMPLATES[: settings.templates]]

    objects = [QualityPrompt(q.prompt, "objects") for q in quality_prompts(max_train=settings.object_prompts)
               if q.split == "train" or (q.split == "heldout" and settings.heldout_objects)]
    return signs(NEW_WORDS, "words_new") + signs(world.WORDS, "words_old") + objects


def evaluate(adapter, arm: str, settings: Settings, probes) -> list[dict]:
    from harness.toyworld.probes.quality import generated_accuracy

    rows = generated_accuracy(adapter, prompts(settings), list(settings.seeds), probes)
    return [{"arm": arm, **r} for r in rows]


def run(out: Path, settings: Settings, candidates: str | None = None, log=print) -> dict:
    from harness.finetune import attach_lora, load_finetune, run_finetune
    from harness.models import load_model
    from harness.toyworld.probes import load_probes

    out.mkdir(parents=True, exist_ok=True)
    probes = load_probes(PROBES)
    began = time.perf_counter()
    rows = evaluate(load_model("toyworld", "cpu"), "base", settings, probes)
    arms: dict[str, dict] = {"base": {"trainable_params": 0, "seconds": 0.0, "sites": []}}
    for arm, spec in arm_specs(settings, candidates).items():
        adapter_dir = out / "adapters" / arm
        manifest = run_finetune(load_finetune(spec), adapter_dir, progress=False) \
            if not (adapter_dir / "manifest.json").is_file() else json.loads((adapter_dir / "manifest.json").read_text())
        log(f"{arm}: {manifest['trainable_params']:,} parameters, {manifest['seconds']:.0f} s, "
            f"final loss {manifest['final_loss']:.4f}, sites {[s['label'] for s in manifest['sites']]}")
        model = load_model("toyworld", "cpu")
        attach_lora(model, adapter_dir)
        rows += evaluate(model, arm, settings, probes)
        arms[arm] = {k: manifest[k] for k in ("lora_id", "trainable_params", "trainable_share", "seconds", "final_loss")}
        arms[arm]["sites"] = [s["label"] for s in manifest["sites"]]
    summary = summarize(rows, arms, settings)
    summary["total_seconds"] = round(time.perf_counter() - began, 1)
    write(out, rows, summary)
    return summary


def summarize(rows: list[dict], arms: dict[str, dict], settings: Settings) -> dict:
    """Per arm and measure: accuracy [95% CI] over prompts, n prompts; per baseline arm the paired
    difference to the localized arm (same prompts and seeds, resampled together)."""
    table: dict[str, dict] = {}
    for arm in arms:
        table[arm] = {}
        for name, split, attribute in MEASURES:
            chosen = [r for r in rows if r["arm"] == arm and r["split"] == split and r["attribute"] == attribute]
            ok = np.array([r["ok"] for r in chosen])
            clusters = np.array([r["prompt"] for r in chosen])
            mean, lo, hi = mean_ci(ok, clusters, settings.n_boot)
            entry = {"accuracy": mean, "ci": [lo, hi], "prompts": len(set(clusters)), "images": len(ok)}
            if arm not in ("localized", "base") and "localized" in arms:
                ref = {(r["prompt"], r["seed"]): r["ok"] for r in rows if r["arm"] == "localized"
                       and r["split"] == split and r["attribute"] == attribute}
                diff = np.array([r["ok"] - ref[(r["prompt"], r["seed"])] for r in chosen])
                d, dlo, dhi = mean_ci(diff, clusters, settings.n_boot)
                entry["minus_localized"] = {"difference": d, "ci": [dlo, dhi]}
            table[arm][name] = entry
    return {"settings": settings.__dict__ | {"seeds": list(settings.seeds)}, "new_words": list(NEW_WORDS),
            "arms": arms, "accuracy": table}


def report(summary: dict) -> str:
    s = summary["settings"]
    lines = [f"Toyworld, {len(summary['new_words'])} new words ({', '.join(summary['new_words'])}): LoRA rank {s['rank']}, "
             f"lr {s['lr']}, batch {s['batch']}, {s['steps']} steps on {s['images']} renders of signs, seed {s['seed']}; "
             f"evaluated on {len(s['seeds'])} seeds per prompt. Accuracy = share of images whose probe reading is the "
             "prompt's label, 95% cluster-bootstrap interval over prompts; Δ = arm − localized, paired.", "",
             "| arm | layers | trainable params (share of UNet) | train s | " +
             " | ".join(m for m, _, _ in MEASURES) + " |",
             "|---|---|---|---|" + "---|" * len(MEASURES)]
    for arm, info in summary["arms"].items():
        cells = []
        for name, _, _ in MEASURES:
            e = summary["accuracy"][arm][name]
            cell = f"{e['accuracy']:.2f} [{e['ci'][0]:.2f}, {e['ci'][1]:.2f}]"
            if "minus_localized" in e:
                d = e["minus_localized"]
                cell += f" (Δ {d['difference']:+.2f} [{d['ci'][0]:+.2f}, {d['ci'][1]:+.2f}])"
            cells.append(cell)
        share = f"{info['trainable_params']:,} ({100 * info.get('trainable_share', 0):.2f}%)"
        layers = ", ".join(info["sites"]) if len(info["sites"]) <= 2 else f"{len(info['sites'])} attention layers"
        lines.append(f"| {arm} | {layers or '-'} | {share} | {info['seconds']:.0f} | " + " | ".join(cells) + " |")
    first = summary["accuracy"]["base"]
    lines += ["", "Prompts: " + ", ".join(f"{m} {first[m]['prompts']}" for m, _, _ in MEASURES) + "."]
    return "\n".join(lines)


def findings(summary: dict) -> list[str]:
    """One sentence per baseline arm, read off the paired intervals (not typed by hand)."""
    out = []
    acc = summary["accuracy"]
    for arm in ("all_attention", "random"):
        if arm not in acc:
            continue
        parts = []
        for name, _, _ in MEASURES:
            d = acc[arm][name].get("minus_localized")
            if d is None:
                continue
            lo, hi = d["ci"]
            verdict = "higher" if lo > 0 else "lower" if hi < 0 else "not separated"
            parts.append(f"{name} {verdict} ({d['difference']:+.2f} [{lo:+.2f}, {hi:+.2f}])")
        out.append(f"- {arm} vs localized: " + "; ".join(parts) + ".")
    return out


def card_section(summaries: list[dict]) -> str:
    """The model card's and README's section: the command, then per recorded run (by steps) the settings, the
    table, the findings and the time."""
    lines = [
        "## Teaching new words with LoRA (P3's application)", "",
        "`python -m analysis.lora_newwords --out runs/lora-newwords --record` (`--steps N` for another length; the "
        "localized arm alone: `loco finetune jobs/finetune/toyworld_new_words.yaml --out DIR`). P3 reports that a LoRA "
        "on only the localized text layers improves rendered text and preserves the rest better than a LoRA on all "
        "layers (docs/methods.md §3.8). Here: LoRA on `cross_attn#1` (attention patching's `word` layer) vs every attention "
        "layer vs one random cross-attention layer, same data and steps; read by probes retrained to read the new "
        f"words too (`{PROBES.name}`). Every recorded run, shortest first:"]
    for summary in sorted(summaries, key=lambda s: s["settings"]["steps"]):
        lines += ["", f"### {summary['settings']['steps']} steps", "", report(summary), "", *findings(summary), "",
                  f"This run took {summary['total_seconds'] / 60:.1f} min on this shared 2-core CPU (one thread, "
                  "other jobs running; training seconds per arm in the table)."]
    lines += ["", "`tests/integration/test_lora_newwords.py` runs a 2-step version in CI."]
    return "\n".join(lines)


def recorded(keep: Path = RECORD) -> list[dict]:
    """The recorded runs (one per number of steps)."""
    return json.loads(keep.read_text())["runs"] if keep.is_file() else []


def record(summary: dict, card: Path = RECORD.parent / "MODEL_CARD.md", readme: Path = README, keep: Path = RECORD) -> None:
    """Keep the run's summary beside the weights with the other recorded runs (a run of the same steps is
    replaced; `analysis.toyworld_card` reads them) and write the section into the model card and the README,
    between `MARKER` lines (appended to the card when absent)."""
    runs = [r for r in recorded(keep) if r["settings"]["steps"] != summary["settings"]["steps"]] + [summary]
    keep.write_text(json.dumps({"runs": runs}, indent=2) + "\n")
    section = card_section(runs)
    for path, deeper in ((card, ""), (readme, "#")):  # the README nests the section one level deeper
        text = path.read_text()
        body = "\n".join(deeper + line if line.startswith("#") else line for line in section.splitlines())
        block = f"{MARKER}\n{body}\n{MARKER}"
        if text.count(MARKER) >= 2:
            start, end = text.index(MARKER), text.index(MARKER, text.index(MARKER) + 1) + len(MARKER)
            text = text[:start] + block + text[end:]
        elif MARKER in text:
            text = text.replace(MARKER, block)
        else:
            text = text.rstrip("\n") + "\n\n" + block + "\n"
        path.write_text(text)


def write(out: Path, rows: list[dict], summary: dict) -> None:
    with (out / "rows.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    (out / "report.md").write_text(report(summary) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m analysis.lora_newwords", description=__doc__.split("\n")[0])
    parser.add_argument("--out", required=True, help="output folder (adapters/, rows.csv, summary.json, report.md)")
    parser.add_argument("--short", action="store_true", help="the CI-sized run (a few steps; checks the pipeline only)")
    parser.add_argument("--steps", type=int, help="override the steps of every arm")
    parser.add_argument("--candidates", help="a `loco candidates` file whose `word` set is the localized arm "
                        "(default: cross_attn#1, the model card's attention-patching result)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--record", action="store_true", help=f"keep the summary as {RECORD.name} beside the weights and "
                        "write the section into MODEL_CARD.md and README.md")
    parser.add_argument("--from-summary", help="record an earlier run's summary.json instead of running")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    settings = SHORT if args.short else Settings()
    if args.steps:
        from dataclasses import replace

        settings = replace(settings, steps=args.steps)
    if args.from_summary:
        summary = json.loads(Path(args.from_summary).read_text())
    else:
        summary = run(Path(args.out), settings, args.candidates)
    if args.record:
        record(summary)
    print(report(summary))
    print(f"total {summary['total_seconds']:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
