"""Interventions: what is done to the model while one image of a batch is generated, and the hooks that do it.

The package holds the recipes (`spec`: `Sample` and the moves it carries), the denoiser-side hooks
(`hooks`) and the text-encoder side (`text`: token positions, corruption noise, text restores).

All three papers reduce to a handful of moves on the conditional branch of a denoising pass:

* **KV swap** (LocoGen, P2; attention activation patching, P3). At a set of text-reading attention sites the
  key and value projections see another prompt's text. *Inject* mode feeds the other prompt's embeddings
  (exact for UNets whose cross-attention reads ``prompt_embeds`` unchanged: SD1.x/2.x, SDXL). *Patch* mode
  copies the K/V of a *donor row* — the other prompt, same seed, generated in the same batch — at the same
  layer and step, which is exactly P3's cached patching but with no cache: the donor's activations exist
  in the batch at the moment they are needed. It is required where the text stream evolves (SD3 joint
  attention) or is transformed per layer (DeepFloyd IF's AttnAddedKV attentions). An optional head
  subset restricts the swap to those heads' columns, and a step window (``step_start`` counted from the
  noisiest step) restricts it in time.
* **Restore** (causal tracing, P1). The output of one site is copied from the clean row (same prompt and
  seed, no corruption) into a corrupted row, at every step for denoiser sites (both CFG halves unless the
  job says ``branch: cond``), or at one token position for text-encoder sites.
* **Corruption** (P1). Gaussian noise κ·σ is added to the input token embeddings of the concept's tokens,
  the same noise for every row of that prompt and noise draw. σ is the std of the job's concepts' token
  embeddings (ROME's rule, the default), of the encoder's whole token-embedding matrix, or a given number
  (job key `noise_std`).
* **Restore semantics.** A ResNet's output (and an IF AttnAddedKV attention's) already includes the
  residual, so copying it restores the *state*; attention and feed-forward outputs are *contributions*
  added to a residual stream outside them. A restore copies the site's output as it is (P1), or at a
  state site either the state or the contribution (the residual branch's last module), job key `restore`.

Rows are independent along the batch axis, so a row's image depends only on its own prompt, seed and
interventions (and, for donor-based moves, on its donor row, which is never itself intervened on). The
pipelines lay out a CFG batch as ``[uncond × B, cond × B]``; hooks address row r's conditional half at
B + r. A forward pre-hook on the denoiser counts steps.
"""

from harness.interventions.hooks import Hooks, StepCounter, denoiser_hooks
from harness.interventions.spec import POSITIONS, Branch, Corruption, KVSwap, Restore, Sample, StepWindow
from harness.interventions.text import (
                                        embedding_std,
                                        input_embedding_modules,
                                        noise_stds,
                                        stable_seed,
                                        text_hooks,
                                        token_positions,
)

__all__ = ["POSITIONS", "Branch", "Corruption", "Hooks", "KVSwap", "Restore", "Sample", "StepCounter",
           "StepWindow", "denoiser_hooks", "embedding_std", "input_embedding_modules", "noise_stds", "stable_seed",
           "text_hooks", "token_positions"]
