"""PixArt-α and PixArt-Σ: a DiT of 28 transformer blocks (`PixArtTransformer2DModel`, diffusers'
`BasicTransformerBlock` with ``ada_norm_single``) reading T5-XXL text through classic cross-attention.

**Where text enters.** The pipeline encodes the prompt with T5 (120 tokens on α, 300 on Σ, padded; the
padding masked) and hands `prompt_embeds` and `prompt_attention_mask` to the transformer. The transformer
projects the embeddings once per call (`caption_projection`, a row-wise MLP, 4096 → 1152) and every block's
``attn2`` reads that same tensor through `to_k`/`to_v`, with the mask as an additive bias. So a block's text
K/V are a fixed function of the prompt (`kv_input`): injecting another prompt's K/V at a block is exact with
no donor row (LocoGen, P3's injection, Zarei et al.'s intervention), provided the *mask* moves with them — a
prompt of another length has its padding elsewhere (`text_mask`; `harness.interventions.hooks` moves it,
per head when a swap names heads). The closed-form edits (LocoEdit, UCE, TIME) rewrite `attn2.to_k`/`to_v`
fitted on the projected text, exactly as on the UNets.

**Sites.** Per block: ``attn1`` (self-attention, gated contribution), ``attn2`` (cross-attention; its output is
added to the stream ungated), ``ff`` (gated contribution) and the block itself (kind ``block``: its output is
the residual stream, the *state* a causal-tracing restore copies). Text enters nowhere else (no pooled text;
α's resolution/aspect-ratio embedding is not text), so a planted model needs no other cut.

**Calls.** Every call passes ``use_resolution_binning=False`` (`call_options`): the pipelines otherwise map a
request onto a 1024-px aspect bucket and resize back, silently. Prompts are encoded with
``clean_caption=False``: the pipeline lower-cases and strips them (its default ``clean_caption=True`` does
the same when BeautifulSoup is not installed, and rewrites URLs and markup when it is).

Zarei et al. (NeurIPS 2025) localize per concept (the top K = 6 blocks by attention contribution, 20 steps,
3 seeds, `PixArt-alpha/PixArt-XL-2-1024-MS` in fp16): no fixed layer is named, so no paper layer map or
LocoEdit window is declared here; UCE and TIME default to every ``attn2``.
"""

from __future__ import annotations

import torch

from harness.models.adapters import GenerationConfig, ModelAdapter
from harness.models.parts import sd_vae, t5_tokenizer, t5_xxl_encoder, tiny_t5_encoder, tiny_vae
from harness.models.registry import ArchCost, Architecture, register
from harness.sites import classify


