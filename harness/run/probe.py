"""Batch sizing: a fixed size on CPU, measured from free memory on a GPU (halved later on OOM)."""

from __future__ import annotations

import torch

from harness.generate import generate_rows
from harness.interventions import Sample
from harness.models import GenerationConfig

CPU_BATCH = 16


def choose_batch_size(job, adapter, config: GenerationConfig) -> int:
    """The job's `batch_size`, or for `auto` CPU_BATCH on CPU and `probe_batch_size` on a GPU."""
    if job.batch_size != "auto":
        return job.batch_size
    if adapter.device.type != "cuda":
        return CPU_BATCH
    return probe_batch_size(adapter, config)


def probe_batch_size(adapter, config: GenerationConfig, limit: int = 64) -> int:
    """Rows per batch that fit in free GPU memory: measure the peak of 1 and 2 rows for one step, then
    extrapolate the per-row cost with a 15 % margin."""
    peaks = []
    for n in (1, 2):
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        step = GenerationConfig(1, config.guidance_scale, config.height, config.width)
        generate_rows(adapter, [Sample("probe", i) for i in range(n)], step)
        peaks.append(torch.cuda.max_memory_allocated() - base)
    per_row = max(peaks[1] - peaks[0], 1)
    free, _ = torch.cuda.mem_get_info()
    return int(max(1, min(limit, (free * 0.85 - peaks[0]) // per_row + 1)))
