"""Interventions: what is done to the model while one row of a batch is generated, and the hooks that do it.

All three papers reduce to a handful of moves on the conditional branch of a denoising pass:

* **KV swap** (LocoGen, P2; attention activation patching, P3). At a set of text-reading attention sites the
  key and value projections see another prompt's text. *Inject* mode feeds the other prompt's embeddings
  (exact for UNets whose cross-attention reads ``prompt_embeds`` unchanged: SD1.x/2.x, SDXL). *Patch* mode
  copies the K/V of a *donor row* — the other prompt, same seed, generated in the same batch — at the same
  layer and step, which is exactly P3's cached patching but with no cache: the donor's activations exist
  in the batch at the moment they are needed. It is required where the text stream evolves (SD3 joint
  attention) or is transformed per layer (DeepFloyd IF's AttnAddedKV attentions). An optional head
  subset restricts the swap to those heads' columns, and a step window (``step_start`` counted from the
  noisiest step) restricts it in time.
* **Restore** (causal tracing, P1). The output of one site is copied from the clean row (same prompt and
  seed, no corruption) into a corrupted row, at every step for denoiser sites, or at one token position
  for text-encoder sites.
* **Corruption** (P1). Gaussian noise κ·σ (σ = std of the encoder's token-embedding matrix) is added to
  the input token embeddings of the attribute's tokens, the same noise for every row of that prompt.

Rows are independent along the batch axis, so a row's image depends only on its own prompt, seed and
interventions (and, for donor-based moves, on its donor row, which is never itself intervened on). The
pipelines lay out a CFG batch as ``[uncond × B, cond × B]``; hooks address row r's conditional half at
B + r. A forward pre-hook on the denoiser counts steps.
"""

from __future__ import annotations

import hashlib
import weakref
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Literal

import torch

from harness.errors import UserError

Branch = Literal["cond", "both"]
POSITIONS = ("first_subject", "last_subject", "last")


@dataclass(frozen=True)
class StepWindow:
    """Denoising steps [start, end) during which an intervention is active; step 0 is the noisiest."""

    start: int = 0
    end: int | None = None

    def active(self, step: int) -> bool:
        return step >= self.start and (self.end is None or step < self.end)

    def count(self, total: int) -> int:
        """How many of `total` steps are intervened on (P3's t_s; METHODS.md §5 item 8)."""
        end = total if self.end is None else min(self.end, total)
        return max(0, end - self.start)


@dataclass(frozen=True)
class KVSwap:
    """Text-side K and V at `sites` computed from prompt `source` instead of the row's own prompt."""

    sites: tuple[str, ...]
    source: str
    mode: Literal["inject", "patch"] = "inject"
    heads: tuple[int, ...] | None = None
    steps: StepWindow = StepWindow()
    branch: Branch = "cond"


@dataclass(frozen=True)
class Restore:
    """Output of `site` copied from the clean row of the same prompt and seed."""

    site: str
    position: str | None = None  # token position name, for text-encoder sites only
    steps: StepWindow = StepWindow()
    branch: Branch = "cond"

    @property
    def in_text_encoder(self) -> bool:
        return self.site.startswith("text_encoder")


@dataclass(frozen=True)
class Corruption:
    """Noise of `scale` × σ on the input token embeddings of `attribute`'s tokens (P1's corrupted run)."""

    attribute: str
    scale: float = 3.0
    seed: int = 0


@dataclass(frozen=True)
class Row:
    """One image to generate: prompt, seed, and what is done to the model while generating it."""

    prompt: str
    seed: int
    corruption: Corruption | None = None
    swaps: tuple[KVSwap, ...] = ()
    restores: tuple[Restore, ...] = ()

    @property
    def is_plain(self) -> bool:
        return self.corruption is None and not self.swaps and not self.restores

    @property
    def text_restores(self) -> tuple[Restore, ...]:
        return tuple(r for r in self.restores if r.in_text_encoder)

    @property
    def denoiser_restores(self) -> tuple[Restore, ...]:
        return tuple(r for r in self.restores if not r.in_text_encoder)

    @property
    def first_denoiser_step(self) -> float:
        """The first step at which anything acts on this row's denoiser (inf: never)."""
        starts = [s.steps.start for s in self.swaps] + [r.steps.start for r in self.denoiser_restores]
        return min(starts, default=float("inf"))

    @property
    def text_key(self) -> tuple:
        """Rows with equal keys have identical text conditioning."""
        return (self.prompt, self.corruption, self.text_restores)


