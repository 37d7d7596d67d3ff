"""The result row: the one place that names its columns, types them, and builds a row from its parts.

Every image a sweep generates becomes one row. The worker (`harness.run.worker`) builds it with
`build_row` from five parts — who made it (`run`: job, model and library provenance), which row it is
(`ids`), what was done (`design`: the variant and its step window, mode, branch, noise), what it was
asked for (`prompt`) and how it was sampled (`sampler`) — plus its timings and its metric values. The
writer (`harness.results.store.to_table`) types the columns from `COLUMNS`; the reader and the SQL
(`analysis/`) name only columns listed here or metric columns (whose names come from the scorers, see
`harness.metrics`). `tests/unit/test_row_schema.py` keeps the three in step.

Metric columns are float64, except the few that hold text (`METRIC_TYPES`).
"""

from __future__ import annotations

import pyarrow as pa

_S, _I, _F = pa.string(), pa.int64(), pa.float64()

RUN = {  # the same for every row a worker writes
    "run_id": _S, "job_name": _S, "job_fingerprint": _S, "method": _S, "edit_id": _S,
    "lora_id": _S,  # the LoRA adapter fused into the model (a job's `lora:`; harness.finetune), else None
    "model_id": _S, "model_arch": _S, "model_revision": _S, "model_fingerprint": _S, "dtype": _S,
    "device": _S, "device_name": _S, "worker": _S, "ray_node": _S, "harness_version": _S, "git_commit": _S,
    "torch_version": _S, "diffusers_version": _S, "transformers_version": _S, "python_version": _S,
    "stage_ii_model": _S, "stage_ii_fingerprint": _S, "safety_checker": _S, "watermarker": _S,
}
IDS = {"unit_id": _S, "row_id": _S, "created_at": _S, "image_path": _S}
DESIGN = {  # the variant: where, when and how the model was intervened on (None on reference rows)
    "role": _S, "variant": _S, "site": _S, "sites": pa.list_(_S), "kind": _S, "site_index": _I,
    "forward_index": _I,  # the site's index among all sites of its component, in forward order (P1's axis)
    "indices": pa.list_(_I), "window_start": _I, "window_size": _I, "step_start": _I, "step_end": _I,
    "steps_patched": _I, "heads": pa.list_(_I), "position": _S, "mode": _S, "branch": _S, "noise_scale": _F,
    "noise_std": pa.list_(_F),  # causal tracing: σ per text encoder (the noise is noise_scale × σ)
    "noise_rule": _S,  # causal tracing: how σ was chosen — "subject" (ROME), "embedding" or "fixed" (a number)
    # causal tracing: which noise draw (0..noise_draws-1; draw d uses noise seed noise_seed + d) a corrupted or
    # restored row used; None on the clean control. Each draw is its own row, so intervals stay over prompts
    # and a prompt's draws are averaged within it; a variant is paired with its prompt's, seed's and draw's
    # corrupted row.
    "noise_draw": _I,
    "restore": _S,  # causal tracing: what a restore copied, "state" or "contribution" (harness.sites)
}
PROMPT = {"prompt_id": _S, "prompt": _S, "target": _S, "attribute": _S, "concept": _S, "text": _S,
          "target_text": _S, "seed": _I}
SAMPLER = {"steps": _I, "guidance_scale": _F, "height": _I, "width": _I,  # height/width: the sampled image
           "scored_stage": _S, "scored_height": _I, "scored_width": _I}  # the image the metrics saw
TIMING = {"gen_seconds": _F, "score_seconds": _F, "batch_rows": _I}

PARTS = {"run": RUN, "ids": IDS, "design": DESIGN, "prompt": PROMPT, "sampler": SAMPLER, "timing": TIMING}
COLUMNS: dict[str, pa.DataType] = {name: dtype for part in PARTS.values() for name, dtype in part.items()}
METRIC_TYPES: dict[str, pa.DataType] = {  # metric columns that are not float64: OCR's reading, the probes' labels
    "ocr_text": _S, **{f"probe_{attribute}": _S for attribute in ("shape", "color", "background", "word")}}


def build_row(*, run: dict, ids: dict, design: dict, prompt: dict, sampler: dict, timing: dict,
              metrics: dict) -> dict:
    """One result row. Each part must hold exactly its columns (a missing or extra key is a bug in the
    caller, caught here rather than as a column silently absent from some Parquet parts); `metrics` holds
    the metric columns, which must not shadow a schema column."""
    row: dict = {}
    for name, part in (("run", run), ("ids", ids), ("design", design), ("prompt", prompt),
                       ("sampler", sampler), ("timing", timing)):
        expected = PARTS[name]
        if set(part) != set(expected):
            missing, extra = sorted(set(expected) - set(part)), sorted(set(part) - set(expected))
            raise ValueError(f"result row part '{name}': missing {missing}, unexpected {extra}")
        row.update({column: part[column] for column in expected})
    clash = sorted(set(metrics) & set(COLUMNS))
    if clash:
        raise ValueError(f"metric columns {clash} shadow result row columns")
    row.update(metrics)
    return row


def column_type(name: str) -> pa.DataType | None:
    """The fixed Arrow type of a schema or text metric column; None for a (float64) metric column."""
    return COLUMNS.get(name) or METRIC_TYPES.get(name)
