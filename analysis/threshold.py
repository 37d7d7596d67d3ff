"""Causal tracing's selection: every state whose restoration clears a threshold chosen on held-out prompts.

P1 (docs/methods.md §1.2) calls a state causal when its restored CLIP score exceeds a threshold chosen on "a
small validation set of 10 prompts per attribute". Choosing the threshold on the same prompts that are
then reported would flatter the result, so the group's prompts are split (deterministically, by a hash
of the prompt id) into a validation part (up to 10 prompts, a third of them at most) and a test part.

A restore is causal only if it brings the attribute *back*: on the validation prompts, the paired
effects (restored − corrupted, in the rule's direction) that are positive are sorted together with 0
(the corrupted run itself: no restoration), and the threshold is the midpoint of the widest gap between
neighbours — the natural break between the states that bring the caption back and those that do not.
It is therefore always > 0 in the direction of a restore (a state that makes the image worse, or leaves
it as it was, is never causal); with no positive validation effect there is no threshold and nothing is
selected. A state is selected when its *test* effect exceeds the threshold **and** its test interval
excludes 0 (`analysis.choose.distinguishable`); intervals come from the test prompts only. A group
with a single prompt has nothing to hold out and no interval: nothing is selected from it.
"""

from __future__ import annotations

import hashlib
from dataclasses import replace

import numpy as np

from analysis.effects import GroupData, rank_group
from analysis.selection import Rule

MAX_VALIDATION = 10


def split_prompts(prompt_ids: list[str], max_validation: int = MAX_VALIDATION) -> tuple[set[str], set[str]]:
    """(validation, test) prompt ids: the first ⌈n/3⌉ (at most `max_validation`) in hash order."""
    unique = sorted(set(prompt_ids), key=lambda p: hashlib.sha256(p.encode()).hexdigest())
    if len(unique) < 2:
        return set(unique), set(unique)
    n_val = min(max_validation, max(1, -(-len(unique) // 3)))
    return set(unique[:n_val]), set(unique[n_val:])


def widest_gap_threshold(strengths: np.ndarray) -> float | None:
    """Midpoint of the widest gap between the sorted positive strengths and 0 (no restoration); always
    > 0. None when no strength is positive: no state restores anything."""
    positive = strengths[~np.isnan(strengths) & (strengths > 0)]
    if positive.size == 0:
        return None
    points = np.sort(np.append(positive, 0.0))[::-1]
    gaps = points[:-1] - points[1:]
    i = int(np.argmax(gaps))
    return float((points[i] + points[i + 1]) / 2)


def apply_threshold(data: GroupData, rule: Rule, n_boot: int, level: float, seed: int) -> dict:
    """Rank the group on its test prompts and select the states above the validation threshold whose
    test interval excludes 0 (as a dict of GroupRanking fields)."""
    from analysis.choose import distinguishable

    clusters = data.clusters.astype(str)
    validation, test = split_prompts(clusters.tolist())
    val = rank_group(data.subset(np.isin(clusters, list(validation))), rule, n_boot, level, seed)
    threshold = widest_gap_threshold(np.array([rule.sign * v.effect for v in val["variants"]]))
    fields = rank_group(data.subset(np.isin(clusters, list(test))), rule, n_boot, level, seed)
    fields["variants"] = [replace(v, selected=threshold is not None and rule.sign * v.effect > threshold
                                  and distinguishable(v, rule.sign)) for v in fields["variants"]]
    held_out = validation != test
    how = (f"widest gap of the positive validation effects, {len(validation)} validation / {len(test)} test prompts"
           if held_out else "one prompt: nothing held out, no interval")
    fields["threshold"] = {"value": None if threshold is None else float(rule.sign * threshold), "how": how,
                           "validation_prompts": sorted(validation), "test_prompts": sorted(test)}
    notes = [fields["warning"]] if fields["warning"] else []
    if threshold is None:
        notes.append("no state restores the metric on the validation prompts: no threshold, no candidates")
    above = [v for v in fields["variants"] if threshold is not None and rule.sign * v.effect > threshold]
    unsure = [v.variant for v in above if not v.selected]
    if unsure and held_out:
        notes.append(f"above the threshold but with an interval including 0, not selected: {', '.join(unsure[:5])}"
                     + (f" and {len(unsure) - 5} more" if len(unsure) > 5 else ""))
    fields["warning"] = "; ".join(notes) or None
    return fields
