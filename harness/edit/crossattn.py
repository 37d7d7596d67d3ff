"""The shared path of the cross-attention K/V editors (LocoEdit, UCE, TIME): pairs → keys/values → solves.

They differ only in which token positions become keys (`pairs`), which projections are edited with
which λ, and the erase scale; everything else — the sites check, the preserve set, MEMIT's covariance
prior, timing — is this one function.
"""

from __future__ import annotations

from harness.edit.keys import concept_embeddings, prompt_covariance, prompt_embedding_pairs
from harness.edit.targets import resolve_sites
from harness.edit.weights import EditResult, Timer, edit_kv_projections


def run_kv(spec, adapter, lambdas: dict[str, float], edit_scale: float = 1.0, pairs=prompt_embedding_pairs) -> EditResult:
    sites = resolve_sites(spec, adapter)
    result = EditResult()
    with Timer() as timer:
        keys, value_inputs = pairs(adapter, spec.edits, spec.augmentations(), spec.eos)
        preserve = concept_embeddings(adapter, spec.preserve, spec.augmentations()) if spec.preserve else None
        prior = (prompt_covariance(adapter, spec.prior_prompts, spec.prior_ridge) if spec.prior == "covariance"
                 else None)
    result.extract_seconds = timer.seconds
    result.prior = None if prior is None else prior.record
    return edit_kv_projections(adapter, sites, keys, value_inputs, lambdas, result, preserve=preserve,
                               edit_scale=edit_scale, preserve_scale=spec.preserve_scale,
                               prior=None if prior is None else prior.matrix)