# ---- token positions ---------------------------------------------------------------------------------

def token_positions(tokenizer, prompt: str, attribute: str, max_length: int) -> dict:
    """Token indices of `attribute` in `prompt` as the pipeline tokenizes it.

    Returns ``span`` (all attribute token indices), ``first_subject``, ``last_subject`` and ``last`` (the
    final non-padding token: EOS for CLIP and T5). Raises ValueError when the attribute is absent or cut
    off by truncation.
    """
    start = prompt.lower().find(attribute.lower())
    if not attribute or start < 0:
        raise ValueError(f"attribute '{attribute}' does not occur in prompt '{prompt}'")
    end = start + len(attribute)
    enc = tokenizer(prompt, truncation=True, max_length=max_length, return_offsets_mapping=True)
    span = [i for i, (a, b) in enumerate(enc["offset_mapping"]) if b > a and a < end and b > start]
    if not span:
        raise ValueError(f"attribute '{attribute}' falls outside the first {max_length} tokens of '{prompt}'")
    return {"span": span, "first_subject": span[0], "last_subject": span[-1],
            "last": len(enc["input_ids"]) - 1}


def _stable_seed(*parts) -> int:
    return int.from_bytes(hashlib.sha256(repr(parts).encode()).digest()[:8], "little") & (2**63 - 1)


# ---- hook plumbing -----------------------------------------------------------------------------------

class _Hooks:
    """A set of registered hooks removed together on exit."""

    def __init__(self):
        self._handles: list = []

    def add(self, handle) -> None:
        self._handles.append(handle)

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()


@dataclass
class _Move:
    """Copy rows `src` into rows `tgt` (indices into the module's batch) when `steps` is active.

    `source` replaces `src` for injected values (a tensor aligned with `tgt`); `cols` restricts the copy
    to some feature columns (a head subset); `position` restricts it to one token position.
    """

    tgt: torch.Tensor
    src: torch.Tensor | None = None
    source: torch.Tensor | None = None
    cols: torch.Tensor | None = None
    position: int | None = None
    steps: StepWindow = field(default_factory=StepWindow)

    def apply(self, out: torch.Tensor) -> None:
        values = self.source if self.source is not None else out[self.src]
        if self.position is not None:
            out[self.tgt, self.position] = values[:, self.position]
        elif self.cols is None:
            out[self.tgt] = values.to(out.dtype)
        else:
            block = out[self.tgt]
            block[..., self.cols] = values[..., self.cols].to(out.dtype)
            out[self.tgt] = block


def _apply_moves(moves: list[_Move], output, step: int | None):
    tensors = [output] if isinstance(output, torch.Tensor) else [t for t in output if isinstance(t, torch.Tensor)]
    for move in moves:
        if step is None or move.steps.active(step):
            for tensor in tensors[:1] if move.position is not None else tensors:
                move.apply(tensor)
    return output


class StepCounter:
    """Counts denoiser calls (one per step; CFG is batched into one call) and checks the batch layout.

    `expected_batch` may change mid-trajectory when a batch branches (harness.generate)."""

    def __init__(self, expected_batch: int):
        self.step = -1
        self.expected_batch = expected_batch

    def __call__(self, _module, args, kwargs):
        sample = args[0] if args else kwargs.get("sample", kwargs.get("hidden_states"))
        if sample is not None and sample.shape[0] != self.expected_batch:
            raise RuntimeError(f"denoiser batch {sample.shape[0]} != expected {self.expected_batch}: "
                               "unexpected CFG layout")
        self.step += 1


def _find_row(rows: list[Row], prompt: str, seed: int, what: str, for_row: int) -> int:
    for i, row in enumerate(rows):
        if row.is_plain and row.prompt == prompt and row.seed == seed:
            return i
    raise RuntimeError(f"row {for_row} needs a {what} row (prompt {prompt!r}, seed {seed}) in its batch")


def _branch_indices(rows: list[int], n: int, cfg: bool, branch: Branch) -> list[int]:
    """Batch indices of logical rows in the denoiser's [uncond × n, cond × n] layout."""
    if not cfg:
        return list(rows)
    cond = [n + r for r in rows]
    return ([*rows, *cond]) if branch == "both" else cond


