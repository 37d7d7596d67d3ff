"""The training report: settings, the loss curve (CSV and PNG), the colour checks along the way, and a
grid of samples per attribute — what `loco toyworld train` leaves beside the model."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from harness.toyworld.world import BACKGROUNDS, COLOR_NAMES, SHAPES, WORDS, object_caption, word_caption


def write_report(out: Path, run, model_cfg, cfg, timings: dict, selfcheck: dict | None = None) -> None:
    """settings.json (model and training settings, timings, the final colour check), loss.csv/png,
    eval.csv (colour checks during training), samples.png (rows: each colour over the shapes, the
    backgrounds, the words)."""
    from harness.toyworld.train import settings

    out.mkdir(parents=True, exist_ok=True)
    record = {**settings(model_cfg, cfg), "timings": timings, "color_check": selfcheck or {}}
    (out / "settings.json").write_text(json.dumps(record, indent=2) + "\n")
    write_csv(out / "loss.csv", run.losses)
    write_csv(out / "eval.csv", run.evals)
    loss_plot(run.losses).save(out / "loss.png")
    samples_grid(run.pipe, seed=cfg.seed).save(out / "samples.png")


def write_csv(path: Path, rows: list[dict]) -> None:
    if not rows:
        path.write_text("")
        return
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def smoothed(values: list[float], window: int = 25) -> np.ndarray:
    v = np.asarray(values, dtype=np.float64)
    if len(v) == 0:
        return v
    kernel = np.ones(min(window, len(v))) / min(window, len(v))
    return np.convolve(v, kernel, mode="valid")


def loss_plot(losses: list[dict], width: int = 480, height: int = 240) -> Image.Image:
    """Training loss (moving average of 25 steps) against step, log-scaled, drawn with PIL."""
    image = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(image)
    y = np.log10(np.maximum(smoothed([r["loss"] for r in losses]), 1e-6))
    margin = 30
    draw.rectangle([margin, 5, width - 5, height - margin], outline="black")
    if len(y) >= 2:
        lo, hi = float(y.min()), float(y.max()) + 1e-9
        xs = margin + np.arange(len(y)) / (len(y) - 1) * (width - 5 - margin)
        ys = 5 + (hi - y) / (hi - lo) * (height - margin - 5)
        draw.line(list(zip(xs.tolist(), ys.tolist())), fill="navy", width=2)
        draw.text((margin + 4, 8), f"loss {10 ** hi:.3f}", fill="black")
        draw.text((margin + 4, height - margin - 14), f"loss {10 ** lo:.3f}", fill="black")
    draw.text((margin, height - margin + 8), f"steps 0..{len(losses)} (loss, 25-step mean, log scale)", fill="black")
    return image


def grid_prompts() -> list[list[str]]:
    """Rows of the samples grid: each colour across the shapes (plain background), each background, each word."""
    rows = [[object_caption(s, c, "plain") for s in SHAPES] for c in COLOR_NAMES]
    rows.append([object_caption("circle", "red", b) for b in BACKGROUNDS])
    rows.append([word_caption(w) for w in WORDS])
    return rows


def samples_grid(pipe, seed: int = 0, scale: int = 3) -> Image.Image:
    from harness.toyworld.selfcheck import generate
    from harness.toyworld.sidecar import INFERENCE

    rows = grid_prompts()
    flat = [p for row in rows for p in row]
    images = generate(pipe, flat, seed, INFERENCE["steps"], INFERENCE["guidance_scale"], INFERENCE["height"])
    cols = max(len(r) for r in rows)
    size = images.shape[1]
    canvas = np.full((len(rows) * (size + 2), cols * (size + 2), 3), 255, np.uint8)
    k = 0
    for i, row in enumerate(rows):
        for j in range(len(row)):
            canvas[i * (size + 2):i * (size + 2) + size, j * (size + 2):j * (size + 2) + size] = images[k]
            k += 1
    return Image.fromarray(canvas).resize((canvas.shape[1] * scale, canvas.shape[0] * scale), Image.NEAREST)
