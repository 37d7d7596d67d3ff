"""`loco`: the command-line tool.

    loco sweep [JOB.yaml] [--out DIR]    run a sweep (no job file: the embedded default on a tiny model)
    loco rank RUN_DIR [--metric M]       rank sites by effect with bootstrap CIs (DuckDB over Parquet)
    loco sites MODEL [--kind K]          print a model's site table
    loco score IMAGE... --text T         score existing images (CLIP, OCR, SSIM, ...)
    loco prompts simplebench|...         write a paper benchmark's prompt rows

User mistakes (a bad job key, an unknown site, a model that is not cached) end with one line on stderr
and exit status 2; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import warnings
from pathlib import Path

from harness.errors import UserError


def _quiet() -> None:
    """Keep library chatter (diffusers' dtype notes, Ray's start-up INFO lines) off the terminal."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("RAY_DEDUP_LOGS", "1")
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=UserWarning)
    for name in ("diffusers", "transformers", "ray", "ray.runtime_env", "ray._private"):
        logging.getLogger(name).setLevel(logging.ERROR)
    from diffusers.utils import logging as dlog
    from transformers.utils import logging as tlog

    dlog.set_verbosity_error()
    tlog.set_verbosity_error()


def cmd_sweep(args) -> int:
    from analysis.rank import RankError, format_ranking, rank
    from harness.jobs import DEFAULT_JOB, load_job
    from harness.sweep import run_sweep

    job = load_job(Path(args.job) if args.job else DEFAULT_JOB, overrides=args.overrides or [])
    if args.dry_run:
        return _dry_run(job)
    backend = "local" if args.local else None
    summary = run_sweep(job, out=args.out, force=args.force, backend=backend)
    print(f"{job.name}: {summary.rows_written} rows from {summary.units_run} units "
          f"({summary.units_skipped} already done) in {summary.seconds:.1f} s → {summary.run_dir}")
    try:
        print(format_ranking(rank(summary.run_dir, n_boot=500), top=5))
    except RankError as exc:  # the sweep itself succeeded; say why there is no table
        print(f"no ranking: {exc}")
        return 0
    print(f"full ranking: loco rank {summary.run_dir}")
    return 0


def _dry_run(job) -> int:
    from harness.execution import plan_units
    from harness.methods import plan_variants, references
    from harness.models import load_model

    adapter = load_model(job.model, job.device, job.dtype)
    variants = plan_variants(job, adapter.sites)
    units = plan_units(job, variants)
    rows = len(job.prompts) * len(job.seeds) * (len(variants) + len(references(job)))
    print(f"{job.name}: {job.method} on {adapter.info.model_id} ({adapter.arch}); {len(variants)} variants × "
          f"{len(job.prompts)} prompts × {len(job.seeds)} seeds = {rows} images in {len(units)} units")
    for v in variants[:10]:
        print(f"  {v.label:<24} {v.site}")
    if len(variants) > 10:
        print(f"  ... {len(variants) - 10} more")
    return 0


def cmd_rank(args) -> int:
    from analysis.rank import format_ranking, rank

    ranking = rank(args.run_dir, metric=args.metric, order=args.order, n_boot=args.bootstrap,
                   aggregate=args.aggregate)
    print(ranking.to_json() if args.json else format_ranking(ranking, top=args.top))
    return 0


def cmd_sites(args) -> int:
    from harness.models import load_model
    from harness.sites import SiteError

    adapter = load_model(args.model, args.device, "auto")
    table = adapter.sites
    if args.kind and args.kind not in table.kinds():
        raise SiteError(f"--kind: this model has no '{args.kind}' sites; it has {', '.join(table.kinds())}")
    if args.json:
        records = [r for r in table.to_records() if not args.kind or r["kind"] == args.kind]
        print(json.dumps(records, indent=2))
    else:
        print(table.format(args.kind))
    return 0


def cmd_prompts(args) -> int:
    import csv

    from harness import datasets

    if args.bench == "simplebench":
        rows = datasets.simplebench_pairs(args.bucket, args.seed)
    elif args.bench == "creativebench":
        rows = datasets.creativebench_pairs(args.bucket, args.seed)
    else:
        if not args.concept:
            raise UserError("--concept: required for 'concept' (e.g. --concept 'van gogh')")
        rows = datasets.concept_prompts(args.concept)
    rows = rows[: args.limit] if args.limit else rows
    fields = list(dict.fromkeys(k for r in rows for k in r))
    def write(handle) -> None:
        writer = csv.DictWriter(handle, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)

    if args.out:
        with open(args.out, "w", newline="", encoding="utf-8") as handle:
            write(handle)
        print(f"wrote {len(rows)} prompt rows to {args.out}", file=sys.stderr)
    else:
        write(sys.stdout)
    return 0