def _head_columns(module: torch.nn.Module, heads: tuple[int, ...] | None, n_heads: int) -> torch.Tensor | None:
    if heads is None:
        return None
    width = module.out_features // n_heads
    bad = [h for h in heads if not 0 <= h < n_heads]
    if bad:
        raise UserError(f"heads: head {bad[0]} does not exist; this layer has heads 0..{n_heads - 1}")
    return torch.cat([torch.arange(h * width, (h + 1) * width) for h in heads])


def denoiser_hooks(adapter, rows: list[Row], cfg: bool, embeddings) -> tuple[_Hooks, StepCounter]:
    """Install the hooks that carry out every row's denoiser-side swaps and restores.

    `embeddings(prompt)` returns the positive conditioning of a prompt (for inject-mode sources).
    """
    hooks = _Hooks()
    try:
        counter = _install_denoiser_hooks(hooks, adapter, rows, cfg, embeddings)
    except BaseException:
        hooks.__exit__()
        raise
    return hooks, counter


def _merge(moves: list[_Move], device: torch.device) -> list[_Move]:
    """One move per (step window, columns, kind): a hook then does one gather/scatter per step for all the
    rows it serves instead of one per row. Index tensors go to the module's device once here, not in every
    hook call (a CPU index into a CUDA tensor is a blocking copy each time)."""
    groups: dict[tuple, list[_Move]] = {}
    for move in moves:
        cols = None if move.cols is None else tuple(move.cols.tolist())
        key = (move.steps, cols, move.source is not None, move.position)
        groups.setdefault(key, []).append(move)
    merged = []
    for group in groups.values():
        head = group[0]
        merged.append(_Move(
            tgt=torch.cat([m.tgt for m in group]).to(device),
            src=None if head.src is None else torch.cat([m.src for m in group]).to(device),
            source=None if head.source is None else torch.cat([m.source for m in group]),
            cols=None if head.cols is None else head.cols.to(device), position=head.position, steps=head.steps))
    return merged


def _install_denoiser_hooks(hooks: _Hooks, adapter, rows: list[Row], cfg: bool, embeddings) -> StepCounter:
    n = len(rows)
    counter = StepCounter(2 * n if cfg else n)
    hooks.add(adapter.denoiser.register_forward_pre_hook(counter, with_kwargs=True))
    moves: dict[int, tuple[torch.nn.Module, list[_Move]]] = {}
    injected: dict[tuple[int, str], torch.Tensor] = {}  # (projection, source prompt) -> its K or V, once

    def add(module, move):
        moves.setdefault(id(module), (module, []))[1].append(move)

    def inject_value(proj, source: str) -> torch.Tensor:
        key = (id(proj), source)
        if key not in injected:
            embeds = embeddings(source)["prompt_embeds"].to(proj.weight.dtype)
            injected[key] = torch.nn.functional.linear(embeds, proj.weight, proj.bias)
        return injected[key]

    for r, row in enumerate(rows):
        for swap in row.swaps:
            donor = (_find_row(rows, swap.source, row.seed, "donor", r) if swap.mode == "patch" else None)
            for site in swap.sites:
                attn = adapter.module(site)
                for proj in adapter.kv_modules(site):
                    cols = _head_columns(proj, swap.heads, attn.heads)
                    if donor is None:
                        # Injection swaps the conditional half only: both rows' unconditional halves hold
                        # the same empty-prompt K/V, so `branch: both` would copy them onto themselves.
                        tgt = torch.tensor(_branch_indices([r], n, cfg, "cond"))
                        add(proj, _Move(tgt, source=inject_value(proj, swap.source), cols=cols, steps=swap.steps))
                    else:
                        tgt = torch.tensor(_branch_indices([r], n, cfg, swap.branch))
                        src = torch.tensor(_branch_indices([donor], n, cfg, swap.branch))
                        add(proj, _Move(tgt, src, cols=cols, steps=swap.steps))
        for restore in row.denoiser_restores:
            clean = _find_row(rows, row.prompt, row.seed, "clean", r)
            tgt = torch.tensor(_branch_indices([r], n, cfg, restore.branch))
            src = torch.tensor(_branch_indices([clean], n, cfg, restore.branch))
            add(adapter.module(restore.site), _Move(tgt, src, steps=restore.steps))
    for module, module_moves in moves.values():
        merged = _merge(module_moves, next(module.parameters()).device)
        hooks.add(module.register_forward_hook(
            lambda _m, _a, out, merged=merged: _apply_moves(merged, out, counter.step)))
    return counter


