"""How loco states its uncertainty: one bootstrap, one minimum, one way of printing an interval.

Every interval and P(top) loco prints comes from the cluster bootstrap of `analysis.bootstrap` with the
same number of resamples and the same RNG seed, so one run gives one P(top) whichever verb prints it
(`loco rank`, `loco candidates`, `loco sql`, `loco report`, the sweep's closing summary, `loco demo`).

The unit that varies is the prompt. An interval is printed with its number of prompts beside it, and:

* with **one prompt** there is no interval and no P(top) (a resample of one prompt is that prompt; the
  "interval" would be [x, x] and P(top) 1.00): they are left empty and the text says why;
* an effect is **distinguishable from 0** when its one-sided p-value (effect over its bootstrap standard
  error, against Student's t with n − 1 degrees of freedom; `analysis.bootstrap.side_pvalues`),
  Holm-adjusted over the variants of its group, is below `ALPHA`, and its printed interval excludes 0:
  picking the best of many variants does not turn noise into a finding;
* below `MIN_PROMPTS` prompts an interval is printed but flagged: a percentile bootstrap over 2–9
  prompts is close to their min and max, and P(top) moves with every added prompt.
"""

from __future__ import annotations

N_BOOT = 2000  # bootstrap resamples, everywhere (the verbs' --bootstrap overrides it for one call)
BOOT_SEED = 0  # RNG seed of the resamples: the same run always prints the same interval and P(top)
LEVEL = 0.95  # interval coverage
ALPHA = 1 - LEVEL  # error rate of "distinguishable from 0", controlled over a group's variants (Holm)
MIN_PROMPTS = 10  # fewer prompts than this: intervals and P(top) are printed with a warning


def has_interval(n_prompts: int) -> bool:
    """An interval over prompts needs at least two of them."""
    return n_prompts >= 2


def interval_text(low: float | None, high: float | None, n_prompts: int, digits: str = ".4g") -> str:
    """'[low, high] n=12', or 'no interval (n=1)' for a single prompt."""
    if low is None or high is None or not has_interval(n_prompts):
        return f"no interval (n={n_prompts})"
    return f"[{low:{digits}}, {high:{digits}}] n={n_prompts}"


def p_top_text(p_top: float | None) -> str:
    return "—" if p_top is None else f"{p_top:.2f}"


def few_prompts_note(n_prompts: int) -> str | None:
    """The warning a group with fewer than `MIN_PROMPTS` prompts carries (None when it has enough)."""
    if n_prompts >= MIN_PROMPTS:
        return None
    if not has_interval(n_prompts):
        return f"{n_prompts} prompt: no interval and no P(top); nothing is selected from one prompt (add prompts)"
    return (f"only {n_prompts} prompts (< {MIN_PROMPTS}): intervals and P(top) are rough; "
            "add prompts before trusting the ranking")
