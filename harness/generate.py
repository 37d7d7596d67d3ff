"""Generate a batch of rows in one denoising pass: encode each distinct text once, hook, call the pipeline.

This is the only place a pipeline is called during a sweep. A batch is a list of `Sample`s; rows that other
rows depend on (donor rows for patching, clean rows for restoring) must be in the same batch — the packer
in `harness.run.packing` guarantees it.

**Shared prefix.** When nothing acts on any row before step s (P3's edits start at step 2–4; a
`step_start` sweep starts later still), rows with the same text and seed follow the same trajectory until
then. The batch then starts *compact* — one row per distinct (text, seed) — and at the end of step s−1 a
`callback_on_step_end` (diffusers' own extension point) expands latents, embeddings and the scheduler's
multistep history to the full batch, which branches from there. Only for schedulers whose state is known
to be safe to expand; IF's pipeline has no such callback and runs the full batch from step 0.
"""

from __future__ import annotations

from collections import OrderedDict

import numpy as np
import torch

from harness.contribution import Measurements, contribution_hooks
from harness.hooks import Hooks
from harness.interventions import Sample, denoiser_hooks, text_hooks
from harness.models.adapters import GenerationConfig


class PromptCache:
    """Positive conditioning per prompt, computed once per worker (prompt embeddings are shared by every
    variant of a prompt, and by every batch the prompt appears in)."""

    def __init__(self, adapter, capacity: int = 4096):
        self.adapter = adapter
        self.capacity = capacity
        self._store: OrderedDict[str, dict[str, torch.Tensor]] = OrderedDict()

    def __call__(self, prompt: str) -> dict[str, torch.Tensor]:
        return self.many([prompt])[0]

    def many(self, prompts: list[str]) -> list[dict[str, torch.Tensor]]:
        missing = list(dict.fromkeys(p for p in prompts if p not in self._store))
        if missing:
            encoded = self.adapter.encode(missing)
            for i, prompt in enumerate(missing):
                self._store[prompt] = {k: v[i : i + 1] for k, v in encoded.items()}
        for prompt in prompts:
            self._store.move_to_end(prompt)
        while len(self._store) > self.capacity:
            self._store.popitem(last=False)
        return [self._store[p] for p in prompts]


def encode_rows(adapter, rows: list[Sample], cache: PromptCache) -> dict[str, torch.Tensor]:
    """Stacked positive conditioning, one row per `Sample`; each distinct text is encoded once."""
    special: dict[tuple, dict[str, torch.Tensor]] = {}
    by_prompt: dict[str, list[Sample]] = {}
    for row in rows:
        if row.corruption is not None or row.text_restores:
            by_prompt.setdefault(row.prompt, [])
            if row.text_key not in {r.text_key for r in by_prompt[row.prompt]}:
                by_prompt[row.prompt].append(row)
    for prompt, group in by_prompt.items():
        batch = [Sample(prompt, 0), *group]
        with torch.no_grad(), text_hooks(adapter, batch):
            encoded = adapter.encode([prompt] * len(batch))
        for i, row in enumerate(group, start=1):
            special[row.text_key] = {k: v[i : i + 1] for k, v in encoded.items()}
    plain = cache.many([r.prompt for r in rows if r.text_key not in special])
    plain_iter = iter(plain)
    parts = [special[r.text_key] if r.text_key in special else next(plain_iter) for r in rows]
    return {k: torch.cat([p[k] for p in parts]) for k in parts[0]}


SHARE_PREFIX = True  # module switch so benchmarks can measure the optimization on and off
BRANCHABLE_SCHEDULERS = {  # scheduler class -> per-row state attributes expanded at the branch
    "PNDMScheduler": ("ets", "cur_sample"),
    "EulerDiscreteScheduler": (),
    "FlowMatchEulerDiscreteScheduler": (),
    "DDIMScheduler": (),
}