def cmd_score(args) -> int:
    """Score existing images with the sweep's scorers: one row per image."""
    import numpy as np
    import yaml
    from PIL import Image, UnidentifiedImageError

    from harness.metrics import ScoreBatch, build_scorers, check_scorer_names, score_all

    metrics = [m.strip() for m in args.metrics.split(",") if m.strip()]
    options: dict[str, dict] = {}
    for pair in args.option or []:
        key, sep, value = pair.partition("=")
        scorer, dot, name = key.partition(".")
        if not sep or not dot:
            raise UserError(f"--option: expected SCORER.KEY=VALUE (e.g. clip.allow_random=true), got '{pair}'")
        try:
            options.setdefault(scorer, {})[name] = yaml.safe_load(value)
        except yaml.YAMLError:
            raise UserError(f"--option {key}: value '{value}' is not valid YAML") from None
    check_scorer_names(options, where="--option")

    def load(path: str) -> np.ndarray:
        try:
            return np.asarray(Image.open(path).convert("RGB"))
        except FileNotFoundError:
            raise UserError(f"image '{path}' does not exist") from None
        except UnidentifiedImageError:
            raise UserError(f"'{path}' is not an image file") from None

    # Every input is checked before any scorer model is loaded.
    classes = build_scorers(metrics, instantiate=False)
    reference = load(args.reference) if args.reference else None
    images = [load(path) for path in args.images]
    needs_reference = sorted(m for cls in classes if cls.needs_reference for m in cls.metrics if m in metrics)
    if needs_reference and reference is None:
        raise UserError(f"--reference: metrics {', '.join(needs_reference)} compare with a reference image")
    for path, image in zip(args.images, images):
        if reference is not None and reference.shape != image.shape:
            raise UserError(f"--reference: {args.reference} is {reference.shape[1]}×{reference.shape[0]}, "
                            f"{path} is {image.shape[1]}×{image.shape[0]}")
    scorers = build_scorers(metrics, options)
    records = []
    for path, image in zip(args.images, images):
        batch = ScoreBatch(images=image[None], references=None if reference is None else reference[None],
                           prompts=[args.prompt or args.text], targets=[args.target],
                           texts=[args.text], target_texts=[args.target_text])
        columns = score_all(scorers, batch)
        records.append({"image": path, **{k: v[0] for k, v in columns.items()}})
    if args.json:
        print(json.dumps(records, indent=2, default=float))
        return 0
    for record in records:
        print(record["image"])
        for key, value in record.items():
            if key != "image":
                shown = f"{value:.4f}" if isinstance(value, float) else repr(value)
                print(f"  {key:<24} {shown}")
    return 0