# ---- text side ---------------------------------------------------------------------------------------

def max_text_length(adapter, encoder_name: str) -> int:
    """The sequence length the pipeline encodes with (SD3's T5 uses 256, every other encoder 77)."""
    return 256 if (adapter.arch == "sd3" and encoder_name == "text_encoder_3") else 77


_EMBEDDING_STD: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def embedding_std(encoder: torch.nn.Module) -> float:
    """σ of the encoder's token-embedding matrix (P1/ROME: noise scale = κ·σ). Computed once per encoder
    (T5-XXL's matrix is 131M entries) and again only if the weights are modified in place."""
    weight = encoder.get_input_embeddings().weight
    cached = _EMBEDDING_STD.get(encoder)
    if cached is None or cached[0] != weight._version:
        cached = (weight._version, float(weight.detach().float().std()))
        _EMBEDDING_STD[encoder] = cached
    return cached[1]


def input_embedding_modules(encoder: torch.nn.Module) -> list[torch.nn.Module]:
    """The token-embedding modules the encoder's forward really calls: transformers 5 gives T5 a separate
    ``encoder.embed_tokens`` tied to ``shared`` (what get_input_embeddings returns), so match by weight."""
    weight = encoder.get_input_embeddings().weight
    return [m for m in encoder.modules()
            if isinstance(m, torch.nn.Embedding) and m.weight.data_ptr() == weight.data_ptr()]


def text_hooks(adapter, rows: list[Row]) -> _Hooks:
    """Hooks for one encode call over `rows` (one prompt): noise on the attribute tokens of corrupted rows
    and text-encoder restores from the clean row (index of the first plain row)."""
    hooks = _Hooks()
    try:
        _install_text_hooks(hooks, adapter, rows)
    except BaseException:
        hooks.__exit__()
        raise
    return hooks


def _install_text_hooks(hooks: _Hooks, adapter, rows: list[Row]) -> None:
    prompt = rows[0].prompt
    text = adapter.pipeline_text(prompt)  # the string the pipeline really tokenizes
    clean = next((i for i, row in enumerate(rows) if row.is_plain), None)
    noise_rows = [(i, row.corruption) for i, row in enumerate(rows) if row.corruption is not None]
    for name, (encoder, tokenizer) in adapter.text_encoders().items():
        length = max_text_length(adapter, name)
        if noise_rows:
            moves = []
            sigma = embedding_std(encoder)
            width = encoder.get_input_embeddings().weight.shape[1]
            for i, corruption in noise_rows:
                span = token_positions(tokenizer, text, corruption.attribute, length)["span"]
                gen = torch.Generator().manual_seed(_stable_seed(corruption.seed, prompt, name))
                noise = torch.randn(len(span), width, generator=gen) * corruption.scale * sigma
                moves.append((i, torch.tensor(span), noise))
            for module in input_embedding_modules(encoder):
                hooks.add(module.register_forward_hook(lambda _m, _a, out, moves=moves: _add_noise(out, moves)))
        by_site: dict[str, list[_Move]] = defaultdict(list)
        for i, row in enumerate(rows):
            for restore in row.text_restores:
                if not restore.site.startswith(name + "."):
                    continue
                if clean is None:
                    raise RuntimeError(f"text restore for {prompt!r} needs a clean row in the encode batch")
                attribute = row.corruption.attribute if row.corruption else ""
                pos = token_positions(tokenizer, text, attribute, length)[restore.position]
                by_site[restore.site].append(_Move(torch.tensor([i]), torch.tensor([clean]), position=pos))
        for site, moves in by_site.items():
            hooks.add(adapter.module(site).register_forward_hook(
                lambda _m, _a, out, moves=moves: _apply_moves(moves, out, None)))


def _add_noise(out: torch.Tensor, moves) -> torch.Tensor:
    for row, span, noise in moves:
        out[row, span] += noise.to(out.device, out.dtype)
    return out
