"""LocoEdit (P2, docs/methods.md §2.3, §7.3): rewrite the K and V projections of the localized layers.

For every chosen cross-attention layer l and each of W^K_l, W^V_l:

    min_W ‖X_concept Wᵀ − X_target Ŵᵀ‖² + λ ‖W − Ŵ‖²      (Ŵ = the original matrix)

X_concept: the prompt embeddings attn2 reads, at the last subject token of the concept in a few
augmented prompts ("{}", "a painting in the style of {}", ...); X_target: the same for the target. After
the edit the layer's keys and values for the concept are (near) what the original produced for the
target — the concept no longer reaches the image through these layers.

Fixed relative to the reference code: K and V get their own λ (`lambda`, `lambda_v`); the reference
parses `--reg_value` and never uses it. SDXL (2048-d concatenated embeddings) is supported, as the
reference code's "Non-SDXL" path is not. IF and SD3 are refused (their K/V read per-layer text).
"""

from __future__ import annotations

from harness.edit.crossattn import run_kv
from harness.edit.weights import EditResult


def run(spec, adapter) -> EditResult:
    return run_kv(spec, adapter, {"to_k": spec.lambda_k, "to_v": spec.lambda_value})
