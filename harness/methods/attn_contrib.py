"""Attention contribution (Zarei, Basu et al., NeurIPS 2025, "Localizing Knowledge in Diffusion Transformers").

**The idea.** A block can only put a concept into the image through what its text attention reads from the
concept's tokens. So generate each prompt once, un-intervened, and at every text-reading attention block and
denoising step measure how large that part of the block's output is:

    attn_contrib(block, step) = mean over image tokens i of ‖ W_o · Σ_k A[i, k] · V[k] ‖

over the concept's tokens k (A: the attention probabilities of image query i over *all* its keys; V: the
values; heads concatenated before W_o). The blocks with the largest contribution, averaged over steps and over
the prompts that carry the concept, are the concept's *dominant blocks*; Zarei et al. take the top K = 6 and
show that withholding the concept's text there removes it from the image (their causal check, which loco's
`locogen` and `attn_patch` are). No sweep: one generation per prompt and seed, whatever the number of blocks.

**What exactly is computed** (`harness.contribution`, read from the authors' code, `calc_attn_cont_varients.py`,
variant ``m_mult_v_mult_o``, the default):

* the concept's tokens are summed as *vectors* before the norm (``(m @ v)`` sums over the token columns), not
  as per-token norms: the value is the norm of the concept's whole share of the output;
* the image queries only (FLUX: the image→text slice of the joint attention), the conditional half of a CFG
  batch (their ``[1]``), batch row r where there is no CFG batch (FLUX.1-dev; their ``[0]``);
* W_o = ``to_out[0]``, only where the block has one (FLUX single-stream blocks: none, as theirs);
* averaged over every denoising step of the generation, then (at analysis time: `loco rank`) over prompts
  and seeds, and the top K blocks selected (`analysis.selection`).

Differences, named: their ``to_out[0]`` adds the output bias b_o, which is the same whatever the attention
reads — it is not the concept's — so ``attn_contrib`` leaves it out and ``attn_contrib_bias`` (their number)
keeps it; rank by ``--metric attn_contrib_bias`` to reproduce theirs. For FLUX their code finds the concept's
token indices with the CLIP tokenizer (``pipe.tokenizer``) and reads them in the T5 stream; loco finds them
in the tokens the attention actually reads (`ModelAdapter.concept_columns`: T5 for FLUX; CLIP's 77 then T5's
for SD3), as whole words (`harness.interventions.token_positions`). Their softmax is materialized in full; loco
forms only the concept's columns from a logsumexp over all keys, the same numbers at a fraction of the memory,
and measures inside a hook without touching the forward pass, so the image is the plain pipeline's.

**Rows.** One ``control`` row per prompt and seed (the image) and one ``variant`` row per block, labelled as
LocoGen's single-layer windows (``cross_attn#8``), with ``attn_contrib`` and ``attn_contrib_bias`` as metric
columns; `loco rank`, `loco candidates`, `loco sql` and the report read them as any other method's, and the
agreement with LocoGen and patching on the same prompts is `analysis.agreement`.
"""

from __future__ import annotations

from harness.contribution import Contribution
from harness.interventions import Sample
from harness.methods.base import Method, Variant
from harness.sites import TEXT_KINDS, Site, SiteTable


class AttnContrib(Method):
    name = "attn_contrib"

    def check_prompt(self, i: int, row) -> None:
        if not row.concept:
            raise ValueError(f"prompts[{i}].concept: required for method 'attn_contrib' (the words whose "
                             "tokens' attention contribution is measured)")

    def allowed_kinds(self, table: SiteTable) -> tuple[str, ...]:
        return TEXT_KINDS

    def plan(self, job, sites: list[Site]) -> list[Variant]:
        return [Variant(site.label, "variant", site.kind, (site.name,), (site.index,), site.index) for site in sites]

    def references(self, job) -> list[Variant]:
        return [Variant("control", "control")]

    def bind(self, variant: Variant, job, prompt, seed: int, mode: str | None) -> Sample:
        return Sample(prompt.prompt, seed)  # every row of a prompt and seed is the one plain generation

    def measurement(self, job, prompt, variants: list[Variant]) -> Contribution:
        return Contribution(prompt.concept, tuple(v.sites[0] for v in variants))

    def measured_columns(self, variant: Variant, measured: dict | None) -> dict:
        if variant.role != "variant":
            return {}
        return dict(measured[variant.sites[0]])

    def generations(self, variants: int, references: int) -> int:
        return 1

