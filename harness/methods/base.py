"""The method interface: what every localization method answers, and the variant it plans.

A method decides which sites it applies to, which variants a job sweeps, which reference rows each
(prompt, seed) gets, how a variant becomes a `Sample` for one prompt and seed, and which design columns
its result rows carry. `harness.methods.registry` lists the methods by their job name.
"""

from __future__ import annotations

from dataclasses import dataclass

from harness.errors import JobError
from harness.interventions import Sample, StepWindow
from harness.sites import Site, SiteError, SiteTable


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
    restore: str | None = None  # causal tracing: "state" or "contribution" (harness.sites)
    noise_draw: int | None = None  # causal tracing: which of the job's `noise_draws` (None: no noise)

    @property
    def key(self) -> str:
        """The variant's identity within a sweep (row and unit ids): its label, and its noise draw when it
        has one above 0 (every draw of a restore shares the label, so rankings pool them per prompt)."""
        return self.label if not self.noise_draw else f"{self.label}~draw{self.noise_draw}"

    @property
    def window_size(self) -> int:
        return len(self.sites)

    @property
    def site(self) -> str | None:
        """The site, or for a window its sites joined with '+'."""
        return "+".join(self.sites) if self.sites else None


CONTROL = Variant("control", "control")
# Job keys that only some methods read (the rest — model, prompts, seeds, sampler, metrics — every method does).
METHOD_KEYS = ("window", "site_sets", "heads", "mode", "branch", "step_start", "step_end", "noise_scale",
               "noise_std", "noise_seed", "positions", "restore")


class Method:
    """One localization method. Subclasses set `name` and override what differs."""

    name: str = ""
    default_branch: str = "cond"  # CFG halves intervened on when the job does not say
    joint_sets: bool = False  # can one variant intervene on an explicit set of sites (job key `site_sets`)
    # The method-specific job keys this method reads (`METHOD_KEYS`); one it does not read is refused when
    # set to anything but its default, rather than silently ignored (`window` on causal tracing).
    reads: frozenset[str] = frozenset()

    # ---- job validation ----------------------------------------------------------------------------
    def check_prompt(self, i: int, row) -> None:
        """Raise ValueError naming `prompts[i].<field>` when the prompt row lacks what the method needs."""

    def check_job(self, job) -> None:
        """Raise ValueError naming the job key when the job sets something the method cannot apply."""

    # ---- planning ----------------------------------------------------------------------------------
    def allowed_kinds(self, table: SiteTable) -> tuple[str, ...]:
        """The site kinds the method intervenes on."""
        return tuple(table.kinds())

    def plan(self, job, sites: list[Site]) -> list[Variant]:
        raise NotImplementedError

    def references(self, job) -> list[Variant]:
        raise NotImplementedError

    def applied_branch(self, job, mode: str | None) -> str:
        """The CFG halves the hooks actually intervene on (what rows record as `branch`)."""
        return job.effective_branch

    def resolve_mode(self, job, adapter) -> str | None:
        """The K/V swap mode on `adapter`; None for methods that swap nothing."""
        return None

    # ---- one row -----------------------------------------------------------------------------------
    def bind(self, variant: Variant, job, prompt, seed: int, mode: str | None) -> Sample:
        raise NotImplementedError

    def design(self, variant: Variant, job, calls: int, mode: str | None) -> dict:
        """The method-specific design columns of a result row (`harness.results.schema.DESIGN`): the step
        window, heads, mode and noise. `calls` is the number of denoising steps of the sampler."""
        return {"step_start": None, "step_end": None, "steps_patched": None, "heads": None, "mode": None,
                "noise_scale": None, "noise_rule": None, "noise_draw": None, "restore": None}

    def hashed(self, job, data: dict) -> dict:
        """The job fingerprint's data (`JobSpec.fingerprint`) for this method: without the noise σ rule, which
        only causal tracing reads (its default changed, and other methods' fingerprints must not)."""
        return {k: v for k, v in data.items() if k != "noise_std"}

    def noise_std(self, job, adapter) -> list[float] | None:
        """σ of the job's corruption noise per text encoder (causal tracing); None for methods without."""
        return None

    # ---- measuring methods (attn_contrib): one plain generation, values read by hooks ---------------------
    def measurement(self, job, prompt, variants: list[Variant]):
        """What hooks measure, without changing anything, while the prompt's plain image is generated for
        the rows of `variants` (a `harness.contribution.Contribution`); None: the method measures nothing."""
        return None

    def measured_columns(self, variant: Variant, measured: dict | None) -> dict:
        """The metric columns a row of `variant` takes from what was measured for its sample
        (``{site: {column: value}}``)."""
        return {}

    def generations(self, variants: int, references: int) -> int:
        """Images generated per prompt and seed (`loco plan`): one per variant and reference row, or one for
        a measuring method."""
        return variants + references


def consecutive_runs(sites: list[Site]) -> list[list[Site]]:
    """The selection split into runs of consecutive forward indices (LocoGen's windows are m *consecutive*
    layers: a window may not jump a gap in the selection)."""
    runs: list[list[Site]] = []
    for site in sites:
        if runs and runs[-1][-1].kind == site.kind and runs[-1][-1].index + 1 == site.index:
            runs[-1].append(site)
        else:
            runs.append([site])
    return runs


def window_label(kind: str, indices: tuple[int, ...]) -> str:
    return f"{kind}#{indices[0]}" if len(indices) == 1 else f"{kind}#{indices[0]}-{indices[-1]}"


def select_sites(job, table: SiteTable) -> list[Site]:
    """The job's sites, defaulting to every site its method applies to; checked against the method."""
    from harness.methods.registry import get_method

    allowed = get_method(job.method).allowed_kinds(table)
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


def steps_of(variant: Variant, job) -> StepWindow:
    """The step window a swap variant acts in."""
    return StepWindow(variant.step_start or 0, job.step_end)
