"""The attention contribution of a concept's tokens, measured by hooks while an image is generated.

For one attention call, one batch row and the concept's text tokens k (their key columns):

    z_i = Σ_k A[i, k] · V[k]            per head, then the heads concatenated   (image token i)
    c   = mean_i ‖W_o · z_i‖ · s        (``attn_contrib``; s = the module's 1 / rescale_output_factor)
    c_b = mean_i ‖(W_o · z_i + b_o) · s‖ (``attn_contrib_bias``: with the output bias, as Zarei's code applies
                                          ``to_out[0]``)

A = softmax(q·kᵀ/√d + mask) over *every* key the image query attends over (text and, in joint attention,
image keys), so the normalizer is the model's own; only the concept's columns of A are formed: the
logsumexp of each query's logits is computed over all keys, in chunks of queries that bound the memory, and
A[i, k] = exp(logit[i, k] − logsumexp_i). The per-call values are averaged over the calls of a generation
(one per denoising step). Nothing is written back: the hook is a forward *pre*-hook that returns nothing, so
the image is the plain pipeline's, bit for bit (`tests/integration/test_attn_contrib.py`).

Rows: with a CFG batch ``[uncond × B, cond × B]`` the conditional half (B + r) is measured (the concept is
only in the conditional prompt); without one (FLUX.1-dev, guidance ≤ 1), row r.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from harness.contribution.layouts import AttentionRead, call_inputs, reader
from harness.hooks import Hooks
from harness.metrics import MEASURED_DIRECTIONS

COLUMNS = tuple(MEASURED_DIRECTIONS)  # attn_contrib, attn_contrib_bias: metric columns of the rows
MAX_LOGITS = 2**24  # logits held at once per head group (float32: 64 MiB); queries are chunked to fit


@dataclass(frozen=True)
class Contribution:
    """Measure (never change) the attention contribution of `concept`'s tokens at `sites`."""

    concept: str
    sites: tuple[str, ...]


@torch.no_grad()
def contribution(read: AttentionRead, columns: list[list[int]]) -> torch.Tensor:
    """(B, 2): ``attn_contrib`` and ``attn_contrib_bias`` of each row of `read`, for the text positions
    `columns[b]` of row b (the module docstring's formula)."""
    batch, heads, n_query, dim = read.query.shape
    n_key = read.key.shape[2]
    weight = None if read.out is None else read.out.weight.float()
    bias = None if read.out is None or read.out.bias is None else read.out.bias.float()
    chunk = max(1, MAX_LOGITS // (heads * n_key))
    out = torch.zeros(batch, 2, dtype=torch.float64)
    for b in range(batch):
        cols = torch.tensor([read.text_start + c for c in columns[b]], device=read.key.device)
        values = read.value[b][:, cols]  # (H, n, d)
        mask = _row(read.bias, b)
        total = torch.zeros(2, dtype=torch.float64)
        for start in range(0, n_query, chunk):
            logits = read.query[b, :, start : start + chunk] @ read.key[b].transpose(-1, -2) * dim**-0.5
            if mask is not None:
                logits = logits + (mask if mask.shape[-2] == 1 else mask[:, start : start + chunk])
            probs = (logits[..., cols] - logits.logsumexp(-1, keepdim=True)).exp()  # (H, q, n)
            z = (probs @ values).transpose(0, 1).flatten(1)  # (q, H·d): Σ_k A[i, k] V[k], heads concatenated
            y = z if weight is None else z @ weight.T
            total[0] += (y * read.out_scale).norm(dim=-1).double().sum()
            with_bias = y if bias is None else y + bias
            total[1] += (with_bias * read.out_scale).norm(dim=-1).double().sum()
        out[b] = total / n_query
    return out


def _row(mask: torch.Tensor | None, b: int) -> torch.Tensor | None:
    """Row b of an additive mask broadcastable to (B, H, Nq, Nk), as (H or 1, Nq or 1, Nk)."""
    if mask is None:
        return None
    mask = mask.reshape((1,) * (4 - mask.ndim) + tuple(mask.shape))
    return mask[b if mask.shape[0] > 1 else 0]


@dataclass
class Measurements:
    """The contribution requests of a unit's samples, and what the hooks measured for them."""

    requests: dict = field(default_factory=dict)  # Sample -> Contribution
    results: dict = field(default_factory=dict)  # Sample -> {site: {column: value}}

    def in_batch(self, rows: list) -> dict[int, Contribution]:
        """Batch row -> its request, for the rows of one batch that have one."""
        return {r: self.requests[row] for r, row in enumerate(rows) if row in self.requests}


class _Tally:
    """Sums of the per-call values and call counts per (batch row, site)."""

    def __init__(self):
        self.sums: dict[tuple[int, str], torch.Tensor] = {}
        self.calls: dict[tuple[int, str], int] = {}

    def add(self, r: int, site: str, values: torch.Tensor) -> None:
        key = (r, site)
        self.sums[key] = self.sums.get(key, 0) + values
        self.calls[key] = self.calls.get(key, 0) + 1

    def means(self, r: int, sites: tuple[str, ...]) -> dict[str, dict[str, float]]:
        return {site: dict(zip(COLUMNS, (self.sums[(r, site)] / self.calls[(r, site)]).tolist())) for site in sites}


def contribution_hooks(adapter, rows: list, cfg: bool, measurements: Measurements) -> tuple[Hooks, callable]:
    """Install a pre-hook on every requested site; returns the hooks and a function that, after the
    generation, writes each requesting row's step-averaged values into `measurements.results`."""
    wanted = measurements.in_batch(rows)
    n = len(rows)
    text_length = adapter.text_length()
    # Per site: the batch indices measured (conditional half under CFG), their rows and concept columns.
    by_site: dict[str, list[tuple[int, int, list[int]]]] = {}
    for r, request in wanted.items():
        columns = adapter.concept_columns(rows[r].prompt, request.concept)
        for site in request.sites:
            by_site.setdefault(site, []).append((n + r if cfg else r, r, columns))
    tally = _Tally()
    hooks = Hooks()
    try:
        for site, measured in by_site.items():
            read = reader(adapter.text_reader(site))
            index = torch.tensor([m[0] for m in measured])
            hooks.pre_forward(f"contribution/{site}", adapter.module(site),
                              _measure(read, site, index, measured, text_length, tally), with_kwargs=True)
    except BaseException:
        hooks.remove()
        raise

    def collect() -> None:
        for r, request in wanted.items():
            measurements.results[rows[r]] = tally.means(r, request.sites)

    return hooks, collect


def _measure(read, site: str, index: torch.Tensor, measured: list, text_length: int, tally: _Tally):
    columns = [m[2] for m in measured]

    def hook(module, args, kwargs):
        values = contribution(read(module, call_inputs(args, kwargs), text_length).rows(index), columns)
        for (_, r, _), row_values in zip(measured, values):
            tally.add(r, site, row_values)

    return hook