def branch_step(adapter, rows: list[Sample], config: GenerationConfig) -> int:
    """The step at which the batch must branch (0: no shared prefix to exploit)."""
    if adapter.branch_tensors is None or type(adapter.pipe.scheduler).__name__ not in BRANCHABLE_SCHEDULERS:
        return 0
    if getattr(adapter.pipe.scheduler.config, "s_churn", 0):
        return 0
    first = min(row.first_denoiser_step for row in rows)
    if first == 0:
        return 0
    calls = adapter.denoiser_calls(config.steps)
    return int(min(first, calls))


class _Branch:
    """callback_on_step_end that expands a compact batch (one row per distinct text and seed) to the full
    batch at the end of step `at - 1`."""

    def __init__(self, adapter, index: torch.Tensor, compact: int, cfg: bool, at: int, counter):
        self.adapter, self.index, self.compact, self.cfg, self.at = adapter, index, compact, cfg, at
        self.counter = counter
        self.cfg_index = torch.cat([index, index + compact])

    def __call__(self, pipe, step: int, _timestep, tensors: dict) -> dict:
        if step != self.at - 1:
            return {}
        out = {name: value[self.index] if name == "latents" or not self.cfg else value[self.cfg_index]
               for name, value in tensors.items()}
        scheduler = pipe.scheduler
        for name in BRANCHABLE_SCHEDULERS[type(scheduler).__name__]:
            state = getattr(scheduler, name)
            if isinstance(state, torch.Tensor):
                setattr(scheduler, name, state[self.index])
            elif isinstance(state, list):
                setattr(scheduler, name, [t[self.index] for t in state])
        self.counter.expected_batch = len(self.index) * (2 if self.cfg else 1)
        return out


def generate_rows(adapter, rows: list[Sample], config: GenerationConfig, cache: PromptCache | None = None,
                  as_float: bool = False, share_prefix: bool | None = None,
                  measurements: Measurements | None = None) -> np.ndarray:
    """Images (uint8, N×H×W×3; float32 in [0, 1] with `as_float`) for `rows`, in one pipeline call.

    `measurements`: what hooks measure for some of the rows (`harness.contribution`), written into its
    `results`; such a batch runs in full from step 0 (the hooks address the rows, not a compact prefix)."""
    cache = cache or PromptCache(adapter)
    share_prefix = SHARE_PREFIX if share_prefix is None else share_prefix
    measuring = measurements is not None and bool(measurements.in_batch(rows))
    at = branch_step(adapter, rows, config) if share_prefix and not measuring else 0
    keys = list(dict.fromkeys((row.text_key, row.seed) for row in rows))
    if len(keys) == len(rows):
        at = 0
    if at:
        first = {key: next(r for r in rows if (r.text_key, r.seed) == key) for key in keys}
        run_rows = [first[key] for key in keys]
        index = torch.tensor([keys.index((row.text_key, row.seed)) for row in rows])
    else:
        run_rows = rows
    cond = encode_rows(adapter, run_rows, cache)
    upsample_cond = None
    if getattr(adapter, "stage_ii", None) is not None and any(r.corruption or r.text_restores for r in run_rows):
        # IF's stage II upsamples every row with its clean prompt (P3: prompt A, no intervention); only
        # stage I carries the corruption and the text restores.
        clean = cache.many([r.prompt for r in run_rows])
        upsample_cond = {k: torch.cat([c[k] for c in clean]) for k in clean[0]}
    cfg = adapter.cfg_batch(config.guidance_scale)  # the architecture's CFG layout, not guidance_scale alone
    negative = adapter.encode_negative(len(run_rows)) if cfg else None
    hooks, counter = denoiser_hooks(adapter, rows, cfg, cache)
    callback = None
    if at:
        counter.expected_batch = len(run_rows) * (2 if cfg else 1)
        callback = _Branch(adapter, index, len(run_rows), cfg, at, counter)
    measures, collect = contribution_hooks(adapter, rows, cfg, measurements) if measuring else (Hooks(), None)
    with torch.no_grad(), hooks, measures:
        images = adapter.generate(cond, negative, [r.seed for r in run_rows], config.steps, config.guidance_scale,
                                  config.height, config.width, as_float=as_float, callback=callback,
                                  upsample_cond=upsample_cond)
    if collect is not None:
        collect()
    return images