def padding_bias(mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """A 0/1 token mask as the additive bias the DiT forwards make of it (keep 0, pad -10000; rows × 1 × tokens),
    as `PixArtTransformer2DModel` and `SanaTransformer2DModel` convert ``encoder_attention_mask``."""
    return ((1 - mask.to(dtype)) * -10000.0).unsqueeze(1)


def dit_site_kind(block_class: str):
    """A site classifier for a DiT whose transformer blocks are `block_class`: the blocks are ``block``
    sites, their sublayers and the text encoder's as `harness.sites.classify` knows them."""

    def site_kind(component: str, path: str, module: torch.nn.Module) -> str | None:
        if component == "transformer" and type(module).__name__ == block_class:
            return "block"
        return classify(component, path, module)

    return staticmethod(site_kind)


class CaptionDiTAdapter(ModelAdapter):
    """What PixArt and SANA share: the prompt's embeddings and padding mask go to the transformer, which projects
    the embeddings once per call (`caption_projection`, and SANA's `caption_norm`) for every block's attn2."""

    denoiser_name = "transformer"
    branch_tensors = None  # no callback can expand the text mask (nor does PixArt's pipeline have the callback)
    installs_text_patch = False  # a bare-pipeline text patch would have to move the mask too: use `loco sweep`
    tiny_size = 32
    call_options = {"use_resolution_binning": False}
    probe_steps = 2
    masks_text = True
    max_sequence_length = 120

    def max_text_length(self, encoder_name: str) -> int:
        return self.max_sequence_length

    def pipeline_text(self, prompt: str) -> str:
        return prompt.lower().strip()  # `_text_preprocessing` with clean_caption=False

    @torch.no_grad()
    def kv_input(self, cond):
        projected = self.denoiser.caption_projection(cond["prompt_embeds"])
        norm = getattr(self.denoiser, "caption_norm", None)
        return projected if norm is None else norm(projected)

    def text_mask(self, cond):
        return padding_bias(cond["prompt_attention_mask"], self.denoiser.dtype)

    def _call_kwargs(self, cond, negative, seeds, guidance_scale):
        kwargs = super()._call_kwargs(cond, negative, seeds, guidance_scale)
        if "negative_prompt_embeds" in kwargs:
            kwargs["negative_prompt"] = None  # the pipelines' default "" would clash with the embeddings
        return kwargs


class PixArtAdapter(CaptionDiTAdapter):
    """PixArt-α: T5 text → caption_projection → every block's attn2 (K/V exact per prompt, padding masked)."""

    arch = "pixart"
    paper_defaults = GenerationConfig(20, 4.5, 1024, 1024)  # the pipelines' defaults, as Zarei et al. ran them
    max_sequence_length = 120  # α's T5 length (the pipeline's default); Σ: 300
    site_kind = dit_site_kind("BasicTransformerBlock")

    def _encode(self, prompts):
        embeds, mask, _, _ = self.pipe.encode_prompt(prompts, do_classifier_free_guidance=False, device=self.device,
                                                     clean_caption=False, max_sequence_length=self.max_sequence_length)
        return {"prompt_embeds": embeds, "prompt_attention_mask": mask}

    def _encode_negative(self):
        _, _, neg, neg_mask = self.pipe.encode_prompt([""], do_classifier_free_guidance=True, device=self.device,
                                                      clean_caption=False, max_sequence_length=self.max_sequence_length)
        return {"negative_prompt_embeds": neg, "negative_prompt_attention_mask": neg_mask}


class PixArtSigmaAdapter(PixArtAdapter):
    """PixArt-Σ: PixArt-α's blocks, 300 T5 tokens, SDXL's VAE, no resolution embedding."""

    arch = "pixart_sigma"
    max_sequence_length = 300


def _scheduler():
    from diffusers import DPMSolverMultistepScheduler

    return DPMSolverMultistepScheduler(beta_start=0.0001, beta_end=0.02, beta_schedule="linear")


def _tiny(pipeline_class: str):
    """28 PixArt blocks at width 24 (3 heads × 8), a 2-layer T5 (32-d), a 2-block VAE (scale factor 2)."""
    import diffusers

    tokenizer = t5_tokenizer()
    transformer = diffusers.PixArtTransformer2DModel(
        sample_size=8, num_layers=28, patch_size=2, attention_head_dim=8, num_attention_heads=3, caption_channels=32,
        in_channels=4, cross_attention_dim=24, out_channels=8, attention_bias=True, norm_type="ada_norm_single",
        num_embeds_ada_norm=1000, norm_elementwise_affine=False,
    ).eval()
    return getattr(diffusers, pipeline_class)(
        tokenizer=tokenizer, text_encoder=tiny_t5_encoder(32, 2, len(tokenizer)), vae=tiny_vae(blocks=2),
        transformer=transformer, scheduler=_scheduler())


def _fullsize(pipeline_class: str, use_additional_conditions: bool, vae_scaling: float):
    """PixArt-XL-2-1024-MS's configuration (0.6B transformer parameters, T5 v1.1 XXL), random weights."""
    import diffusers

    transformer = diffusers.PixArtTransformer2DModel(
        sample_size=128, num_layers=28, patch_size=2, attention_head_dim=72, num_attention_heads=16,
        caption_channels=4096, in_channels=4, cross_attention_dim=1152, out_channels=8, attention_bias=True,
        norm_type="ada_norm_single", num_embeds_ada_norm=1000, norm_elementwise_affine=False, norm_eps=1e-6,
        activation_fn="gelu-approximate", use_additional_conditions=use_additional_conditions,
    ).eval()
    return getattr(diffusers, pipeline_class)(tokenizer=t5_tokenizer(), text_encoder=t5_xxl_encoder(),
                                              vae=sd_vae(vae_scaling), transformer=transformer, scheduler=_scheduler())


def tiny_pipeline():
    return _tiny("PixArtAlphaPipeline")


def tiny_sigma_pipeline():
    return _tiny("PixArtSigmaPipeline")


def fullsize_pipeline():
    return _fullsize("PixArtAlphaPipeline", True, 0.18215)


def fullsize_sigma_pipeline():
    return _fullsize("PixArtSigmaPipeline", False, 0.13025)


_BLOCKS = {"cross_attn": 28, "self_attn": 28, "ff": 28, "block": 28}
_T5XXL = {"text_self_attn": (24,), "text_mlp": (24,)}
_TINY = {**_BLOCKS, "text_self_attn": (2,), "text_mlp": (2,)}
# UCE and TIME rewrite every cross-attention layer; LocoEdit and neuron edits take the layers a sweep found.
_EDITS = {"all": ("cross_attn", None)}
_SHARED = {"tiny_sites": _TINY, "state_kinds": ("block",), "edit_sites": _EDITS}  # α and Σ alike

PIXART = register(Architecture(
    name="pixart", title="PixArt-α", released="2023-10", adapter=PixArtAdapter,
    pipelines=("PixArtAlphaPipeline",), tiny=tiny_pipeline, fullsize=fullsize_pipeline,
    costs={"pixart": ArchCost(20, 4.5, 1024, 0.06, {**_BLOCKS, **_T5XXL},
                              note="PixArt-α XL-2 1024-MS (0.6B DiT, 4096 image tokens), T5-XXL text (24 layers); "
                                   "estimated, not measured: ~1.2 s per 20-step image")},
    hub_ids={"PixArt-alpha/PixArt-XL-2-1024-MS": "pixart"},
    **_SHARED,
))

PIXART_SIGMA = register(Architecture(
    name="pixart_sigma", title="PixArt-Σ", released="2024-03", adapter=PixArtSigmaAdapter,
    pipelines=("PixArtSigmaPipeline",), tiny=tiny_sigma_pipeline, fullsize=fullsize_sigma_pipeline,
    costs={"pixart_sigma": ArchCost(20, 4.5, 1024, 0.06, {**_BLOCKS, **_T5XXL},
                                    note="PixArt-Σ XL-2 1024-MS (0.6B DiT), T5-XXL text (300 tokens); estimated, "
                                         "not measured")},
    hub_ids={"PixArt-alpha/PixArt-Sigma-XL-2-1024-MS": "pixart_sigma"},
    **_SHARED,
))
