"""String metrics for rendered text: how well the OCR reading of an image matches the text it should show.

P3 scores text rendering with GlyphControl's ``get_p_r_acc(pred, gt)``. Both arguments are *sequences of
items*; each item is stripped and lower-cased, then items are matched as multisets (a predicted item
consumes one equal ground-truth item), and

    P = matched / |pred|,   R = matched / |gt|,   Acc = 1 if "".join(sorted(pred)) == "".join(sorted(gt)).

**The quirk.** P3's callers pass whole strings, so the items are *characters*: this is a bag-of-characters
precision/recall, not a word metric. We reproduce it as the ``char`` level and also offer the ``word``
level (items = whitespace-separated words) that the name "OCR F1" suggests. Decisions, per level:

- ``char``: the whole string is stripped of surrounding whitespace and lower-cased; every remaining
  character is an item, and every whitespace character becomes the empty item ``""`` exactly as in P3
  (``" ".strip() == ""``). So a space is a character: a space read where the text has one counts as
  matched, an extra one costs precision. For P3's single-word texts and space-joined OCR fragments this
  gives P3's numbers.
- ``word``: items are ``str.split()`` of the lower-cased string (so no empty items).
- ``exact`` is P3's Acc, kept as it is: order-insensitive, and blind to empty items because they vanish in
  the join. At character level every anagram counts as exact ("olleh" vs "hello"); at word level word
  order does not matter and "ab c" equals "a bc".
- Empty sides: P3 divides by ``|x| + 1e-8``, so an empty reading has P = R = 0 and an empty expectation
  R = P = 0. We keep that (an image whose text vanished scores 0, which is P3's effect signal) with one
  exception P3 never met: both empty means nothing was asked and nothing read, so P = R = F1 = 1.

The per-row F1 = 2PR/(P+R) (0 when P = R = 0) is a convenience column. P3's headline "OCR F1" is not
its mean: it is the harmonic mean of the macro-averaged P and R over a configuration's samples,
`f1_of_means`. The Levenshtein distance ("LD") is computed on the lower-cased strings, unstripped, as P3
does; it grows with any extra text the OCR picks up.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import Levenshtein

Level = Literal["char", "word"]
LEVELS: tuple[Level, ...] = ("char", "word")


@dataclass(frozen=True)
class TextMatch:
    """P3's precision, recall and exact match of one reading against one expected text, plus F1."""

    precision: float
    recall: float
    exact: int

    @property
    def f1(self) -> float:
        return harmonic_mean(self.precision, self.recall)


def harmonic_mean(p: float, r: float) -> float:
    """2pr/(p+r), and 0 when both are 0 (no division by zero)."""
    return 0.0 if p + r == 0 else 2 * p * r / (p + r)


def items(text: str, level: Level) -> list[str]:
    """The items P3's matching compares: characters (whitespace → ``""``) or words, lower-cased."""
    text = text.strip().lower()
    if level == "char":
        return [c.strip() for c in text]
    if level == "word":
        return text.split()
    raise ValueError(f"level: expected one of {LEVELS}, got {level!r}")


def match_items(pred: Sequence[str], gt: Sequence[str]) -> TextMatch:
    """GlyphControl's multiset P/R/Acc on item lists (see the module docstring for the empty cases)."""
    if not pred and not gt:
        return TextMatch(1.0, 1.0, 1)
    matched = sum((Counter(pred) & Counter(gt)).values())
    precision = matched / len(pred) if pred else 0.0
    recall = matched / len(gt) if gt else 0.0
    exact = int("".join(sorted(pred)) == "".join(sorted(gt)))
    return TextMatch(precision, recall, exact)


def match_text(pred: str, gt: str, level: Level = "char") -> TextMatch:
    """P/R/exact of an OCR reading `pred` against the expected text `gt` at `level`."""
    return match_items(items(pred, level), items(gt, level))


def levenshtein(pred: str, gt: str) -> int:
    """Edit distance between the lower-cased strings (P3's "LD")."""
    return Levenshtein.distance(pred.lower(), gt.lower())


def f1_of_means(precisions: Sequence[float], recalls: Sequence[float]) -> float:
    """P3's aggregate OCR F1: 2·mean(P)·mean(R)/(mean(P)+mean(R)); 0 when both means are 0."""
    if not precisions or len(precisions) != len(recalls):
        raise ValueError(f"need equally many precisions and recalls, got {len(precisions)} and {len(recalls)}")
    return harmonic_mean(sum(precisions) / len(precisions), sum(recalls) / len(recalls))


_QUOTED = re.compile(r'"([^"]*)"')


def quoted_text(prompt: str | None) -> str | None:
    """The text a P3 prompt asks to render: its first double-quoted span (``A sign that says "hello".``
    → ``hello``), or None when the prompt quotes nothing."""
    match = _QUOTED.search(prompt or "")
    return match.group(1) if match else None
