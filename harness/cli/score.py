"""`loco score IMAGE...`: score existing images with the sweep's scorers (CLIP, OCR, SSIM, ...)."""

from __future__ import annotations

import json

from harness.errors import UserError

HELP = "score existing images with loco's scorers (CLIP, OCR, SSIM, ...)"
DESCRIPTION = ("Score images from any source with the same scorers a sweep uses. Model weights are read locally "
    "only (see README: Scorers).")


def add_arguments(parser) -> None:
    parser.add_argument("images", nargs="+", metavar="IMAGE", help="image files")
    parser.add_argument("--metrics", default="clip_score,ocr", help="comma-separated metrics (default clip_score,ocr)")
    parser.add_argument("--text", help="the text the image should render (OCR metrics *_text)")
    parser.add_argument("--prompt", help="the prompt the image was made from (CLIP *_prompt; default: --text)")
    parser.add_argument("--target", help="a second prompt to compare with (CLIP *_target)")
    parser.add_argument("--target-text", help="a second text to compare OCR with (*_target)")
    parser.add_argument("--reference", help="reference image for mse, psnr, ssim, lpips, image_notext, clip_image")
    parser.add_argument("--option", action="append", metavar="SCORER.KEY=VALUE",
                        help="scorer option, e.g. clip.weights=/path/ViT-B-32.safetensors or clip.allow_random=true")
    parser.add_argument("--json", action="store_true", help="print a JSON list of rows")


def run(args) -> int:
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
