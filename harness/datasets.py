"""Benchmark prompt sets of the papers, built into job-ready prompt rows.

The data files under ``harness/data`` are copied unchanged from their public repositories (MIT; licenses
beside them, see data/README.md):

* **SimpleBench** (GlyphControl): 4 frequency buckets × 100 words; P3's template ``A sign that says
  "<word>".``. P3 pairs each word A with a different word B of the same bucket, drawn without
  replacement with seed 42, and renders B's text into A's scene. We draw a random derangement with
  ``numpy.random.RandomState(seed)`` — every word is some other word's B exactly once and never its own;
  P3's exact pairs are not public, so pair identities may differ from theirs (the distribution does not).
* **CreativeBench** (GlyphDraw templates): each word gets one of 218 scene templates (seeded), shared by A
  and B.
* **Concept-ablation evaluation prompts** (Kumari et al.): per style/object concept, prompts containing it;
  the LocoGen target replaces the concept with its anchor ("painting", "robot", ...).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from harness.errors import UserError, did_you_mean
from harness.words import find_words

DATA = Path(__file__).with_name("data")
BUCKETS = {"top_1000": "all_unigram_top_1000_100", "1000_10000": "all_unigram_1000_10000_100",
           "10000_100000": "all_unigram_10000_100000_100", "100000_plus": "all_unigram_100000_plus_100"}
SIMPLE_TEMPLATE = 'A sign that says "{}".'


def _words(bucket: str) -> list[str]:
    if bucket not in BUCKETS:
        raise UserError(f"--bucket: unknown SimpleBench bucket '{bucket}'; expected one of {', '.join(BUCKETS)}")
    path = DATA / "glyphcontrol" / "SimpleBench" / f"{BUCKETS[bucket]}.txt"
    return [w.strip() for w in path.read_text(encoding="utf-8").splitlines() if w.strip()]


def derangement(n: int, rng: np.random.RandomState) -> np.ndarray:
    """A uniformly random permutation with no fixed points (rejection sampling; ~e tries on average)."""
    if n < 2:
        raise ValueError("pairing needs at least two words")
    while True:
        perm = rng.permutation(n)
        if not np.any(perm == np.arange(n)):
            return perm


def _pairs(words: list[str], templates: list[str], rng: np.random.RandomState, bench: str, bucket: str):
    partner = derangement(len(words), rng)
    rows = []
    for i, word in enumerate(words):
        template = templates[i]
        other = words[partner[i]]
        rows.append({"id": f"{bench}-{bucket}-{i:03d}", "prompt": template.format(word),
                     "target": template.format(other), "text": word, "target_text": other,
                     "attribute": "text", "concept": word})
    return rows


def simplebench_pairs(bucket: str = "top_1000", seed: int = 42) -> list[dict]:
    """P3's SimpleBench (A, B) pairs for one bucket (top_1000 is the localization split)."""
    words = _words(bucket)
    return _pairs(words, [SIMPLE_TEMPLATE] * len(words), np.random.RandomState(seed), "simple", bucket)


def creativebench_pairs(bucket: str = "top_1000", seed: int = 42) -> list[dict]:
    """P3's CreativeBench pairs: the bucket's words, each in one random GlyphDraw template shared by A and B."""
    words = _words(bucket)
    path = DATA / "glyphcontrol" / "CreativeBench" / "GlyphDraw_origin_remove_render_words.txt"
    slots = [t.strip().replace("{", "{{").replace("}", "}}").replace('""', '"{}"', 1)
             for t in path.read_text(encoding="utf-8").splitlines() if '""' in t]
    rng = np.random.RandomState(seed)
    chosen = [slots[k] for k in rng.randint(0, len(slots), size=len(words))]
    return _pairs(words, chosen, rng, "creative", bucket)


def _concept_file(concept: str) -> Path:
    return DATA / "concept-ablation" / "eval_prompts" / f"{concept.replace(' ', '_')}_eval.txt"


def concepts() -> dict[str, dict]:
    """Concept name → {kind: style|object, anchor, hard_negative}, for the concepts that have evaluation
    prompts (the dataset's eval.json also lists 'grumpy cat', whose prompt file it does not ship)."""
    spec = json.loads((DATA / "concept-ablation" / "eval.json").read_text())
    out = {}
    for kind, entries in spec.items():
        for name, entry in entries.items():
            if _concept_file(name).is_file():
                out[name] = {"kind": kind, "anchor": entry["anchor"], "hard_negative": entry["hard_negative"]}
    return out


def concept_prompts(concept: str) -> list[dict]:
    """LocoGen rows for one concept: its evaluation prompts, with the concept replaced by its anchor as
    target (the concept removed); `attribute` is its category (style or object), `concept` the words as
    they occur in the prompt."""
    table = concepts()
    if concept not in table:
        raise UserError(f"--concept: unknown concept '{concept}'{did_you_mean(concept, table)}; "
                        f"known: {', '.join(sorted(table))}")
    path = _concept_file(concept)
    anchor = table[concept]["anchor"]
    rows = []
    for i, line in enumerate(p.strip() for p in path.read_text(encoding="utf-8").splitlines()):
        found = find_words(line, concept) if line else None  # whole words: "nemo" is not in "anemone"
        if found:
            start, end = found
            target = line[:start] + anchor + line[end:]
            rows.append({"id": f"{concept.replace(' ', '_')}-{i:03d}", "prompt": line, "target": target,
                         "attribute": table[concept]["kind"], "concept": line[start:end]})
    return rows
