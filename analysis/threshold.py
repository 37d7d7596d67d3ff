"""Causal tracing's selection: every state whose restoration clears a threshold chosen on held-out prompts.

P1 (docs/methods.md §1.2) calls a state causal when its restored CLIP score exceeds a threshold chosen on "a
small validation set of 10 prompts per attribute". Choosing the threshold on the same prompts that are
then reported would flatter the result, so the group's prompts are split (deterministically, by a hash
of the prompt id) into a validation part (up to 10 prompts, a third of them at most) and a test part.

On the validation prompts the paired effects (restored − corrupted, in the rule's direction) of all
states are sorted together with 0 (the corrupted run itself: no restoration); the threshold is the
midpoint of the widest gap between neighbours, i.e. the natural break between the states that bring the
caption back and those that do not. The states whose *test* effect exceeds it are selected, and their
intervals come from the test prompts only. A group with a single prompt has nothing to hold out: the
threshold is then chosen on that prompt and the group carries a warning.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict

import numpy as np

from analysis.effects import GroupData, RankedVariant, rank_group
from analysis.selection import Rule

MAX_VALIDATION = 10


def split_prompts(prompt_ids: list[str], max_validation: int = MAX_VALIDATION) -> tuple[set[str], set[str]]:
    """(validation, test) prompt ids: the first ⌈n/3⌉ (at most `max_validation`) in hash order."""
    unique = sorted(set(prompt_ids), key=lambda p: hashlib.sha256(p.encode()).hexdigest())
    if len(unique) < 2:
        return set(unique), set(unique)
    n_val = min(max_validation, max(1, -(-len(unique) // 3)))
    return set(unique[:n_val]), set(unique[n_val:])


def widest_gap_threshold(strengths: np.ndarray) -> float:
    """Midpoint of the widest gap between sorted strengths, 0 (no restoration) included."""
    points = np.sort(np.append(strengths[~np.isnan(strengths)], 0.0))[::-1]
    if points.size < 2:
        return 0.0
    gaps = points[:-1] - points[1:]
    i = int(np.argmax(gaps))
    return float((points[i] + points[i + 1]) / 2)


def apply_threshold(data: GroupData, rule: Rule, n_boot: int, level: float, seed: int) -> dict:
    """Rank the group on its test prompts and select the states above the validation threshold."""
    clusters = data.clusters.astype(str)
    validation, test = split_prompts(clusters.tolist())
    val = rank_group(data.subset(np.isin(clusters, list(validation))), rule, n_boot, level, seed)
    strengths = np.array([rule.sign * v.effect for v in val["variants"]])
    threshold = widest_gap_threshold(strengths)
    fields = rank_group(data.subset(np.isin(clusters, list(test))), rule, n_boot, level, seed)
    fields["variants"] = [RankedVariant(**(asdict(v) | {"selected": bool(rule.sign * v.effect > threshold)}))
                          for v in fields["variants"]]
    held_out = validation != test
    how = (f"widest gap of validation effects, {len(validation)} validation / {len(test)} test prompts" if held_out
           else "widest gap on the only prompt: nothing held out")
    fields["threshold"] = {"value": float(rule.sign * threshold), "how": how, "validation_prompts": sorted(validation),
                           "test_prompts": sorted(test)}
    if not held_out:
        note = "causal threshold chosen and applied on the same single prompt; add prompts for a held-out check"
        fields["warning"] = f"{fields['warning']}; {note}" if fields["warning"] else note
    return fields
