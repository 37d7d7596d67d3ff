"""Neuron-level editing (P2, docs/methods.md §2.4): silence the few K/V output neurons that carry a concept.

Detection: for each chosen cross-attention layer, run its K and V projections on the prompt embeddings of
concept prompts (the concept in the templates) and of neutral prompts (the same templates with the
target), at the last subject token. Per output neuron, a two-sample z-score

    z = (μ_concept − μ_neutral) / sqrt(σ²_concept / n_concept + σ²_neutral / n_neutral)

ranks the neurons by |z|; the top N are stored with their neutral mean.

Edit (at inference, installed by `harness.edit.install`): those neurons of K and V are set to their
neutral means at every token position, on the conditional CFG half. Nothing is written into the weights.
The reference code computes all this and then leaves the overwrite commented out, so its "neuron" runs
equal the unedited model; here the overwrite is the edit (and a test checks it changes the output).
`reference_position: true` reads activations at position 76 (a padding position) as the reference code.
"""

from __future__ import annotations

import re

import torch

from harness.edit.keys import MAX_LENGTH, EditInputError, check_templates, kv_subject
from harness.edit.targets import resolve_sites
from harness.edit.weights import Timer


def _clean(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


def _group(adapter, templates, words_list) -> tuple[list[str], list[int]]:
    prompts, positions = [], []
    for words in words_list:
        for template in templates:
            prompt = _clean(template.format(words))
            try:
                positions.append(kv_subject(adapter, prompt, words))
            except ValueError:
                continue
            prompts.append(prompt)
    return prompts, positions


def zscores(concept: torch.Tensor, neutral: torch.Tensor) -> torch.Tensor:
    """Welch two-sample z per column of (n_c, d) and (n_n, d) activations."""
    se = (concept.var(0, unbiased=True) / concept.shape[0] + neutral.var(0, unbiased=True) / neutral.shape[0])
    return (concept.mean(0) - neutral.mean(0)) / se.sqrt().clamp_min(1e-12)


@torch.no_grad()
def run(spec, adapter) -> dict:
    templates = spec.augmentations()
    neutral_templates = spec.neutral_templates or templates
    check_templates(templates)
    check_templates(neutral_templates)
    sites = resolve_sites(spec, adapter)
    with Timer() as timer:
        c_prompts, c_pos = _group(adapter, templates, [e.concept for e in spec.edits])
        n_prompts, n_pos = _group(adapter, neutral_templates, [e.target for e in spec.edits])
        for name, prompts in (("concept", c_prompts), ("neutral", n_prompts)):
            if len(prompts) < 2:
                raise EditInputError(f"templates: neuron detection needs at least 2 {name} prompts that tokenize "
                                     f"the words, got {len(prompts)}")
        if spec.reference_position:
            c_pos, n_pos = [MAX_LENGTH - 1] * len(c_prompts), [MAX_LENGTH - 1] * len(n_prompts)
        c_emb = adapter.kv_input(adapter.encode(c_prompts))
        n_emb = adapter.kv_input(adapter.encode(n_prompts))
        c_x = c_emb[torch.arange(len(c_prompts)), torch.tensor(c_pos)]
        n_x = n_emb[torch.arange(len(n_prompts)), torch.tensor(n_pos)]
        edits = {}
        for site in sites:
            per_proj = {}
            for proj_name, proj in zip(adapter.kv_projection_names(site.name), adapter.kv_modules(site.name)):
                if spec.top_n > proj.out_features:
                    raise EditInputError(f"top_n: {spec.top_n} exceeds the {proj.out_features} output neurons of "
                                         f"{site.name}.{proj_name}")
                a, b = proj(c_x).to(torch.float64), proj(n_x).to(torch.float64)
                z = zscores(a, b)
                top = z.abs().argsort(descending=True)[: spec.top_n]
                per_proj[proj_name] = {"indices": top.tolist(), "values": b.mean(0)[top].tolist(),
                                       "z": z[top].tolist()}
            edits[site.name] = per_proj
    return {"kind": "neurons", "sites": edits, "branch": spec.branch, "top_n": spec.top_n,
            "position": "reference_76" if spec.reference_position else "last_subject",
            "concept_prompts": c_prompts, "neutral_prompts": n_prompts, "detect_seconds": timer.seconds}
