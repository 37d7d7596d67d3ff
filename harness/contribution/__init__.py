"""Attention contribution: how much of a text-reading attention's output comes from a concept's tokens.

`measure` holds the formula and the hooks that measure it during a plain generation (method
`attn_contrib`, `harness.methods.attn_contrib`); `layouts` the readers that say, per attention family, where
the image queries and the text keys sit and which projection is W_o. An architecture declares which reader
each of its text-attention site kinds uses (`ModelAdapter.text_attention`) and the order of the text
encoders whose tokens make the text sequence (`ModelAdapter.text_sequence`).
"""

from harness.contribution.layouts import READERS, AttentionRead, reader
from harness.contribution.measure import COLUMNS, Contribution, Measurements, contribution, contribution_hooks

__all__ = ["COLUMNS", "READERS", "AttentionRead", "Contribution", "Measurements", "contribution",
           "contribution_hooks", "reader"]
