"""The report's image grids, every image inlined as a data URI (the report opens offline).

* a sweep's grid: the clean image, the corrupted or target image and each variant's image for the first
  prompts (first seed) of a run saved with `save_images`;
* causal tracing's grid (P1 Fig. 1): per attribute, clean / corrupted / restored at the top states — the
  candidate set, or the three strongest states when it is empty (then labelled so) — for its first prompts;
* an edit's before/after grid: the original and the edited model's image of each prompt of `loco
  edit-eval` (its images/ folder), by prompt set (efficacy, generalization, specificity).
"""

from __future__ import annotations

import base64
import html
from pathlib import Path

import duckdb

from analysis.effects import GroupRanking
from analysis.runs import Run

ROLE_ORDER = {"control": 0, "target": 1, "corrupted": 1, "variant": 2}


def figure(path: Path, label: str) -> str:
    """One captioned image, or "" when the file is missing."""
    if not path.is_file():
        return ""
    data = base64.b64encode(path.read_bytes()).decode()
    return (f'<figure><img alt="{html.escape(label)}" src="data:image/png;base64,{data}">'
            f"<figcaption>{html.escape(label)}</figcaption></figure>")


def _rows(run: Run) -> list[tuple]:
    """(prompt_id, prompt, role, variant, unit_id, row_id, image_path, site_index, attribute) of the first seed
    (and first noise draw), one per image."""
    columns = _columns(run)
    draw = "coalesce(noise_draw, 0) = 0" if "noise_draw" in columns else "true"
    attribute = "coalesce(attribute, '')" if "attribute" in columns else "''"
    return duckdb.connect().execute(
        f"SELECT prompt_id, any_value(prompt), role, variant, unit_id, row_id, image_path, site_index, {attribute} "
        "FROM read_parquet($g, hive_partitioning = true, union_by_name = true) "
        f"WHERE {draw} AND seed = (SELECT min(seed) FROM read_parquet($g, hive_partitioning = true, "
        "union_by_name = true)) GROUP BY ALL ORDER BY prompt_id", {"g": run.results_glob}).fetchall()


def _columns(run: Run) -> list[str]:
    return [r[0] for r in duckdb.connect().execute(
        "DESCRIBE SELECT * FROM read_parquet($g, hive_partitioning = true, union_by_name = true)",
        {"g": run.results_glob}).fetchall()]


def _image(run: Run, row: tuple, label: str) -> str:
    _, _, _, _, unit_id, row_id, image_path, *_ = row
    return figure(run.path / (image_path or f"images/{unit_id}/{row_id}.png"), label)


def _label(role: str, variant: str) -> str:
    return "clean" if role == "control" else (role if role != "variant" else variant)


def sweep_grid(run: Run, n_prompts: int = 2, max_variants: int = 24) -> str:
    """Clean, corrupted/target and each variant's image for the first prompts (first seed) of the run."""
    if not (run.path / "images").is_dir():
        return ""
    rows = _rows(run)
    parts = []
    for pid in list(dict.fromkeys(r[0] for r in rows))[:n_prompts]:
        mine = sorted((r for r in rows if r[0] == pid), key=lambda r: (ROLE_ORDER.get(r[2], 3), r[7] or 0, r[3]))
        figures = "".join(_image(run, r, _label(r[2], r[3])) for r in mine[: max_variants + 2])
        if figures:
            parts.append(f"<h4>{html.escape(pid)}: “{html.escape(mine[0][1] or '')}”</h4><div class=grid>{figures}</div>")
    return "<h3>Images</h3>" + "".join(parts) if parts else ""


def trace_grid(run: Run, groups: list[GroupRanking], n_prompts: int = 2, top: int = 3) -> str:
    """P1's picture per attribute: clean, corrupted and restored at the top states for the first prompts."""
    if not (run.path / "images").is_dir():
        return ""
    rows = _rows(run)
    parts = []
    for g in (g for g in groups if not g.concept):
        chosen = [v for v in g.variants if v.selected]
        note = "the candidate set" if chosen else f"no candidates ({g.status}); the {top} strongest states"
        states = {v.variant: v for v in (chosen or g.variants[:top])}
        mine = [r for r in rows if r[8] == g.attribute]
        blocks = []
        for pid in list(dict.fromkeys(r[0] for r in mine))[:n_prompts]:
            of_prompt = {(r[2], r[3]): r for r in mine if r[0] == pid}
            cells = [_image(run, of_prompt[key], label) for key, label in
                     ((("control", "control"), "clean"), (("corrupted", "corrupted"), "corrupted")) if key in of_prompt]
            cells += [_image(run, of_prompt[("variant", name)], f"restored {name} ({v.effect:+.3g})")
                      for name, v in states.items() if ("variant", name) in of_prompt]
            prompt = next(iter(of_prompt.values()))[1] or ""
            blocks.append(f"<h4>{html.escape(pid)}: “{html.escape(prompt)}”</h4><div class=grid>{''.join(cells)}</div>")
        if blocks:
            parts.append(f"<h3>Causal tracing · {html.escape(g.label)}: clean, corrupted, restored at {note}</h3>"
                         + "".join(blocks))
    return "".join(parts)


def edit_grid(edit_eval: Path, per_set: int = 3) -> str:
    """Original → edited images of the first prompts of each prompt set of a `loco edit-eval` directory."""
    results = edit_eval / "results.parquet"
    if not (edit_eval / "images").is_dir() or not results.is_file():
        return ""
    rows = duckdb.connect().execute(
        "SELECT \"set\", prompt, image_original, image_edited FROM read_parquet($f) "
        "WHERE image_original IS NOT NULL ORDER BY \"set\", prompt", {"f": str(results)}).fetchall()
    parts = []
    for name in dict.fromkeys(r[0] for r in rows):
        cells = []
        for _, prompt, before, after in [r for r in rows if r[0] == name][:per_set]:
            cells.append(figure(edit_eval / before, f"{prompt} · original") + figure(edit_eval / after, "edited"))
        parts.append(f"<h4>{html.escape(name)}</h4><div class=grid>{''.join(cells)}</div>")
    return "<h3>Before / after</h3>" + "".join(parts) if parts else ""