def _damaged_file(exc: Exception, args) -> UserError | None:
    """Whether `exc` (from DuckDB or pyarrow, in any verb) is a damaged file of the run(s) being read."""
    from harness.results.integrity import explain_read_error

    dirs = [getattr(args, "run_dir", None), *(getattr(args, "run_dirs", None) or []), getattr(args, "out", None)]
    parts = [p for d in dirs if d for p in sorted(Path(d).glob("results/**/*.parquet"))]
    return explain_read_error(exc, parts)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="loco", description="Localize and edit knowledge in text-to-image "
                                     "diffusion models: layer-by-layer intervention sweeps on Ray.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("sweep", help="run an intervention sweep and write per-row results to Parquet",
                       description="Run the sweep a job file describes (without one: the embedded default, a "
                       "LocoGen sweep on the built-in tiny SD1.x model). Finished units are kept: running the "
                       "same job into the same --out resumes it.")
    p.add_argument("job", nargs="?", help="job YAML file (default: the embedded default job)")
    p.add_argument("--out", help="run directory (default: runs/<job name>)")
    p.add_argument("--force", action="store_true", help="replace a run directory that holds another job")
    p.add_argument("--local", action="store_true", help="run in this process instead of on Ray")
    p.add_argument("--set", dest="overrides", action="append", metavar="KEY=VALUE",
                   help="override a job key (dotted keys, YAML values), e.g. --set model=tiny:sdxl")
    p.add_argument("--dry-run", action="store_true", help="validate the job and print the plan; generate nothing")
    p.set_defaults(func=cmd_sweep)

    p = sub.add_parser("rank", help="rank sites by effect with bootstrap confidence intervals",
                       description="Mean effect per site (or window) over prompts × seeds, with a percentile "
                       "bootstrap CI, computed with DuckDB over the run's Parquet files.")
    p.add_argument("run_dir", help="a run directory written by `loco sweep`")
    p.add_argument("--metric", help="metric column (default: the method's paper metric if present, else mse, "
                   "else the first metric column)")
    p.add_argument("--order", choices=("asc", "desc"), help="override the sort (default: by effect direction)")
    p.add_argument("--top", type=int, help="show only the first N sites")
    p.add_argument("--aggregate", choices=("mean", "f1_of_means"),
                   help="per-site statistic (default: f1_of_means for OCR F1 columns, as P3; else mean)")
    p.add_argument("--bootstrap", type=int, default=2000, metavar="N", help="bootstrap resamples (default 2000)")
    p.add_argument("--json", action="store_true", help="print a JSON list of {site, rank, mean, ci_low, ci_high, n, ...}")
    p.set_defaults(func=cmd_rank)

    p = sub.add_parser("prompts", help="write a paper benchmark's prompt rows as CSV",
                       description="SimpleBench / CreativeBench (A, B) pairs as P3 builds them (seed 42), or a "
                       "concept-ablation concept's evaluation prompts with LocoGen targets.")
    p.add_argument("bench", choices=("simplebench", "creativebench", "concept"))
    p.add_argument("--bucket", default="top_1000", help="word-frequency bucket: top_1000 (localization split), "
                   "1000_10000, 10000_100000, 100000_plus")
    p.add_argument("--concept", help="concept name for 'concept' (e.g. 'van gogh', 'r2d2')")
    p.add_argument("--seed", type=int, default=42, help="pairing seed (P3: 42)")
    p.add_argument("--limit", type=int, help="keep only the first N rows")
    p.add_argument("--out", help="CSV file to write (default: stdout)")
    p.set_defaults(func=cmd_prompts)

    p = sub.add_parser("score", help="score existing images with loco's scorers (CLIP, OCR, SSIM, ...)",
                       description="Score images from any source with the same scorers a sweep uses. Model "
                       "weights are read locally only (see README: Scorers).")
    p.add_argument("images", nargs="+", help="image files")
    p.add_argument("--metrics", default="clip_score,ocr", help="comma-separated metrics (default clip_score,ocr)")
    p.add_argument("--text", help="the text the image should render (OCR metrics *_text)")
    p.add_argument("--prompt", help="the prompt the image was made from (CLIP *_prompt; default: --text)")
    p.add_argument("--target", help="a second prompt to compare with (CLIP *_target)")
    p.add_argument("--target-text", help="a second text to compare OCR with (*_target)")
    p.add_argument("--reference", help="reference image for mse, psnr, ssim, lpips, image_notext, clip_image")
    p.add_argument("--option", action="append", metavar="SCORER.KEY=VALUE",
                   help="scorer option, e.g. clip.weights=/path/ViT-B-32.safetensors or clip.allow_random=true")
    p.add_argument("--json", action="store_true", help="print a JSON list of rows")
    p.set_defaults(func=cmd_score)

    p = sub.add_parser("sites", help="print a model's intervention sites",
                       description="Every site with its kind, forward-call-order index, name, module type and "
                       "parameter count. MODEL is tiny:sd15|sdxl|if|sd3, a diffusers directory or a cached hub id.")
    p.add_argument("model")
    p.add_argument("--kind", help="only sites of this kind (e.g. cross_attn, joint_attn, resnet, text_mlp)")
    p.add_argument("--device", default="cpu", help="device to load the model on (default cpu)")
    p.add_argument("--json", action="store_true", help="print JSON records")
    p.set_defaults(func=cmd_sites)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _quiet()
    try:
        return args.func(args)
    except UserError as exc:
        print(f"loco: error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # a damaged file of a run (truncated part, ...): one line naming it
        better = _damaged_file(exc, args)
        if better is None:
            raise
        print(f"loco: error: {better}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("loco: interrupted; finished units are kept, run the same command again to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
