"""Causal tracing (P1, Basu et al., ICLR 2024): corrupt the attribute's token embeddings, restore one site.

Variants are one restore per denoiser site (at every step) and one per text-encoder site × token
position; each (prompt, seed) also gets the ``corrupted`` reference (noise, nothing restored).
"""

from __future__ import annotations

from harness.interventions import Corruption, Restore, Sample
from harness.methods.base import Method, Variant
from harness.sites import DENOISER_KINDS, Site


class CausalTrace(Method):
    name = "causal_trace"

    def check_prompt(self, i: int, row) -> None:
        if not row.attribute:
            raise ValueError(f"prompts[{i}].attribute: required for method 'causal_trace' "
                             "(the words whose token embeddings are corrupted)")
        if row.attribute.lower() not in row.prompt.lower():
            raise ValueError(f"prompts[{i}].attribute: '{row.attribute}' does not occur in prompt "
                             f"'{row.prompt}'")

    def plan(self, job, sites: list[Site]) -> list[Variant]:
        variants = []
        for site in sites:
            if site.kind in DENOISER_KINDS:
                variants.append(Variant(site.label, "variant", site.kind, (site.name,), (site.index,), site.index, 0))
            else:
                for position in job.positions:
                    variants.append(Variant(f"{site.label}@{position}", "variant", site.kind, (site.name,),
                                            (site.index,), site.index, None, position))
        return variants

    def references(self) -> list[Variant]:
        return [Variant("control", "control"), Variant("corrupted", "corrupted")]

    def bind(self, variant: Variant, job, prompt, seed: int, mode: str | None) -> Sample:
        if variant.role == "control":
            return Sample(prompt.prompt, seed)
        corruption = Corruption(prompt.attribute, job.noise_scale, job.noise_seed)
        if variant.role == "corrupted":
            return Sample(prompt.prompt, seed, corruption=corruption)
        restore = Restore(variant.sites[0], variant.position, branch=job.effective_branch)
        return Sample(prompt.prompt, seed, corruption=corruption, restores=(restore,))

    def design(self, variant: Variant, job, calls: int, mode: str | None) -> dict:
        return {**super().design(variant, job, calls, mode), "noise_scale": job.noise_scale}
