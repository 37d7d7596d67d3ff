"""Evaluate an edit: the same prompts and seeds through the original and the edited model.

Three prompt sets, as the editing papers evaluate (docs/methods.md §1.4, §7.3 step 4, §11.1):

* ``efficacy`` — the prompts the edit was fitted on (its augmentations): they should move;
* ``generalization`` — other prompts with the concept (the concept-ablation evaluation prompts when the
  concept has them): they should move too;
* ``specificity`` — the concept's hard negatives (other artists / similar objects) and unrelated prompts:
  they should stay put.

Per (prompt, seed) one row with the edit's id (the first seed's original and edited images are saved
under ``images/`` and named in ``image_original`` / ``image_edited``, for `loco report`'s before/after
grid): image distance of the edited image to the original's (``mse``, ``psnr``, ``ssim`` — P3's
definitions; 0 / 148.13 dB / 1 = untouched), ``embed_shift`` (relative change of the prompt
embeddings, where DiffQuickFix acts) and ``kv_shift`` (relative change of the edited cross-attention
projections' output on the prompt's tokens, where LocoEdit/UCE/TIME act). Semantic
scores come from the scorers named by ``metrics`` (``--metrics probe`` on the toyworld model: does the
edited "red" prompt still draw red?): each is applied to both images, the edited one's columns under
their own names and the original's with the suffix ``_original``. With a CLIP checkpoint (`clip=`, CLI
``--clip-weights``; `harness.edit.semantic`) the rows also say whether the image moved away from the
concept's prompt and toward the target's in CLIP space. Rows carry `edit_id` so DuckDB joins them with
sweeps.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import torch

from harness.edit.semantic import COLUMNS as SEMANTIC  # CLIP columns, with a CLIP checkpoint
from harness.errors import UserError

SETS = ("efficacy", "generalization", "specificity")
SHIFTS = ("mse", "ssim", "embed_shift", "kv_shift")  # always in the per-set summary: image and text-side shifts
PER_ATTRIBUTE = re.compile(r"probe_(shape|color|background|word)_")  # summarized by probe_p_prompt etc. when printed
UNRELATED = ["a photo of a dog on a beach", "a bowl of fruit on a wooden table", "a city street at night"]


EDIT_KEYS = ("edit_id", "method", "spec", "source_model")  # what every `loco edit` manifest holds


def read_manifest(edit_dir: Path) -> dict:
    """The manifest `loco edit` wrote into `edit_dir`; one line when the folder is something else (a
    sweep's run directory, another tool's folder, a damaged manifest)."""
    from harness.results.integrity import read_json

    for path in (edit_dir / "loco_edit" / "manifest.json", edit_dir / "manifest.json"):
        if path.is_file():
            manifest = read_json(path)
            if "job_fingerprint" in manifest:
                raise UserError(f"edit-eval: '{edit_dir}' is a sweep's run directory (loco sweep), not an output "
                                "directory of loco edit; pass the --out of `loco edit`")
            missing = [k for k in EDIT_KEYS if k not in manifest]
            if missing:
                raise UserError(f"edit-eval: {path} is not a manifest of loco edit (no {', '.join(missing)}); "
                                "pass the --out of `loco edit`")
            return manifest
    raise UserError(f"edit-eval: '{edit_dir}' is not an output directory of loco edit (no manifest.json)")


def default_prompts(manifest: dict) -> list[dict]:
    """Efficacy / generalization / specificity rows built from the edit spec and the concept-ablation data."""
    from harness import datasets
    from harness.edit.spec import EditSpec

    spec = EditSpec.model_validate(manifest["spec"])
    table = datasets.concepts()
    rows = []
    for edit in spec.edits:
        for template in spec.augmentations():
            rows.append({"prompt": template.format(edit.concept), "set": "efficacy", "concept": edit.concept,
                         "target": template.format(edit.target)})
        if edit.concept in table:
            rows += [{"prompt": r["prompt"], "set": "generalization", "concept": edit.concept, "target": r["target"]}
                     for r in datasets.concept_prompts(edit.concept)[:4]]
            for negative in table[edit.concept]["hard_negative"][:3]:
                if negative in table:
                    rows += [{"prompt": r["prompt"], "set": "specificity", "concept": negative}
                             for r in datasets.concept_prompts(negative)[:2]]
    rows += [{"prompt": p, "set": "specificity", "concept": None} for p in UNRELATED]
    return rows


def read_prompts(path: str) -> list[dict]:
    from harness.jobs import read_prompt_file

    rows = read_prompt_file(Path(path))
    for i, row in enumerate(rows):
        if not row.get("prompt"):
            raise UserError(f"--prompts: row {i}: prompt is required")
        if row.get("set") not in SETS:
            raise UserError(f"--prompts: row {i}: set must be one of {', '.join(SETS)}, got {row.get('set')!r}")
    return rows


def load_pair(edit_dir: Path, manifest: dict):
    """(original adapter, edited adapter, edited projection names)."""
    from harness.edit.install import install_edit
    from harness.models import load_model

    original = load_model(manifest["source_model"], "cpu" if not torch.cuda.is_available() else "auto")
    if "parameters" in manifest:
        return original, load_model(str(edit_dir), original.info.device), manifest["parameters"]
    edited = load_model(manifest["source_model"], original.info.device)
    install_edit(edited.pipe, edit_dir)
    return original, edited, []


@torch.no_grad()
def shifts(original, edited, params: list[str], prompt: str) -> tuple[float, float | None]:
    from harness.edit.weights import parameter

    c0, c1 = original.encode([prompt]), edited.encode([prompt])
    e0, e1 = c0["prompt_embeds"][0], c1["prompt_embeds"][0]
    embed = float((e1 - e0).norm() / e0.norm())
    # the K/V projections read `kv_input` (PixArt/SANA: the caption projection of the embeddings)
    e0, e1 = original.kv_input(c0)[0], edited.kv_input(c1)[0]
    kv = [float((e1 @ parameter(edited, n).T - e0 @ parameter(original, n).T).norm()
                / (e0 @ parameter(original, n).T).norm())
          for n in params if n.startswith(original.denoiser_name + ".")]
    return embed, (float(np.mean(kv)) if kv else None)


def semantic_scores(scorers: list, images: list[np.ndarray], row: dict) -> dict[str, list]:
    """Scorer columns of the edited images (own names) and of the originals (``<column>_original``)."""
    from harness.metrics import ScoreBatch, score_all

    n = len(images[0])
    columns: dict[str, list] = {}
    for suffix, batch_images in (("_original", images[0]), ("", images[1])):
        batch = ScoreBatch(images=batch_images, prompts=[row["prompt"]] * n, targets=[row.get("target")] * n,
                           attributes=[row.get("attribute")] * n)
        columns |= {f"{k}{suffix}": v for k, v in score_all(scorers, batch).items()}
    return columns


def evaluate_edit(edit: str | Path, prompts: str | None, out: str | Path, seeds: str = "0", steps: int | None = None,
                  force: bool = False, metrics: list[str] | None = None, clip: dict | None = None) -> str:
    """Rows per (prompt, seed) into `out`; `metrics` scores both models' images; with `clip` (the
    `scorers.clip` options: weights, model, ...) also the CLIP efficacy columns of `harness.edit.semantic`."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    from PIL import Image

    from harness.edit.run import check_out
    from harness.jobs import parse_index
    from harness.metrics.image import mse, psnr, ssim

    edit_dir, out = Path(edit), Path(out)
    manifest = read_manifest(edit_dir)
    rows = read_prompts(prompts) if prompts else default_prompts(manifest)
    try:
        seed_list = parse_index(seeds)
    except ValueError as exc:
        raise UserError(f"--seeds: {exc}") from None
    scorers = []
    if metrics:
        from harness.metrics import build_scorers

        needs_reference = [m for m in metrics if build_scorers([m], instantiate=False)[0].needs_reference]
        if needs_reference:
            raise UserError(f"--metrics: {', '.join(needs_reference)} compare with an un-intervened image; the edit's "
                            "image distances (mse, psnr, ssim to the original model's image) are always written")
        scorers = build_scorers(metrics)
    check_out(out, force)
    encoder = None
    if clip is not None:
        from harness.edit.semantic import clip_encoder, semantic_shift

        encoder = clip_encoder(clip)  # before the models: a missing CLIP checkpoint fails in a second
    # As a sweep's workers: batch-independent kernels and one intra-op thread on CPU (two OpenMP threads on a
    # shared 2-core machine made the evaluation's small batches 12x slower: 6 min 44 s for 15 rows, 32 s with one).
    from harness.models import set_reproducible

    set_reproducible(True, cpu=not torch.cuda.is_available())
    original, edited, params = load_pair(edit_dir, manifest)
    d = original.defaults
    records, pictures = [], {}
    for k, row in enumerate(rows):
        images = []
        for model in (original, edited):
            cond = model.encode([row["prompt"]] * len(seed_list))
            negative = model.encode_negative(len(seed_list)) if model.cfg_batch(d.guidance_scale) else None
            images.append(model.generate(cond, negative, seed_list, steps or d.steps, d.guidance_scale, d.height,
                                         d.width))
        m = mse(images[1], images[0])
        s = ssim(images[1], images[0])
        embed, kv = shifts(original, edited, params, row["prompt"])
        semantic = semantic_scores(scorers, images, row) if scorers else {}
        if encoder is not None:
            semantic |= semantic_shift(encoder, images[0], images[1], row["prompt"], row.get("target"))
        names = {"image_original": f"images/{k:03d}_original.png", "image_edited": f"images/{k:03d}_edited.png"}
        pictures |= {names["image_original"]: images[0][0], names["image_edited"]: images[1][0]}
        for i, seed in enumerate(seed_list):
            records.append({"edit_id": manifest["edit_id"], "method": manifest["method"], "set": row["set"],
                            "prompt": row["prompt"], "concept": row.get("concept"), "target": row.get("target"),
                            "seed": seed, "mse": float(m[i]), "psnr": float(psnr(m[i:i + 1])[0]),
                            "ssim": float(s[i]), "embed_shift": embed, "kv_shift": kv,
                            "model_id": original.info.model_id, "edited_model": str(edit_dir),
                            "attribute": row.get("attribute"), **(names if i == 0 else dict.fromkeys(names)),
                            **{c: v[i] for c, v in semantic.items()}})
    if out.exists() and force:
        shutil.rmtree(out)
    (out / "images").mkdir(parents=True, exist_ok=True)
    for name, image in pictures.items():
        Image.fromarray(np.asarray(image)).save(out / name, format="PNG")
    pq.write_table(pa.Table.from_pylist(records), out / "results.parquet")
    summary = {}
    for name in SETS:
        chosen = [r for r in records if r["set"] == name]
        if chosen:
            scored = [k for k in chosen[0] if k.endswith("_original") and k != "image_original"]  # scorer columns
            keys = [*SHIFTS, *(k for k in SEMANTIC if k in chosen[0])]
            keys += [c for k in scored for c in (k.removesuffix("_original"), k)]
            means = {k: [r[k] for r in chosen if isinstance(r.get(k), (int, float))] for k in keys}
            summary[name] = {k: float(np.mean(v)) if v else float("nan") for k, v in means.items()
                             if v or k in SHIFTS} | {"rows": len(chosen)}
    (out / "summary.json").write_text(json.dumps({"edit_id": manifest["edit_id"], "sets": summary}, indent=2))
    lines = [f"{manifest['edit_id']}: {len(records)} rows → {out / 'results.parquet'}"]
    for name, s in summary.items():  # the image and K/V shifts, and each scorer's per-row headline columns
        shown = [f"{m}={s[m]:.4g}" for m in (*SHIFTS, *SEMANTIC, "rows") if m in s]
        shown += [f"{m}={s[m + '_original']:.3g}→{s[m]:.3g}" for m in s if m.endswith(("_prompt", "_target"))
                  and m + "_original" in s and not PER_ATTRIBUTE.match(m)]
        lines.append(f"  {name:<15} " + "  ".join(shown))
    return "\n".join(lines)
