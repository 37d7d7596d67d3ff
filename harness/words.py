"""Where a concept's words are in a prompt: whole words only, never a substring of a longer word.

Everything that finds a concept's tokens — causal tracing's corruption and text restores, the keys of
LocoEdit, DiffQuickFix, UCE and TIME, neuron edits, the prompt-row check of a job — first finds the
concept's *characters* here and then maps them to tokens through the tokenizer's offsets
(`harness.interventions.token_positions`). A plain substring search finds "red" inside "checkered" (the
CLIP token "kered"), so the match is case-insensitive and bounded by non-word characters on both sides:
"red" in "a checkered background with a red circle" is the second "red", and "dog" is not in "two dogs".
"""

from __future__ import annotations

import difflib
import re


def find_words(text: str, words: str, start: int = 0) -> tuple[int, int] | None:
    """(start, end) character span of the first whole-word, case-insensitive occurrence of `words` in
    `text` at or after character `start`, or None. Runs of whitespace in `words` match any run of
    whitespace."""
    if not words or not words.strip():
        return None
    pattern = r"\s+".join(re.escape(part) for part in words.split())
    match = re.compile(rf"(?<!\w){pattern}(?!\w)", flags=re.IGNORECASE).search(text, start)
    return None if match is None else match.span()


def closest_words(text: str, words: str) -> str | None:
    """The run of `text`'s words that most resembles `words` (same number of words, or one more or
    fewer), for a "did you mean" hint; None when nothing is close."""
    tokens = re.findall(r"[\w'’-]+", text)
    n = len(words.split())
    runs = [" ".join(tokens[i:i + k]) for k in {max(1, n - 1), n, n + 1} for i in range(len(tokens) - k + 1)]
    close = difflib.get_close_matches(words.lower(), [r.lower() for r in runs], n=1, cutoff=0.6)
    return close[0] if close else None


def missing_words_message(text: str, words: str) -> str:
    """The end of a one-line error: `words` is not a whole-word span of `text` (with a close match)."""
    hint = closest_words(text, words)
    return (f"'{words}' is not a whole word or phrase of '{text}'"
            + (f" (did you mean '{hint}'?)" if hint and hint != words.lower() else ""))
