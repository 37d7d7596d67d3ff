"""Causal tracing (P1, Basu et al., ICLR 2024): corrupt the concept's token embeddings, restore one site.

Variants are one restore per denoiser site (at every step) and one per text-encoder site × token
position; each (prompt, seed) also gets the ``corrupted`` reference (noise, nothing restored).

What a restore copies (`restore`): ``output`` (the default, P1's "copy a component's clean activation")
copies the site's output as the module returns it — the hidden *state* at a ResNet or an IF AttnAddedKV
attention, whose output includes the residual, and the *contribution* at attention, feed-forward and
text-encoder sublayers, whose residual is added outside them. ``state`` and ``contribution`` ask for one
of the two explicitly: the contribution of a state site is its residual branch (a ResNet's ``conv2``
output), and the state of a contribution site is refused (`harness.sites`). Rows record which was used.

The noise is κ·σ (`noise_scale` κ = 3 and σ as ROME): σ per text encoder from `noise_std` — the std of
the token-embedding matrix (``embedding``, the default), of the job's concepts' token embeddings
(``subject``, ROME's ``collect_embedding_std``), or a number. Rows record σ (`noise_std`, per encoder).
"""

from __future__ import annotations

from harness.errors import JobError
from harness.interventions import Corruption, Restore, Sample, StepWindow, noise_stds
from harness.methods.base import Method, Variant, steps_of
from harness.sites import DENOISER_KINDS, Site, SiteError


class CausalTrace(Method):
    name = "causal_trace"
    reads = frozenset({"branch", "step_start", "step_end", "noise_scale", "noise_std", "noise_seed", "positions",
                       "restore", "heads"})  # heads: read to refuse it with its own reason

    def __init__(self):
        self._subjects: tuple = (None, ())  # (the job's prompt list, its concepts): computed once per job

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
            what = site.output if job.restore == "output" else job.restore
            try:
                site.restore_module(what)
            except SiteError as exc:
                raise JobError(str(exc)) from None
            if site.kind in DENOISER_KINDS:
                # P1 restores at every step; `step_start`/`step_end` restrict the restore to a step window.
                for start in job.step_start:
                    label = site.label + (f"@s{start}" if len(job.step_start) > 1 or start else "")
                    variants.append(Variant(label, "variant", site.kind, (site.name,), (site.index,), site.index,
                                            start, restore=what))
            else:
                for position in job.positions:
                    variants.append(Variant(f"{site.label}@{position}", "variant", site.kind, (site.name,),
                                            (site.index,), site.index, None, position, restore=what))
        return variants

    def references(self) -> list[Variant]:
        return [Variant("control", "control"), Variant("corrupted", "corrupted")]

    def corruption(self, job, prompt) -> Corruption:
        subjects = ()
        if job.noise_std == "subject":
            if self._subjects[0] is not job.prompts:
                self._subjects = (job.prompts, tuple(dict.fromkeys(row.concept for row in job.prompts)))
            subjects = self._subjects[1]
        return Corruption(prompt.concept, job.noise_scale, job.noise_seed, job.noise_std, subjects)

    def noise_std(self, job, adapter) -> list[float] | None:
        # σ is the same for every row of a job (`embedding`, `subject` pools all its concepts, or a number).
        return noise_stds(adapter, self.corruption(job, job.prompts[0]))

    def bind(self, variant: Variant, job, prompt, seed: int, mode: str | None) -> Sample:
        if variant.role == "control":
            return Sample(prompt.prompt, seed)
        corruption = self.corruption(job, prompt)
        if variant.role == "corrupted":
            return Sample(prompt.prompt, seed, corruption=corruption)
        steps = steps_of(variant, job) if variant.position is None else StepWindow()
        restore = Restore(variant.sites[0], variant.position, steps=steps, branch=job.effective_branch,
                          what=variant.restore)
        return Sample(prompt.prompt, seed, corruption=corruption, restores=(restore,))

    def design(self, variant: Variant, job, calls: int, mode: str | None) -> dict:
        design = {**super().design(variant, job, calls, mode), "noise_scale": job.noise_scale,
                  "restore": variant.restore}
        if variant.role == "variant" and variant.position is None:  # a denoiser restore: its step window
            window = steps_of(variant, job)
            design.update(step_start=window.start, step_end=window.end, steps_patched=window.count(calls))
        return design
