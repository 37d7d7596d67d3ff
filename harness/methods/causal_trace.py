"""Causal tracing (P1, Basu et al., ICLR 2024): corrupt the concept's token embeddings, restore one site.

Variants are one restore per denoiser site (at every step) and one per text-encoder site × token
position; each (prompt, seed) also gets the ``corrupted`` reference (noise, nothing restored).
"""

from __future__ import annotations

from harness.errors import JobError
from harness.interventions import Corruption, Restore, Sample, StepWindow
from harness.methods.base import Method, Variant, steps_of
from harness.sites import DENOISER_KINDS, Site


class CausalTrace(Method):
    name = "causal_trace"

    def check_prompt(self, i: int, row) -> None:
        # PromptRow itself checks that a concept occurs in its prompt.
        if not row.concept:
            raise ValueError(f"prompts[{i}].concept: required for method 'causal_trace' "
                             "(the words whose token embeddings are corrupted)")

    def check_job(self, job) -> None:
        if job.heads is not None:
            raise ValueError("heads: causal tracing restores a site's whole output; head subsets apply to "
                             "K/V swaps (attn_patch, locogen)")

    def plan(self, job, sites: list[Site]) -> list[Variant]:
        windowed = job.step_start != [0] or job.step_end is not None
        text = [s for s in sites if s.kind not in DENOISER_KINDS]
        if windowed and text:
            raise JobError(f"step_start/step_end: '{text[0].name}' is a text-encoder site, whose restore changes "
                           "the prompt embeddings for every step; restore denoiser sites to use a step window")
        variants = []
        for site in sites:
            if site.kind in DENOISER_KINDS:
                # P1 restores at every step; `step_start`/`step_end` restrict the restore to a step window.
                for start in job.step_start:
                    label = site.label + (f"@s{start}" if len(job.step_start) > 1 or start else "")
                    variants.append(Variant(label, "variant", site.kind, (site.name,), (site.index,), site.index,
                                            start))
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
        corruption = Corruption(prompt.concept, job.noise_scale, job.noise_seed)
        if variant.role == "corrupted":
            return Sample(prompt.prompt, seed, corruption=corruption)
        steps = steps_of(variant, job) if variant.position is None else StepWindow()
        restore = Restore(variant.sites[0], variant.position, steps=steps, branch=job.effective_branch)
        return Sample(prompt.prompt, seed, corruption=corruption, restores=(restore,))

    def design(self, variant: Variant, job, calls: int, mode: str | None) -> dict:
        design = {**super().design(variant, job, calls, mode), "noise_scale": job.noise_scale}
        if variant.role == "variant" and variant.position is None:  # a denoiser restore: its step window
            window = steps_of(variant, job)
            design.update(step_start=window.start, step_end=window.end, steps_patched=window.count(calls))
        return design
