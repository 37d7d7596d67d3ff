"""Planted models: a model whose text reaches the image through exactly one known attention layer.

A localization method is only trustworthy if it finds a layer when the answer is known. `plant` edits a
model in place so that every text-reading attention site except one ignores the text: its K and V
projections are zeroed (weights and biases), which makes the text tokens' attention logits constant and
their values zero, so the site's output no longer depends on the prompt. (FLUX's single-stream blocks project
text and image with the same to_k/to_v, so there the text slice of their outputs is zeroed by a hook the
model keeps: `ModelAdapter.cut_text_at`.) The other text paths are cut
as well — SDXL's pooled text embedding in the added time conditioning, DeepFloyd IF's text time
embedding, SD3's pooled text projection — so the planted site is the *only* way the prompt can change the
image. Then:

* LocoGen / attention patching at the planted site moves the image, and at every other site changes
  nothing at all (exactly: the swapped K/V are zeroed away);
* causal tracing restores the clean image exactly when, and only when, the planted site is restored.

`loco` uses this in its known-answer tests; it is also a quick self-check of a new architecture adapter.
"""

from __future__ import annotations

import torch

from harness.sites import TEXT_KINDS


@torch.no_grad()
def plant(adapter, site_name: str) -> None:
    """Cut every text path of `adapter`'s model except the K/V of `site_name` (in place)."""
    table = adapter.sites
    planted = table[site_name]
    if planted.kind not in TEXT_KINDS:
        raise ValueError(f"plant: '{site_name}' is a {planted.kind} site; expected one of {', '.join(TEXT_KINDS)}")
    for site in table.sites:
        if site.kind in TEXT_KINDS and site.name != site_name:
            adapter.cut_text_at(site.name)  # K/V zeroed (FLUX's single-stream blocks: their text slice)
    adapter.cut_pooled_text()  # the architecture's other text paths (pooled embeddings, ...)
