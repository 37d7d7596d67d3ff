"""The papers' selection rules: which metric decides, which way, against which reference rows.

| method | attribute | metric (first present) | best | paper |
|---|---|---|---|---|
| `locogen` | style, object, action, ... | `clip_t_prompt` (CLIP to the prompt) | lowest | P2 §2.1 |
| `locogen` | fact | `clip_t_target` (CLIP to the new fact) | highest | P2 §2.1 |
| `attn_patch` | text (any) | `ocr_char_f1_target`, F1 of mean P, R | highest 3 on SDXL, 1 on IF/SD3 | P3 §3.4, §7.5 |
| `causal_trace` | any | restored `clip_t_prompt` | highest, above a threshold | P1 §1.2 |
| `attn_contrib` | any | `attn_contrib` (measured, no reference row) | highest 6 | Zarei et al. §3 |

How many variants a "top" rule keeps is the paper's set size (`Rule.set_size`): P2's LocoGen keeps the
best window (its size m is the job's), P3's Algorithm keeps the top 3 layers on SDXL (55, 56, 57) and
1 on DeepFloyd IF and SD3, Zarei et al. keep the top K = 6 blocks by attention contribution. What may enter
a set is decided in `analysis.choose` (an effect whose interval excludes 0, a corruption that worked).

On the toyworld model (`harness.toyworld`) images are read by attribute probes instead of CLIP and OCR
(`harness.metrics.probe`); a run scored with them and not with the paper's metric is ranked by the
probe's probability of the same thing — the prompt's label (``probe_p_prompt``) where the paper reads
CLIP to the prompt, the target's (``probe_p_target``) where it reads CLIP to the target or OCR F1 to B's
text — in the paper's direction, and the rule says so.

LocoGen wants the window whose target prompt erases the attribute (style, object) or shows the updated
fact; P3 the layers whose patch renders prompt B's text; P1 the states whose restoration brings the
caption back, with the threshold chosen on a validation split (`analysis.threshold`).

Effects are paired with the method's reference rows of the same prompt and seed: ``control`` (the
prompt un-intervened) for LocoGen and patching, ``corrupted`` (noised concept, nothing restored) for
causal tracing; the attention contribution has none (its value is the effect). When the paper's metric was
not scored, the rule falls back to the image distance
(`mse`: largest change for swaps, smallest distance to the clean image for restores) and says so.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from analysis.runs import AnalysisError
from harness.errors import did_you_mean
from harness.metrics import direction

FACT_ATTRIBUTES = ("fact", "facts")
OCR_F1 = re.compile(r"ocr_(char|word)_f1_(text|target)")
# The role a variant's effect is paired with; attn_contrib has none ("none" matches no row: effect = value).
REFERENCE = {"locogen": "control", "attn_patch": "control", "causal_trace": "corrupted", "attn_contrib": "none"}
ZAREI_K = 6  # Zarei et al.: the K dominant blocks of a concept


@dataclass(frozen=True)
class Rule:
    """How one (method, attribute) group is ranked and which variants become candidates."""

    method: str
    attribute: str
    metric: str
    aggregate: str  # mean | f1_of_means
    sign: int  # +1: the highest statistic is the strongest candidate; −1: the lowest
    reference: str  # the role whose rows the effect is paired with
    select: str  # "top" (best variant) or "threshold" (every state above a validation-chosen threshold)
    source: str  # where the rule comes from, for the candidates file
    fallback: bool = False
    set_size: int = 1  # "top" rules: how many of the best variants the paper's set holds

    @property
    def columns(self) -> list[str]:
        """The row columns the statistic needs (P and R for an OCR F1)."""
        if self.aggregate == "f1_of_means":
            return [self.metric.replace("_f1_", "_p_"), self.metric.replace("_f1_", "_r_")]
        return [self.metric]

    @property
    def description(self) -> str:
        way = "highest" if self.sign > 0 else "lowest"
        stat = "F1 of mean P and R" if self.aggregate == "f1_of_means" else "mean"
        paired = "measured, no reference row" if self.reference == "none" else f"paired with {self.reference} rows"
        text = f"{self.method}/{self.attribute}: {way} {self.metric} ({stat}), {paired}"
        if self.select == "threshold":
            text += "; states above a threshold chosen on a validation split of prompts"
        elif self.set_size > 1:
            text += f"; the top {self.set_size}"
        return text + (f" [fallback: {self.source}]" if self.fallback else f" [{self.source}]")


P3_SET_SIZE = {"sdxl": 3}  # P3 §3.2/§7.5: SDXL's text lives in 3 layers (55-57); IF and SD3 in 1


def set_size(method: str, arch: str | None) -> int:
    """The paper's candidate-set size for a "top" rule on `arch` (the model's architecture)."""
    if method == "attn_contrib":
        return ZAREI_K
    return P3_SET_SIZE.get(arch or "", 1) if method == "attn_patch" else 1


PROBE_ANALOG = {"clip_t_prompt": "probe_p_prompt", "clip_t_target": "probe_p_target",
                "ocr_char_f1_target": "probe_p_target"}  # the paper's metric → the toyworld probe's


def _paper_rule(method: str, attribute: str) -> tuple[tuple[str, ...], int, str]:
    if method == "locogen":
        if attribute.lower() in FACT_ATTRIBUTES:
            return ("clip_t_target",), +1, "P2 §2.1: facts, argmax CLIP to the target prompt"
        return ("clip_t_prompt",), -1, "P2 §2.1: style/objects, argmin CLIP to the original prompt"
    if method == "attn_patch":
        return ("ocr_char_f1_target", "ocr_word_f1_target"), +1, "P3 §3.4: highest OCR F1 to the target text"
    if method == "causal_trace":
        return ("clip_t_prompt",), +1, "P1 §1.2: restored CLIP to the caption above a validation threshold"
    if method == "attn_contrib":
        return ("attn_contrib",), +1, f"Zarei et al. §3: the top K = {ZAREI_K} blocks by attention contribution"
    raise AnalysisError(f"method '{method}' has no selection rule; expected locogen, attn_patch, causal_trace or "
                        "attn_contrib")


def rule_for(method: str, attribute: str, present: list[str], metric: str | None = None,
             arch: str | None = None) -> Rule:
    """The rule for one (method, attribute) group of a run whose rows have the columns `present`, made
    with a model of architecture `arch` (sd15, sdxl, if, sd3, ...: it sets P3's set size)."""
    paper, paper_sign, source = _paper_rule(method, attribute)
    metric_cols = [c for c in present if direction(c) != 0]
    select = "threshold" if method == "causal_trace" else "top"
    restoring = method == "causal_trace"
    if metric is not None:
        if metric not in metric_cols:
            raise AnalysisError(f"--metric: '{metric}' is not a metric column of this run"
                                f"{did_you_mean(metric, metric_cols)}; metrics present: {', '.join(metric_cols) or 'none'}")
        if metric in paper:
            sign, fallback, source = paper_sign, False, source
        else:  # the largest effect: the metric's direction, flipped for restores
            sign = direction(metric) * (-1 if restoring else 1)
            fallback, source = True, f"--metric {metric}, largest effect by the metric's direction"
    else:
        chosen = next((m for m in paper if m in metric_cols), None)
        probe = PROBE_ANALOG.get(paper[0])
        if chosen is not None:
            metric, sign, fallback = chosen, paper_sign, False
        elif probe in metric_cols:
            metric, sign, fallback = probe, paper_sign, False
            source = f"{source}; toyworld probe: {probe} in place of {paper[0]}"
        else:
            metric = next((m for m in ("mse", *metric_cols) if m in metric_cols), None)
            if metric is None:
                raise AnalysisError("this run has no metric columns to rank by (its job's `metrics:` list scored nothing)")
            sign = direction(metric) * (-1 if restoring else 1)
            fallback = True
            source = f"{paper[0]} not scored; {metric}, largest effect ({source.split(':')[0]})"
    pr = [metric.replace("_f1_", "_p_"), metric.replace("_f1_", "_r_")]
    aggregate = "f1_of_means" if OCR_F1.fullmatch(metric) and all(c in present for c in pr) else "mean"
    return Rule(method, attribute, metric, aggregate, sign, REFERENCE[method], select, source, fallback,
                set_size(method, arch))
