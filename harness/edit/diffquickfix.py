"""DiffQuickFix (P1, docs/methods.md §1.3, §7.4): edit the text encoder's layer-0 self-attention out_proj.

Causal tracing finds that in SD's CLIP text encoder only the first self-attention layer, at the last
subject token, carries a concept to the UNet. DiffQuickFix rewrites that one 768×768 matrix:

    W* = (λ W_old + Σ_i z*_i k_iᵀ)(λ I + Σ_i k_i k_iᵀ)⁻¹,  λ = 0.01

k_i: the *input* of out_proj (the concatenated head outputs) while encoding the concept's augmented
prompts, at the last subject token and, with `use_eos` (default, as the notebook), every later position;
z*_i: the *output* of the unedited out_proj while encoding the target's prompts, at the aligned positions.

The bias: out_proj computes W k + b. The notebook fits W k ≈ z* with z* = W_old k_t + b *including* b,
so the edited layer outputs z* + b — off by the bias. By default loco fits W k ≈ z* − b, so the edited
layer outputs exactly what the original produced for the target; `reference_bias: true` reproduces the
notebook.
"""

from __future__ import annotations

import torch

from harness.edit.keys import build_pairs, last_subject
from harness.edit.solver import ridge_edit
from harness.edit.targets import resolve_sites
from harness.edit.weights import EditResult, Timer


@torch.no_grad()
def capture(encoder, tokenizer, module: torch.nn.Module, prompts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """(input, output) of `module` while `encoder` encodes `prompts` (N × 77 × d each, float64)."""
    seen = {}

    def hook(_m, args, out):
        seen["in"], seen["out"] = args[0].detach(), out.detach()

    ids = tokenizer(prompts, padding="max_length", max_length=77, truncation=True, return_tensors="pt").input_ids
    handle = module.register_forward_hook(hook)
    try:
        encoder(ids.to(next(encoder.parameters()).device))
    finally:
        handle.remove()
    return seen["in"].to(torch.float64), seen["out"].to(torch.float64)


def run(spec, adapter) -> EditResult:
    sites = resolve_sites(spec, adapter)
    result = EditResult()
    for site in sites:
        encoder, tokenizer = adapter.text_encoders()[site.component]
        out_proj = adapter.module(site.name).out_proj
        with Timer() as timer:
            pairs = []
            for i, edit in enumerate(spec.edits):
                pairs += build_pairs(tokenizer, adapter.pipeline_text, edit.concept, edit.target,
                                     spec.augmentations(), spec.eos, f"edits[{i}]")
            key_prompts = [adapter.pipeline_text(p.key_prompt) for p in pairs]
            value_prompts = [adapter.pipeline_text(p.value_prompt) for p in pairs]
            key_in, _ = capture(encoder, tokenizer, out_proj, key_prompts)
            _, value_out = capture(encoder, tokenizer, out_proj, value_prompts)
            keys = torch.cat([key_in[i, list(p.key_positions)] for i, p in enumerate(pairs)])
            values = torch.cat([value_out[i, list(p.value_positions)] for i, p in enumerate(pairs)])
            if out_proj.bias is not None and not spec.reference_bias:
                values = values - out_proj.bias.detach().to(torch.float64)
            preserve = None
            if spec.preserve:
                texts = [adapter.pipeline_text(c) for c in spec.preserve]  # not in P1; offered for comparison
                inputs, _ = capture(encoder, tokenizer, out_proj, texts)
                preserve = torch.stack([inputs[i, last_subject(tokenizer, t, c)]
                                        for i, (t, c) in enumerate(zip(texts, spec.preserve))])
        result.extract_seconds += timer.seconds
        solution = ridge_edit(out_proj.weight, keys, values, spec.lambda_k, preserve=preserve,
                              preserve_scale=spec.preserve_scale)
        result.add(f"{site.name}.out_proj.weight", out_proj.weight, solution)
    return result
