"""TIME (Orgad, Kawar, Belinkov, ICCV 2023; docs/methods.md §11.1) as a baseline through the same solver.

    W = (λ W_old + Σ_i v_i* c_iᵀ)(λ I + Σ_i c_i c_iᵀ)⁻¹,  λ = 0.1

Keys are *every* token row (all 77, BOS to padding) of the source prompt's embedding; values are the
original projection of the destination prompt's row at the aligned index. Since source and destination
share their template, the rows before the concept pair with themselves (they act as "keep this"
constraints), the concept's tokens pair with the target's tokens (spread evenly when their lengths
differ), and the rows after it pair one to one with the destination's tail, the last repeating position
76 — TIME's own alignment, written for templates. Edits to_v of every cross-attention layer; to_k too with
`with_to_k: true` (the paper runs use it).
"""

from __future__ import annotations

import torch

from harness.edit.crossattn import run_kv
from harness.edit.keys import MAX_LENGTH, EditInputError, Pair, check_templates, gather, kv_subject
from harness.edit.weights import EditResult


def _span(adapter, prompt: str, words: str) -> list[int]:
    """Token positions of `words` in `prompt`, counted in the sequence the K/V read."""
    if not words.strip():
        return [kv_subject(adapter, prompt, words)]
    return adapter.kv_positions(prompt, words)["span"]


def alignment(key_span: list[int], value_span: list[int]) -> tuple[int, ...]:
    """Destination index for every source index 0..76 (see the module docstring)."""
    k0, k1, v0, v1 = key_span[0], key_span[-1], value_span[0], value_span[-1]
    out = []
    for i in range(MAX_LENGTH):
        if i < k0:
            j = min(i, v0)
        elif i <= k1:
            j = v0 + round((i - k0) * (v1 - v0) / max(1, k1 - k0))
        else:
            j = v1 + (i - k1)
        out.append(min(j, MAX_LENGTH - 1))
    return tuple(out)


def time_pairs(adapter, edits, templates: list[str], use_eos: bool) -> tuple[torch.Tensor, torch.Tensor]:
    check_templates(templates)
    pairs = []
    for i, edit in enumerate(edits):
        before = len(pairs)
        for template in templates:
            kp, vp = template.format(edit.concept), template.format(edit.target)
            try:
                ks = _span(adapter, kp, edit.concept)
                vs = _span(adapter, vp, edit.target)
            except ValueError:
                continue
            pairs.append(Pair(kp, vp, tuple(range(MAX_LENGTH)), alignment(ks, vs)))
        if len(pairs) == before:
            raise EditInputError(f"edits[{i}].concept: no augmentation prompt tokenizes '{edit.concept}'")
    prompts = list(dict.fromkeys([p.key_prompt for p in pairs] + [p.value_prompt for p in pairs]))
    embeds = adapter.kv_input(adapter.encode(prompts)).to(torch.float64)
    return gather(embeds, prompts, pairs, value=False), gather(embeds, prompts, pairs, value=True)


def run(spec, adapter) -> EditResult:
    lambdas = {"to_v": spec.lambda_k} | ({"to_k": spec.lambda_k} if spec.with_to_k else {})
    return run_kv(spec, adapter, lambdas, pairs=time_pairs)
