"""Methods: turn a job into the list of variants a sweep generates, and a variant into a `Row`.

A *variant* is one intervention recipe, independent of prompt and seed ("swap K/V at cross-attention
layers 8–9 from step 0"); binding it to a prompt row and a seed gives a `Row` to generate. Every
(prompt, seed) also gets *reference* rows: ``control`` (the prompt, un-intervened: every metric compares
against it), ``target`` (prompt B un-intervened: the donor for patching and the "swap everything" upper
bound) and, for causal tracing, ``corrupted`` (noise on the attribute, nothing restored).

* LocoGen (P2, Algorithm 1): windows of m consecutive text-attention layers, every start 0..M−m.
* Attention patching (P3): windows (default m=1) × step_start values × optional head subset.
* Causal tracing (P1): one restore per denoiser site, and per text-encoder site × token position.
"""

from __future__ import annotations

from dataclasses import dataclass

from harness.interventions import Corruption, KVSwap, Restore, Row, StepWindow
from harness.jobs import JobError, JobSpec, PromptRow
from harness.sites import DENOISER_KINDS, TEXT_KINDS, Site, SiteError, SiteTable

ROLES = ("control", "target", "corrupted", "variant")


@dataclass(frozen=True)
class Variant:
    """One intervention recipe of a sweep (or a reference row when `role` is not 'variant')."""

    label: str
    role: str = "variant"
    kind: str | None = None
    sites: tuple[str, ...] = ()
    indices: tuple[int, ...] = ()
    window_start: int | None = None
    step_start: int | None = None
    position: str | None = None

    @property
    def window_size(self) -> int:
        return len(self.sites)

    @property
    def site(self) -> str | None:
        """The site, or for a window its sites joined with '+'."""
        return "+".join(self.sites) if self.sites else None


def _window_label(kind: str, indices: tuple[int, ...]) -> str:
    return f"{kind}#{indices[0]}" if len(indices) == 1 else f"{kind}#{indices[0]}-{indices[-1]}"


def select_sites(job: JobSpec, table: SiteTable) -> list[Site]:
    """The job's sites, defaulting to every site its method applies to; checked against the method."""
    allowed = TEXT_KINDS if job.method in ("locogen", "attn_patch") else tuple(table.kinds())
    default = [k for k in table.kinds() if k in allowed]
    sel = job.sites
    try:
        if sel is None:
            sites = table.select(kinds=default)
        else:
            sites = table.select(kinds=sel.kind or (None if sel.names else default), indices=sel.index,
                                 names=sel.names)
            if sel.names and not sel.kind:  # a glob keeps the sites the method applies to; a name is as written
                sites = [s for s in sites if s.kind in allowed or s.name in sel.names]
    except SiteError as exc:
        raise JobError(str(exc)) from None
    wrong = [s for s in sites if s.kind not in allowed]
    if wrong:
        raise JobError(f"sites: '{wrong[0].name}' is a {wrong[0].kind} site; method '{job.method}' intervenes "
                       f"on {' or '.join(allowed)} sites")
    if not sites:
        raise JobError("sites: the selection is empty")
    return sites


def plan_variants(job: JobSpec, table: SiteTable) -> list[Variant]:
    """Every variant of the sweep, in a stable order (the order rows and units are numbered in)."""
    sites = select_sites(job, table)
    if job.method == "causal_trace":
        return _causal_variants(job, sites)
    kinds = {s.kind for s in sites}
    if len(kinds) > 1:
        raise JobError(f"sites: windows need one kind of site, got {', '.join(sorted(kinds))}")
    if job.window > len(sites):
        raise JobError(f"window: {job.window} is larger than the {len(sites)} selected sites")
    variants = []
    for step_start in job.step_start:
        for start in range(len(sites) - job.window + 1):
            chunk = sites[start : start + job.window]
            indices = tuple(s.index for s in chunk)
            label = _window_label(chunk[0].kind, indices)
            if len(job.step_start) > 1 or step_start:
                label += f"@s{step_start}"
            variants.append(Variant(label, "variant", chunk[0].kind, tuple(s.name for s in chunk), indices,
                                    indices[0], step_start))
    return variants


def _causal_variants(job: JobSpec, sites: list[Site]) -> list[Variant]:
    variants = []
    for site in sites:
        if site.kind in DENOISER_KINDS:
            variants.append(Variant(site.label, "variant", site.kind, (site.name,), (site.index,), site.index, 0))
        else:
            for position in job.positions:
                variants.append(Variant(f"{site.label}@{position}", "variant", site.kind, (site.name,),
                                        (site.index,), site.index, None, position))
    return variants


def references(job: JobSpec) -> list[Variant]:
    """Reference rows generated once per (prompt, seed)."""
    if job.method == "causal_trace":
        return [Variant("control", "control"), Variant("corrupted", "corrupted")]
    return [Variant("control", "control"), Variant("target", "target")]


def resolve_mode(job: JobSpec, adapter) -> str:
    """inject where it is exact, patch otherwise; an explicit inject where it is not exact is an error."""
    if job.mode == "inject" and not adapter.kv_input_is_prompt_embeds:
        raise JobError(f"mode: 'inject' is not exact for {adapter.arch} (its text K/V inputs are not the prompt "
                       "embeddings); use 'patch' or 'auto'")
    if job.mode == "auto":
        return "inject" if adapter.kv_input_is_prompt_embeds else "patch"
    return job.mode


def bind(variant: Variant, job: JobSpec, prompt: PromptRow, seed: int, mode: str) -> Row:
    """The row that generates `variant` for one prompt and seed."""
    corruption = (Corruption(prompt.concept, job.noise_scale, job.noise_seed)
                  if job.method == "causal_trace" and variant.role != "control" else None)
    if variant.role == "control":
        return Row(prompt.prompt, seed)
    if variant.role == "target":
        return Row(prompt.target, seed)
    if variant.role == "corrupted":
        return Row(prompt.prompt, seed, corruption=corruption)
    if job.method == "causal_trace":
        restore = Restore(variant.sites[0], variant.position, branch=job.effective_branch)
        return Row(prompt.prompt, seed, corruption=corruption, restores=(restore,))
    steps = StepWindow(variant.step_start or 0, job.step_end)
    heads = tuple(job.heads) if job.heads else None
    swap = KVSwap(variant.sites, prompt.target, mode, heads, steps, job.effective_branch)
    return Row(prompt.prompt, seed, swaps=(swap,))
