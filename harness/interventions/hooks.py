"""Denoiser-side hooks: carry out every sample's KV swaps and restores in one batched pass.

See the package docstring (`harness.interventions`) for the moves; this module installs them as forward
hooks addressed by batch index, merged per module so one hook does one gather/scatter per step. The hooks
are named (`harness.hooks`: ``moves/<module name>``, ``step_counter``), on the engine edits use too.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from harness.errors import UserError
from harness.hooks import Hooks
from harness.interventions.spec import Branch, Sample, StepWindow

__all__ = ["Hooks", "Move", "StepCounter", "apply_moves", "denoiser_hooks"]


@dataclass
class Move:
    """Copy rows `src` into rows `tgt` (indices into the module's batch) when `steps` is active.

    `source` replaces `src` for injected values (a tensor aligned with `tgt`); `cols` restricts the copy
    to some feature columns (a head subset); `position` restricts it to one token position, `tokens` to a
    token range [start, stop) (the text slice of a joint text-image sequence).
    """

    tgt: torch.Tensor
    src: torch.Tensor | None = None
    source: torch.Tensor | None = None
    cols: torch.Tensor | None = None
    position: int | None = None
    steps: StepWindow = field(default_factory=StepWindow)
    tokens: tuple[int, int] | None = None

    def apply(self, out: torch.Tensor) -> None:
        values = self.source if self.source is not None else out[self.src]
        if self.position is not None:
            out[self.tgt, self.position] = values[:, self.position]
            return
        where = slice(*self.tokens) if self.tokens is not None else slice(None)
        if self.cols is None:
            out[self.tgt, where] = values[:, where].to(out.dtype)
        else:
            block = out[self.tgt, where]
            block[..., self.cols] = values[:, where][..., self.cols].to(out.dtype)
            out[self.tgt, where] = block


def apply_moves(moves: list[Move], output, step: int | None):
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


def _find_row(rows: list[Sample], prompt: str, seed: int, what: str, for_row: int) -> int:
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


def _per_head(rows: list[int], heads: tuple[int, ...] | None, n_heads: int) -> torch.Tensor:
    """Indices of `rows` (all heads, or the subset `heads`) in a per-head layout of rows × heads."""
    return torch.tensor([row * n_heads + h for row in rows for h in (range(n_heads) if heads is None else heads)])


def denoiser_hooks(adapter, rows: list[Sample], cfg: bool, embeddings) -> tuple[Hooks, StepCounter]:
    """Install the hooks that carry out every row's denoiser-side swaps and restores.

    `embeddings(prompt)` returns the positive conditioning of a prompt (for inject-mode sources).
    """
    hooks = Hooks()
    try:
        counter = _install_denoiser_hooks(hooks, adapter, rows, cfg, embeddings)
    except BaseException:
        hooks.remove()
        raise
    return hooks, counter


def _merge(moves: list[Move], device: torch.device) -> list[Move]:
    """One move per (step window, columns, kind): a hook then does one gather/scatter per step for all the
    rows it serves instead of one per row. Index tensors go to the module's device once here, not in every
    hook call (a CPU index into a CUDA tensor is a blocking copy each time)."""
    groups: dict[tuple, list[Move]] = {}
    for move in moves:
        cols = None if move.cols is None else tuple(move.cols.tolist())
        key = (move.steps, cols, move.source is not None, move.position, move.tokens)
        groups.setdefault(key, []).append(move)
    merged = []
    for group in groups.values():
        head = group[0]
        merged.append(Move(
            tgt=torch.cat([m.tgt for m in group]).to(device),
            src=None if head.src is None else torch.cat([m.src for m in group]).to(device),
            source=None if head.source is None else torch.cat([m.source for m in group]),
            cols=None if head.cols is None else head.cols.to(device), position=head.position, steps=head.steps,
            tokens=head.tokens))
    return merged


def _install_denoiser_hooks(hooks: Hooks, adapter, rows: list[Sample], cfg: bool, embeddings) -> StepCounter:
    n = len(rows)
    # The site table (found by its own short generation) before any hook is in place.
    table = adapter.sites if any(r.what for row in rows for r in row.denoiser_restores) else None
    counter = StepCounter(2 * n if cfg else n)
    hooks.pre_forward("step_counter", adapter.denoiser, counter, with_kwargs=True)
    moves: dict[str, tuple[torch.nn.Module, list[Move]]] = {}  # module name -> (module, its moves)
    masks: dict[str, tuple[torch.nn.Module, list[Move]]] = {}  # text site -> (attention, moves of its text mask)
    injected: dict[tuple[int, str], torch.Tensor] = {}  # (projection, source prompt) -> its K or V, once

    def add(name, module, move):
        moves.setdefault(name, (module, []))[1].append(move)

    def inject_value(proj, source: str) -> torch.Tensor:
        key = (id(proj), source)
        if key not in injected:
            embeds = adapter.kv_input(embeddings(source)).to(proj.weight.dtype)
            injected[key] = torch.nn.functional.linear(embeds, proj.weight, proj.bias)
        return injected[key]

    for r, row in enumerate(rows):
        for swap in row.swaps:
            donor = (_find_row(rows, swap.source, row.seed, "donor", r) if swap.mode == "patch" else None)
            for site in swap.sites:
                attn = adapter.module(site)
                tokens = adapter.text_tokens(site)  # None: the projections see text only
                for proj_name, proj in zip(adapter.kv_projection_names(site), adapter.kv_modules(site)):
                    name = f"{site}.{proj_name}"
                    cols = _head_columns(proj, swap.heads, attn.heads)
                    if donor is None:
                        # Injection swaps the conditional half only: both rows' unconditional halves hold
                        # the same empty-prompt K/V, so `branch: both` would copy them onto themselves.
                        tgt = torch.tensor(_branch_indices([r], n, cfg, "cond"))
                        add(name, proj, Move(tgt, source=inject_value(proj, swap.source), cols=cols,
                                             steps=swap.steps, tokens=tokens))
                    else:
                        tgt = torch.tensor(_branch_indices([r], n, cfg, swap.branch))
                        src = torch.tensor(_branch_indices([donor], n, cfg, swap.branch))
                        add(name, proj, Move(tgt, src, cols=cols, steps=swap.steps, tokens=tokens))
                if adapter.masks_text:  # the text's padding mask moves with its K/V
                    mask = adapter.text_mask(embeddings(swap.source)) if donor is None else None
                    masks.setdefault(site, (attn, []))[1].append(_mask_move(mask, r, donor, n, cfg, swap, attn.heads))
        for restore in row.denoiser_restores:
            clean = _find_row(rows, row.prompt, row.seed, "clean", r)
            tgt = torch.tensor(_branch_indices([r], n, cfg, restore.branch))
            src = torch.tensor(_branch_indices([clean], n, cfg, restore.branch))
            target = restore.site if restore.what is None else table[restore.site].restore_module(restore.what)
            add(target, adapter.module(target), Move(tgt, src, steps=restore.steps))
    for name, (module, module_moves) in moves.items():
        merged = _merge(module_moves, next(module.parameters()).device)
        hooks.forward(f"moves/{name}", module, lambda _m, _a, out, merged=merged: apply_moves(merged, out, counter.step))
    for name, (attn, mask_moves) in masks.items():
        merged = _merge(mask_moves, next(attn.parameters()).device)
        hooks.pre_forward(f"mask_moves/{name}", attn, _mask_hook(merged, counter, name), with_kwargs=True)
    return counter


def _mask_move(mask: torch.Tensor | None, row: int, donor: int | None, n: int, cfg: bool, swap, n_heads: int) -> Move:
    """The move of a swap's text mask, in the per-head layout `_mask_hook` makes: the source prompt's mask
    (`mask`, 1 × 1 × tokens) injected into the conditional half, or the donor's rows copied; on every head, or
    on the swap's `heads` only."""
    branch = "cond" if donor is None else swap.branch
    tgt = _per_head(_branch_indices([row], n, cfg, branch), swap.heads, n_heads)
    if donor is None:
        return Move(tgt, source=mask.expand(len(tgt), *mask.shape[1:]), steps=swap.steps)
    return Move(tgt, _per_head(_branch_indices([donor], n, cfg, branch), swap.heads, n_heads), steps=swap.steps)


def _mask_hook(merged: list[Move], counter: StepCounter, site: str):
    """A pre-forward hook that moves rows of a text site's padding mask (its ``attention_mask`` keyword, an
    additive bias rows × 1 × tokens) with the K/V. The mask is first laid out per head, rows × heads, exactly as
    diffusers' `Attention.prepare_attention_mask` lays it out, so rows without a move see the same tensor and a
    head subset gets the donor's mask on its own heads only."""

    def hook(module, args, kwargs):
        if not any(m.steps.active(counter.step) for m in merged):
            return None
        mask = kwargs.get("attention_mask")
        if mask is None:
            raise RuntimeError(f"{site}: the architecture declares a text mask, but the attention was called "
                               "without an attention_mask keyword")
        per_head = mask.repeat_interleave(module.heads, dim=0)
        apply_moves(merged, per_head, counter.step)
        return args, {**kwargs, "attention_mask": per_head}

    return hook

