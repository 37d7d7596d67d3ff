"""Which Linear modules a fine-tune adapts: the projections of the chosen attention sites.

A fine-tune names attention *sites* (the harness's site table: forward-order indices, the papers' layer
numbers) in one of four ways — a candidate set a sweep localized, named sites, a baseline over a whole
kind, or N random text-attention layers — and `projections` names the Linear layers inside each site
that get a LoRA (P3: ``to_q, to_k, to_v, to_out.0``). The result is the exact list of denoiser module
paths handed to PEFT's `LoraConfig(target_modules=...)`: PEFT matches a full path only to itself, so the
adapter's keys hold these modules and no other.

Baselines (P3's): ``all_attention`` is every attention module of the denoiser, self and cross (P3's
"all layers"); ``all_cross_attention`` every text-reading one (cross-attention, SD3's joint attention);
``random: N`` draws N of the text-reading ones with the spec's seed (P3's "3 random layers").
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import torch

from harness.errors import did_you_mean
from harness.finetune.spec import FinetuneError, FinetuneSpec
from harness.sites import TEXT_KINDS, Site

ATTENTION_KINDS = ("self_attn", *TEXT_KINDS)


@dataclass(frozen=True)
class Targets:
    sites: list[Site]
    modules: list[str]  # denoiser-relative module paths, PEFT's target_modules


def select_sites(spec: FinetuneSpec, adapter) -> list[Site]:
    """The attention sites `spec` adapts, in forward order."""
    table = adapter.sites
    if spec.candidates:
        from harness.edit.targets import read_candidates

        sites = [table.resolve(name) for name in read_candidates(spec.candidates, spec, adapter)]
    elif spec.sites is not None:
        sites = table.select(spec.sites.kind, spec.sites.index, spec.sites.names)
    elif spec.baseline is not None:
        kinds = ATTENTION_KINDS if spec.baseline == "all_attention" else TEXT_KINDS
        sites = [s for kind in kinds for s in table.of_kind(kind)]
    else:
        pool = [s for kind in TEXT_KINDS for s in table.of_kind(kind)]
        if spec.random > len(pool):
            raise FinetuneError(f"random: {spec.random} layers asked, the model has {len(pool)} text-attention layers")
        sites = random.Random(spec.seed).sample(pool, spec.random)
    if not sites:
        raise FinetuneError("sites: the selection is empty")
    for site in sites:
        if site.component != adapter.denoiser_name:
            raise FinetuneError(f"sites: '{site.name}' ({site.label}) is in the {site.component}; loco finetune "
                                f"adapts the {adapter.denoiser_name} (P3's LoRA), name its attention layers")
        if site.kind not in ATTENTION_KINDS:
            raise FinetuneError(f"sites: '{site.name}' ({site.label}) is a {site.kind} site, not an attention layer "
                                f"({', '.join(ATTENTION_KINDS)})")
    order = {name: i for i, name in enumerate(s.name for s in table.sites)}
    return sorted(dict.fromkeys(sites), key=lambda s: order[s.name])


def resolve_targets(spec: FinetuneSpec, adapter) -> Targets:
    """The sites and the module paths (site path + projection) to adapt; every projection must be a Linear
    layer of every chosen site."""
    sites = select_sites(spec, adapter)
    modules = []
    for site in sites:
        attention = adapter.module(site.name)
        linears = [n for n, m in attention.named_modules() if isinstance(m, torch.nn.Linear)]
        for projection in spec.projections:
            if projection not in linears:
                raise FinetuneError(f"projections: '{projection}' is not a Linear layer of '{site.name}' "
                                    f"({site.label}){did_you_mean(projection, linears)}; it has {', '.join(linears)}")
            modules.append(f"{site.module_path}.{projection}")
    return Targets(sites, modules)
