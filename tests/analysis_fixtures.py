"""Hand-made run directories with known answers for the analysis tests (no model, no sweep).

`make_run` writes what `loco sweep` writes: manifest.json, sites.csv and Parquet parts with the harness's
column types, for rows built by `swap_rows` / `trace_rows` from an effect table chosen by the test.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np

from harness.results.failures import UnitFailure, write_failures
from harness.results.store import RunStore

KIND = "cross_attn"


def site_name(i: int) -> str:
    return f"unet.layer{i}.attn2"


def make_run(root: Path, name: str, method: str, rows: list[dict], n_sites: int = 4, fingerprint: str = "fp-A",
             model_id: str = "tiny:sd15", units: int = 2, status: str = "complete", failures: list[dict] | None = None,
             arch: str = "sd15", job: dict | None = None) -> Path:
    """A run directory holding `rows`, split into `units` Parquet parts by prompt."""
    run = Path(root) / name
    store = RunStore(run)
    run.mkdir(parents=True, exist_ok=True)
    store.write_manifest({"job_name": name, "job_fingerprint": f"job-{name}", "method": method, "status": status,
                          "model": {"model_id": model_id, "arch": arch, "fingerprint": fingerprint}})
    if job is not None:
        (run / "job.yaml").write_text(json.dumps(job))  # JSON is YAML
    with open(run / "sites.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["kind", "index", "name"])
        writer.writeheader()
        writer.writerows({"kind": KIND, "index": i, "name": site_name(i)} for i in range(n_sites))
    prompts = sorted({r["prompt_id"] for r in rows})
    for u in range(units):
        part = [r | {"unit_id": f"u{u}", "method": method, "model_id": model_id, "model_fingerprint": fingerprint}
                for r in rows if prompts.index(r["prompt_id"]) % units == u]
        if part:
            store.write_unit(method, f"u{u}", part)
    if failures:
        write_failures(run, [UnitFailure(**f) for f in failures])
    return run


def _row(role: str, prompt_id: str, seed: int, attribute: str, concept: str, site: int | None, **metrics) -> dict:
    return {"role": role, "variant": f"{KIND}#{site}" if site is not None else role, "prompt_id": prompt_id,
            "prompt": f"prompt {prompt_id}", "attribute": attribute, "concept": concept, "seed": seed,
            "site": site_name(site) if site is not None else None, "sites": [site_name(site)] if site is not None else [],
            "kind": KIND if site is not None else None, "site_index": site, "indices": [site] if site is not None else [],
            "window_start": site, "window_size": 1 if site is not None else None,
            "step_start": 0 if site is not None else None, **metrics}


def swap_rows(effect, prompts: list[str], seeds: list[int], n_sites: int = 4, attribute: str = "style",
              concept: str = "van gogh", metric: str = "clip_t_prompt", control: float = 0.8,
              reference_role: str = "control", noise: float = 0.01, seed: int = 0, clean: float | None = None,
              clean_noise: float = 0.0) -> list[dict]:
    """Rows of a sweep where site i on prompt p shifts `metric` by effect(i, p) from the reference value
    (plus small seed noise); the reference rows hold `control`. `clean`: causal tracing's clean rows
    (role control, `metric` = clean plus `clean_noise` per prompt and seed) beside the corrupted ones."""
    rng = np.random.default_rng(seed)
    rows = []
    for p in prompts:
        for s in seeds:
            if clean is not None:
                rows.append(_row("control", p, s, attribute, concept, None,
                                 **{metric: clean + clean_noise * rng.standard_normal(), "mse": 0.0}))
            rows.append(_row(reference_role, p, s, attribute, concept, None, **{metric: control, "mse": 0.0}))
            for i in range(n_sites):
                shift = effect(i, p)
                rows.append(_row("variant", p, s, attribute, concept, i,
                                 **{metric: control + shift + noise * rng.standard_normal(), "mse": abs(shift) * 100}))
    return rows


def read_json(path: Path) -> dict:
    return json.loads(Path(path).read_text())
