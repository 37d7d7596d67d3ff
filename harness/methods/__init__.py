"""Methods: turn a job into the list of variants a sweep generates, and a variant into a `Sample`.

A *variant* is one intervention recipe, independent of prompt and seed ("swap K/V at cross-attention
layers 8–9 from step 0"); binding it to a prompt row and a seed gives a `Sample` to generate. Every
(prompt, seed) also gets *reference* rows: ``control`` (the prompt, un-intervened: every metric compares
against it), ``target`` (prompt B un-intervened: the donor for patching and the "swap everything" upper
bound) and, for causal tracing, ``corrupted`` (noise on the concept, nothing restored).

* LocoGen (P2, Algorithm 1): windows of m consecutive text-attention layers, every start 0..M−m
  (`swap.LocoGen`).
* Attention patching (P3): windows (default m=1) × step_start values × optional head subset
  (`swap.AttnPatch`).
* Causal tracing (P1): one restore per denoiser site, and per text-encoder site × token position
  (`causal_trace.CausalTrace`).
* Attention contribution (Zarei et al.): no intervention; one plain generation per prompt and seed,
  with hooks measuring the concept's share of every text-attention block's output, one row per block
  (`attn_contrib.AttnContrib`, `harness.contribution`).

Each method is a `Method` object (`base`) in the registry (`registry`); the functions below are the
job-level entry points the rest of the harness calls.
"""

from __future__ import annotations

from harness.interventions import Sample
from harness.methods.base import Method, Variant, select_sites
from harness.methods.registry import METHOD_NAMES, METHODS, get_method
from harness.sites import SiteTable

__all__ = ["METHODS", "METHOD_NAMES", "Method", "Variant", "bind", "get_method", "plan_variants", "references",
           "resolve_mode", "select_sites"]


def plan_variants(job, table: SiteTable) -> list[Variant]:
    """Every variant of the sweep, in a stable order (the order rows and units are numbered in)."""
    return get_method(job.method).plan(job, select_sites(job, table))


def references(job) -> list[Variant]:
    """Reference rows generated once per (prompt, seed)."""
    return get_method(job.method).references(job)


def resolve_mode(job, adapter) -> str | None:
    """The K/V swap mode the job runs with on `adapter` (None for methods that swap nothing)."""
    return get_method(job.method).resolve_mode(job, adapter)


def bind(variant: Variant, job, prompt, seed: int, mode: str | None) -> Sample:
    """The sample that generates `variant` for one prompt and seed."""
    return get_method(job.method).bind(variant, job, prompt, seed, mode)
