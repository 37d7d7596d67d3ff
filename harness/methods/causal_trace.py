"""Causal tracing (P1, Basu et al., ICLR 2024): corrupt the concept's token embeddings, restore one site.

Variants are one restore per denoiser site (at every step) and one per text-encoder site × token
position; each (prompt, seed) also gets the ``corrupted`` reference (noise, nothing restored).

What a restore copies (`restore`): ``output`` (the default, P1's "copy a component's clean activation")
copies the site's output as the module returns it — the hidden *state* at a ResNet or an IF AttnAddedKV
attention, whose output includes the residual, and the *contribution* at attention, feed-forward and
text-encoder sublayers, whose residual is added outside them. ``state`` and ``contribution`` ask for one
of the two explicitly: the contribution of a state site is its residual branch (a ResNet's ``conv2``
output), and the state of a contribution site is refused (`harness.sites`). Rows record which was used.

Which CFG halves a denoiser restore copies (`branch`): **both** by default. The clean run the state is
copied from has both halves; under guidance the corrupted row's unconditional half follows the
corrupted latents, and a restore of the conditional half alone makes the guided difference
(cond − uncond) × scale out of two different trajectories. On toyworld that broke the image (restoring
resnet#7 in the cond half only: MSE 4080 to the clean image against 92 for the corrupted run itself; both
halves: 25.7; issue 16) and made late ResNets look anti-causal. ``branch: cond`` keeps the cond-only
restore for comparison; rows record the halves (`branch`). Text-encoder restores change the conditional
prompt embedding only (the unconditional half encodes the empty prompt, never corrupted): their rows
say ``cond``.

The noise is κ·σ (`noise_scale` κ = 3 and σ as ROME): σ per text encoder from `noise_std` — by default
the std of the job's concepts' token embeddings (``subject``, ROME's ``collect_embedding_std``), or the
std of the whole token-embedding matrix (``embedding``), or a number. The whole matrix is a poor σ for a
model that trained few of its rows (toyworld: 36 of 49,408, σ 0.019 against 0.043 for its trained rows),
and a corruption that weak leaves the attribute in the image. Rows record the rule (`noise_rule`) and σ
(`noise_std`, per encoder).

`noise_draws` N > 1 averages over noise as ROME does (its 10 samples): the corrupted row and every restore
are generated once per draw, draw d with noise seed ``noise_seed + d``, each its own row (`noise_draw` =
d), so a prompt's draws are averaged within the prompt and intervals stay over prompts. It multiplies
the sweep's generations (except the clean control's) by N; `loco plan` shows it.
"""

from __future__ import annotations

from dataclasses import replace

from harness.errors import JobError
from harness.interventions import Corruption, Restore, Sample, StepWindow, noise_stds
from harness.methods.base import Method, Variant, steps_of
from harness.sites import DENOISER_KINDS, Site, SiteError


class CausalTrace(Method):
    name = "causal_trace"
    default_branch = "both"  # denoiser restores copy both CFG halves of the clean run (module docstring)
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
        if not isinstance(job.noise_std, str) and not job.noise_std > 0:
            raise ValueError(f"noise_std: expected 'embedding', 'subject' or a number > 0, got {job.noise_std}")
        if job.heads is not None:
            raise ValueError("heads: causal tracing restores a site's whole output; head subsets apply to "
                             "K/V swaps (attn_patch, locogen)")

    def plan(self, job, sites: list[Site]) -> list[Variant]:
        windowed = job.step_start != [0] or job.step_end is not None
        text = [s for s in sites if s.kind not in DENOISER_KINDS]
        if windowed and text:
            raise JobError(f"step_start/step_end: '{text[0].name}' is a text-encoder site, whose restore changes "
                           "the prompt embeddings for every step; restore denoiser sites to use a step window")
        recipes = []
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
                    recipes.append(Variant(label, "variant", site.kind, (site.name,), (site.index,), site.index,
                                           start, restore=what))
            else:
                for position in job.positions:
                    recipes.append(Variant(f"{site.label}@{position}", "variant", site.kind, (site.name,),
                                           (site.index,), site.index, None, position, restore=what))
        return [replace(v, noise_draw=d) for v in recipes for d in range(job.noise_draws)]

    def references(self, job) -> list[Variant]:
        return [Variant("control", "control"),
                *(Variant("corrupted", "corrupted", noise_draw=d) for d in range(job.noise_draws))]

    def corruption(self, job, prompt, draw: int = 0) -> Corruption:
        subjects = ()
        if job.noise_std == "subject":
            if self._subjects[0] is not job.prompts:
                self._subjects = (job.prompts, tuple(dict.fromkeys(row.concept for row in job.prompts)))
            subjects = self._subjects[1]
        return Corruption(prompt.concept, job.noise_scale, job.noise_seed + draw, job.noise_std, subjects)

    def hashed(self, job, data: dict) -> dict:
        """σ's rule and the CFG halves are hashed as they apply: their defaults changed (subject σ, both halves;
        issue 16), so a run made under the old ones is never resumed into (an unset branch hashes as "both")."""
        return data | {"branch": job.effective_branch}

    def noise_std(self, job, adapter) -> list[float] | None:
        # σ is the same for every row of a job (`embedding`, `subject` pools all its concepts, or a number).
        return noise_stds(adapter, self.corruption(job, job.prompts[0]))

    def bind(self, variant: Variant, job, prompt, seed: int, mode: str | None) -> Sample:
        if variant.role == "control":
            return Sample(prompt.prompt, seed)
        corruption = self.corruption(job, prompt, variant.noise_draw or 0)
        if variant.role == "corrupted":
            return Sample(prompt.prompt, seed, corruption=corruption)
        steps = steps_of(variant, job) if variant.position is None else StepWindow()
        restore = Restore(variant.sites[0], variant.position, steps=steps, branch=job.effective_branch,
                          what=variant.restore)
        return Sample(prompt.prompt, seed, corruption=corruption, restores=(restore,))

    def design(self, variant: Variant, job, calls: int, mode: str | None) -> dict:
        design = super().design(variant, job, calls, mode)
        design.update(noise_scale=job.noise_scale, restore=variant.restore, noise_draw=variant.noise_draw,
                      noise_rule=job.noise_std if isinstance(job.noise_std, str) else "fixed")
        if variant.role == "variant" and variant.position is None:  # a denoiser restore: its step window
            window = steps_of(variant, job)
            design.update(step_start=window.start, step_end=window.end, steps_patched=window.count(calls))
        elif variant.role == "variant":  # a text-encoder restore changes the conditional prompt embedding only
            design["branch"] = "cond"
        return design
