"""Plan: a job becomes work units (prompt shard × seeds × variant chunk) with ids stable across runs."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from harness.errors import JobError
from harness.methods import Variant


@dataclass(frozen=True)
class WorkUnit:
    """A prompt shard × seeds × variant chunk; `unit_id` is stable across runs of the same job."""

    unit_id: str
    prompt_indices: tuple[int, ...]
    seeds: tuple[int, ...]
    variant_indices: tuple[int, ...]


def plan_units(job, variants: list[Variant]) -> list[WorkUnit]:
    ids = job.prompt_ids()
    shard = job.executor.prompts_per_unit
    chunk = job.executor.variants_per_unit or max(1, len(variants))
    units = []
    for p0 in range(0, len(job.prompts), shard):
        prompts = tuple(range(p0, min(p0 + shard, len(job.prompts))))
        for v0 in range(0, len(variants), chunk):
            vids = tuple(range(v0, min(v0 + chunk, len(variants))))
            key = repr(([ids[i] for i in prompts], [job.prompts[i].prompt for i in prompts], job.seeds,
                        [variants[i].key for i in vids]))
            units.append(WorkUnit(hashlib.sha1(key.encode()).hexdigest()[:12], prompts, tuple(job.seeds), vids))
    return units


def planned_rows(units: list[WorkUnit], references: int) -> dict[str, int]:
    """Rows each unit writes: prompts × seeds × its variants, plus the reference rows (control, target,
    corrupted) in the first variant chunk of a prompt shard — what a whole part file must hold, recorded
    in the manifest and checked on resume (`harness.results.integrity`)."""
    return {u.unit_id: len(u.prompt_indices) * len(u.seeds)
            * (len(u.variant_indices) + (references if u.variant_indices[0] == 0 else 0)) for u in units}


def check_step_window(job, calls: int) -> None:
    """The one check of `step_start` against the sampler: every start must fall on a denoising step
    (`calls`: how many the sampler makes). Sign and order (`step_end` above `step_start`) are checked
    with the job itself (`harness.jobs`)."""
    if max(job.step_start) >= calls:
        raise JobError(f"step_start: {max(job.step_start)} is not below the {calls} denoising steps")
