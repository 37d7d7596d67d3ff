"""Model-card sections that set localizers and organisms side by side, from `loco demo` output directories.

* **agreement** — on the DiT organism's demo the four localizers (LocoGen, attention patching, causal
  tracing, attention contribution) rank the same 8 cross-attention blocks on the same prompts; per attribute
  and pair of methods, Kendall's τ-b and the top-K overlap of `analysis.agreement` (the ``agreement`` view
  that `loco candidates` and `loco report` also show);
* **comparison** — where each attribute lives in the UNet organism and in the DiT organism: the site each
  intervention ranks first, its effect with a 95% interval over prompts, and its relative depth (0 = the first
  cross-attention site a prompt's text reaches, 1 = the last), beside the states causal tracing selects.

Both read runs only; nothing here is typed by hand. Depth is by forward order of the cross-attention sites
(a UNet's down, mid and up blocks; a DiT's blocks), the only order the two architectures share.
"""

from __future__ import annotations

from pathlib import Path

from analysis.agreement import TOP_K, agreement_table
from analysis.effects import GroupRanking, RankedVariant, rank_run
from analysis.intervals import interval_text
from analysis.runs import open_run

ORDER = ("color", "shape", "background", "text")
SHORT = {"locogen": "LocoGen", "attn_patch": "patching", "causal_trace": "causal tracing",
         "attn_contrib": "attn contribution"}


def demo_groups(demo: Path, n_boot: int) -> tuple[list[GroupRanking], list]:
    """Every pooled (per attribute) group of a demo's runs, and the runs."""
    runs = [open_run(d) for d in sorted((demo / "runs").iterdir()) if d.is_dir()]
    groups = [g for run in runs if run.has_results for g in rank_run(run, n_boot=n_boot, by_concept=False)]
    return groups, runs


def _attr(name: str) -> str:
    return "word" if name == "text" else name


def agreement_section(demo: Path, n_boot: int) -> str:
    """Pairwise agreement of the demo's localizers per attribute (pooled over concepts)."""
    groups, runs = demo_groups(demo, n_boot)
    rows = [a for a in agreement_table(groups, runs) if a.concept is None]
    lines = ["## Do the four localizers agree?", "",
             "Each pair of localizers on the prompts both ran (`loco candidates` writes the same rows; "
             "`analysis/agreement.py` defines them): Kendall's τ-b over the cross-attention blocks both ranked, a "
             "block's strength taken as 0 where its effect is not distinguishable from 0, and the overlap of their "
             f"strongest blocks with an effect (at most K = {TOP_K}, Zarei et al.'s K). τ is empty where one "
             "method orders no pair of blocks (every effect indistinguishable from 0).", "",
             "| attribute | method A | method B | prompts | blocks | Kendall τ | top-K overlap | top A | top B |",
             "|---|---|---|---|---|---|---|---|---|"]
    for a in sorted(rows, key=lambda a: (ORDER.index(a.attribute) if a.attribute in ORDER else 9,
                                          a.method_a, a.method_b)):
        tau = "—" if a.kendall_tau is None else f"{a.kendall_tau:+.2f}"
        lines.append(f"| {_attr(a.attribute)} | {SHORT.get(a.method_a, a.method_a)} | {SHORT.get(a.method_b, a.method_b)} "
                     f"| {a.n_prompts} | {a.n_sites} | {tau} | {a.top_k_overlap} of {a.k} | "
                     f"{', '.join(a.top_a) or '—'} | {', '.join(a.top_b) or '—'} |")
    if len(lines) == 8:
        lines.append("| (no pair of runs shares prompts and sites) | | | | | | | | |")
    return "\n".join(lines)


def depth(variant: RankedVariant, n_sites: int) -> float | None:
    """Relative depth of a cross-attention variant (its window's middle) among `n_sites` sites."""
    indices = variant.indices or ([variant.index] if variant.index is not None else [])
    if variant.kind != "cross_attn" or not indices or n_sites < 2:
        return None
    return (sum(indices) / len(indices)) / (n_sites - 1)


def _top(group: GroupRanking | None) -> str:
    if group is None:
        return "not run"
    v = group.variants[0]
    n_sites = len({i for u in group.variants if u.kind == "cross_attn" for i in (u.indices or [u.index])})
    where = depth(v, n_sites)
    ci = interval_text(v.ci_low, v.ci_high, v.n_prompts, "+.2f").rsplit(" n=", 1)[0]
    mark = "" if v.distinct else " (not distinguishable from 0)"
    return f"{v.variant} {v.effect:+.2f} {ci}{mark}" + ("" if where is None else f", depth {where:.2f}")


def _chosen(group: GroupRanking | None) -> str:
    if group is None:
        return "not run"
    return ", ".join(v.variant for v in group.variants if v.selected) or f"none ({group.status})"


def comparison_section(dit_demo: Path, unet_demo: Path | None, n_boot: int) -> str:
    """Where each attribute lives in the two organisms, by LocoGen and by causal tracing."""
    lines = ["## Compared with the UNet organism", ""]
    if unet_demo is None or not (unet_demo / "runs").is_dir():
        return "\n".join(lines + ["No UNet demo directory was given (`--compare`), so there is nothing to compare."])
    found = {}
    for name, demo in (("unet", unet_demo), ("dit", dit_demo)):
        groups, _ = demo_groups(demo, n_boot)
        found[name] = {(g.method, g.attribute): g for g in groups}
    lines += ["The same world, the same VAE and probes; the UNet organism's `loco demo` (LocoGen over windows of "
              "2 of its 7 cross-attention layers, causal tracing of its ResNet and cross-attention states) beside "
              "the DiT organism's (LocoGen per block of 8, causal tracing of every block). Top site: LocoGen's "
              "first-ranked site with its effect on P(the prompt's label) and 95% interval over prompts, and its "
              "depth (0 = first cross-attention site, 1 = last). Words: the UNet demo patches attention (P3) for "
              "them, so its row shows patching's top site.", "",
              "| attribute | UNet: top site | UNet: causal-tracing states | DiT: top site | DiT: causal-tracing states |",
              "|---|---|---|---|---|"]
    for attr in ORDER:
        unet = found["unet"].get(("locogen", attr)) or found["unet"].get(("attn_patch", attr))
        dit = found["dit"].get(("locogen", attr))
        if unet is None and dit is None:
            continue
        lines.append(f"| {_attr(attr)} | {_top(unet)} | {_chosen(found['unet'].get(('causal_trace', attr)))} | "
                     f"{_top(dit)} | {_chosen(found['dit'].get(('causal_trace', attr)))} |")
    return "\n".join(lines)
