"""K/V swap methods: LocoGen (P2) and attention activation patching (P3).

Both feed another prompt's text to the keys and values of a window of text-attention layers; they differ
in their defaults (P3 patches both CFG halves and sweeps `step_start`; LocoGen swaps the conditional
half from step 0) and in the metric their papers rank by.
"""

from __future__ import annotations

from harness.errors import JobError, did_you_mean
from harness.interventions import KVSwap, Sample
from harness.methods.base import Method, Variant, consecutive_runs, steps_of, window_label
from harness.sites import TEXT_KINDS, Site, SiteTable


class KVSwapMethod(Method):
    joint_sets = True
    reads = frozenset({"window", "site_sets", "heads", "mode", "branch", "step_start", "step_end"})

    def check_prompt(self, i: int, row) -> None:
        if not row.target:
            raise ValueError(f"prompts[{i}].target: required for method '{self.name}' "
                             "(the prompt fed to the intervened layers)")

    def allowed_kinds(self, table: SiteTable) -> tuple[str, ...]:
        return TEXT_KINDS

    def plan(self, job, sites: list[Site]) -> list[Variant]:
        if job.site_sets is not None:
            return self.plan_sets(job, sites)
        if job.window > len(sites):
            raise JobError(f"window: {job.window} is larger than the {len(sites)} selected sites")
        # Windows are m consecutive layers of one kind: they slide within each run of consecutive indices of
        # the selection and never across a gap (a window labelled #3-8 must hold layers 3..8) or from one kind
        # to another (FLUX: joint_attn#0-18, then single_attn#0-37).
        runs = consecutive_runs(sites)
        if all(len(run) < job.window for run in runs):
            present = {s.index for s in sites}
            lo, hi = min(present), max(present)
            missing = [i for i in range(lo, hi + 1) if i not in present]
            raise JobError(f"window: no {job.window} consecutive layers in the selection (indices "
                           f"{_ranges(missing)} are missing); select consecutive layers or a smaller window")
        chunks = [run[i : i + job.window] for run in runs for i in range(len(run) - job.window + 1)]
        variants = []
        for step_start in job.step_start:
            for chunk in chunks:
                indices = tuple(s.index for s in chunk)
                label = window_label(chunk[0].kind, indices)
                if len(job.step_start) > 1 or step_start:
                    label += f"@s{step_start}"
                variants.append(Variant(label, "variant", chunk[0].kind, tuple(s.name for s in chunk), indices,
                                        indices[0], step_start))
        return variants

    def plan_sets(self, job, sites: list[Site]) -> list[Variant]:
        """One variant per explicit site set (`site_sets`, e.g. a minimal-set search): its sites are swapped
        jointly. Each set is one kind, in forward order; label ``cross_attn#8+9+12``."""
        by_name = {s.name: s for s in sites}
        variants = []
        for n, names in enumerate(job.site_sets):
            unknown = [name for name in names if name not in by_name]
            if unknown:
                raise JobError(f"site_sets[{n}]: '{unknown[0]}' is not one of the job's {self.name} sites"
                               f"{did_you_mean(unknown[0], by_name)}")
            chosen = sorted((by_name[name] for name in names), key=lambda s: s.index)
            kinds = {s.kind for s in chosen}
            if len(kinds) > 1:
                raise JobError(f"site_sets[{n}]: expected sites of one kind, got {', '.join(sorted(kinds))}")
            indices = tuple(s.index for s in chosen)
            for step_start in job.step_start:
                label = f"{chosen[0].kind}#{'+'.join(map(str, indices))}" + (f"@s{step_start}" if step_start else "")
                variants.append(Variant(label, "variant", chosen[0].kind, tuple(s.name for s in chosen), indices,
                                        None, step_start))
        return variants

    def references(self, job) -> list[Variant]:
        return [Variant("control", "control"), Variant("target", "target")]

    def resolve_mode(self, job, adapter) -> str:
        """inject where it is exact, patch otherwise; an explicit inject where it is not exact is an error."""
        if job.mode == "inject" and not adapter.kv_input_is_prompt_embeds:
            raise JobError(f"mode: 'inject' is not exact for {adapter.arch} (its text K/V inputs are not the "
                           "prompt embeddings); use 'patch' or 'auto'")
        if job.mode == "auto":
            return "inject" if adapter.kv_input_is_prompt_embeds else "patch"
        return job.mode

    def applied_branch(self, job, mode: str | None) -> str:
        """Injection swaps the conditional half only, whatever `branch` says: the unconditional half's K/V
        come from the same empty prompt in both runs, so swapping them would copy them onto themselves."""
        return "cond" if mode == "inject" else job.effective_branch

    def bind(self, variant: Variant, job, prompt, seed: int, mode: str | None) -> Sample:
        if variant.role == "control":
            return Sample(prompt.prompt, seed)
        if variant.role == "target":
            return Sample(prompt.target, seed)
        heads = tuple(job.heads) if job.heads else None
        swap = KVSwap(variant.sites, prompt.target, mode, heads, steps_of(variant, job), job.effective_branch)
        return Sample(prompt.prompt, seed, swaps=(swap,))

    def design(self, variant: Variant, job, calls: int, mode: str | None) -> dict:
        if variant.role != "variant":
            return super().design(variant, job, calls, mode)
        return {"step_start": variant.step_start, "step_end": job.step_end,
                "steps_patched": steps_of(variant, job).count(calls),
                "heads": list(job.heads) if job.heads else None, "mode": mode, "noise_scale": None,
                "noise_rule": None, "noise_draw": None, "restore": None}


class LocoGen(KVSwapMethod):
    """LocoGen (Basu et al., ICML 2024): the target prompt at a window of m consecutive layers."""

    name = "locogen"


class AttnPatch(KVSwapMethod):
    """Attention activation patching (Staniszewski et al., ICLR 2025): prompt B's text-side K/V at one
    layer (or window, or head subset) from `step_start` on, on both CFG halves."""

    name = "attn_patch"
    default_branch = "both"


def _ranges(indices: list[int]) -> str:
    """[4, 5, 6, 9] -> '4-6, 9'."""
    parts, start = [], None
    for i, value in enumerate(indices):
        if start is None:
            start = value
        if i + 1 == len(indices) or indices[i + 1] != value + 1:
            parts.append(str(start) if start == value else f"{start}-{value}")
            start = None
    return ", ".join(parts)
