"""FLUX.1 (Black Forest Labs, 2024-08): a rectified-flow MM-DiT of 19 dual-stream and 38 single-stream blocks
(`FluxTransformer2DModel`, attention modules `FluxAttention`), with CLIP-L (pooled) and T5-XXL text.
Two registered architectures share this module and `FluxPipeline`: ``flux`` (FLUX.1-dev, guidance-distilled)
and ``flux_schnell`` (FLUX.1-schnell, timestep-distilled to 4 steps); the transformer's `guidance_embeds`
tells their checkpoints apart.

**Where text enters, and how the joint sequence is laid out.** T5's token states (`prompt_embeds`, padded to
`max_sequence_length`: 512 tokens for dev, 256 for schnell; the tiny models use 64) pass `context_embedder`
and become the *text stream*; CLIP-L's pooled embedding enters with the timestep (and dev's guidance value)
through `time_text_embed` — a text path beside attention, cut in a planted model. Image latents are packed
2×2 into tokens. Write T for the text length and N for the image tokens.

* Dual-stream blocks ``transformer.transformer_blocks.i`` (i = 0..18): the two streams keep their own weights.
  Their attention ``transformer_blocks.i.attn`` projects the text with `add_q_proj`/`add_k_proj`/`add_v_proj`
  and the image with `to_q`/`to_k`/`to_v`, RMS-normalises q and k per head, concatenates **text first**
  (sequence positions [0, T) text, [T, T + N) image), applies RoPE over the joint sequence (text ids are all
  zero, image ids (0, row, col)), attends, and splits the output back: `to_out` for the image, `to_add_out`
  for the text. Site kind ``joint_attn`` (as SD3); the text path is `add_k_proj`/`add_v_proj`.
* Single-stream blocks ``transformer.single_transformer_blocks.j`` (j = 0..37): the two streams are
  concatenated into one sequence, text first ([0, T) text, [T, T + N) image), with one set of weights. Their
  attention ``single_transformer_blocks.j.attn`` projects the whole sequence with `to_q`/`to_k`/`to_v` and
  has no `to_out` (the block's `proj_out` mixes the attention output with a parallel MLP). Site kind
  ``single_attn``; the text path is rows [0, T) of `to_k`/`to_v` (`text_tokens`).

In both kinds the attention probabilities of image queries over text keys are the slice
``A[:, :, T:, :T]`` of the joint attention (batch, heads, queries, keys) — what Zarei et al.'s attention
contribution reads (``‖W_o · A[img, k] V[k]‖``, with `to_out` only in the dual blocks). The fused processors
(`dispatch_attention_fn`) never materialise A: a hook that wants it recomputes it from q and k. Zarei et al.
number the 57 blocks on one axis, dual 0..18 then single 19..56 (``joint_attn#i`` is their i,
``single_attn#j`` their 19 + j).

**Guidance: no CFG batch.** FLUX.1-dev's guidance (3.5) is an input embedding and every step is one denoiser
pass over the B rows; schnell has no guidance input at all (`has_cfg_batch = False`: the harness never builds
an unconditional half and encodes no negative prompt). `FluxPipeline`'s `callback_on_step_end` cannot replace
the pooled embeddings or the guidance batch, so a batch cannot branch mid-trajectory (`branch_tensors = None`).

**Patching, not injection.** The text stream evolves block to block (text queries read the image), so the
text K/V of a block are not a function of the prompt embeddings: a KV swap copies a donor row's K/V — the other
prompt, same seed, same batch (P3's cached patching, without the cache) — at the dual blocks' `add_k/add_v`
and at the text slice of the single blocks' `to_k/to_v`. The text queries stay the row's own. (Zarei et al.
instead replace the attention's whole text *input*, queries included, and the pooled embedding.)

**Planted models.** A dual block's text is cut by zeroing `add_k_proj`/`add_v_proj`; a single block shares
`to_k`/`to_v` with the image, so its text slice is zeroed by a hook the model keeps (`cut_text_at`), and the
pooled CLIP path is cut in `time_text_embed` — the planted block is then the only way text reaches the image.

**Edits.** LocoEdit, UCE and TIME rewrite K/V projections that read the prompt embeddings; FLUX has none
(each block reads the evolving text stream), so they are refused (`harness.edit.targets`). UCE's own FLUX
script edits `context_embedder` and the pooled projection instead (docs/methods.md §11.2): not a localized edit.
"""

from __future__ import annotations

import torch

from harness.hooks import Hooks
from harness.models.adapters import GenerationConfig, ModelAdapter
from harness.models.parts import (
    clip_text_model,
    clip_tokenizer,
    t5_tokenizer,
    t5_xxl_encoder,
    tiny_clip_text_model,
    tiny_t5_encoder,
    tiny_vae,
    vae16,
)
from harness.models.registry import ArchCost, Architecture, register
from harness.sites import classify

T5_TOKENS = {"flux": 512, "flux_schnell": 256}  # FluxPipeline's max_sequence_length for each (the model cards')
TINY_T5_TOKENS = 64


class FluxAdapter(ModelAdapter):
    """FLUX.1-dev: dual-stream joint attention (text K/V from add_k/add_v) and single-stream attention (the text
    slice of to_k/to_v); guidance is an embedding, so there is no CFG batch; K/V are patched from a donor row."""

    arch = "flux"
    branch_tensors = None  # the pipeline's callback cannot expand the pooled embeddings and guidance batch
    denoiser_name = "transformer"
    text_encoder_names = ("text_encoder", "text_encoder_2")
    tokenizer_names = ("tokenizer", "tokenizer_2")
    kv_input_is_prompt_embeds = False
    installs_text_patch = False
    has_cfg_batch = False
    kv_projections = ("add_k_proj", "add_v_proj")
    # attn_contrib: the image queries' [text, image] keys in both block kinds (harness.contribution.layouts);
    # the text the blocks read is T5's alone (CLIP gives only the pooled vector)
    text_attention = {"joint_attn": "joint_text_first", "single_attn": "single_text_first"}
    text_sequence = ("text_encoder_2",)
    training_objective = None  # no FLUX training step in `loco finetune` yet (packed latents, ids, guidance)
    paper_defaults = GenerationConfig(28, 3.5, 1024, 1024)  # Zarei et al.'s 28 steps, FLUX's guidance 3.5, native size
    gpu_dtype = "bf16"  # FLUX ships bf16 weights

    @property
    def t5_tokens(self) -> int:
        """T, the text length of the joint sequence: the variant's T5 length, or the tokenizer's if shorter
        (the tiny models' 64)."""
        return min(T5_TOKENS[self.arch], self.pipe.tokenizer_2.model_max_length)

    def max_text_length(self, encoder_name: str) -> int:
        return self.t5_tokens if encoder_name == "text_encoder_2" else 77

    def plain_call_kwargs(self) -> dict:
        return {**super().plain_call_kwargs(), "max_sequence_length": self.t5_tokens}

    @staticmethod
    def site_kind(component: str, path: str, module: torch.nn.Module) -> str | None:
        if type(module).__name__ == "FluxAttention":
            return "joint_attn" if module.added_kv_proj_dim is not None else "single_attn"
        return classify(component, path, module)  # ff / ff_context of the dual blocks, the text encoders

    def _single(self, site_name: str) -> bool:
        return self.module(site_name).added_kv_proj_dim is None

    def kv_projection_names(self, site_name: str) -> tuple[str, str]:
        return ("to_k", "to_v") if self._single(site_name) else self.kv_projections

    def text_tokens(self, site_name: str) -> tuple[int, int] | None:
        return (0, self.t5_tokens) if self._single(site_name) else None

    @torch.no_grad()
    def cut_text_at(self, site_name: str) -> None:
        if not self._single(site_name):
            return super().cut_text_at(site_name)
        hooks = self.__dict__.setdefault("planted_hooks", Hooks())  # kept as long as the model is
        stop = self.t5_tokens

        def zero_text(_module, _args, out):
            out[:, :stop] = 0
            return out

        for name, proj in zip(self.kv_projection_names(site_name), self.kv_modules(site_name)):
            hooks.forward(f"cut_text/{site_name}.{name}", proj, zero_text)

    @torch.no_grad()
    def cut_pooled_text(self) -> None:
        self.denoiser.time_text_embed.text_embedder.linear_1.weight.zero_()

    def _encode(self, prompts):
        embeds, pooled, _ = self.pipe.encode_prompt(prompt=prompts, prompt_2=None, device=self.device,
                                                    max_sequence_length=self.t5_tokens)
        return {"prompt_embeds": embeds, "pooled_prompt_embeds": pooled}

    def _encode_negative(self):
        return {}  # no unconditional pass: guidance is an input (dev) or absent (schnell)


class FluxSchnellAdapter(FluxAdapter):
    """FLUX.1-schnell: as dev without the guidance input; 4 steps, T5 length 256."""

    arch = "flux_schnell"
    paper_defaults = GenerationConfig(4, 0.0, 1024, 1024)  # the model card's settings


# ---- builders ------------------------------------------------------------------------------------------

def _scheduler(schnell: bool):
    from diffusers import FlowMatchEulerDiscreteScheduler

    if schnell:
        return FlowMatchEulerDiscreteScheduler(shift=1.0, use_dynamic_shifting=False)
    return FlowMatchEulerDiscreteScheduler(shift=3.0, use_dynamic_shifting=True, base_shift=0.5, max_shift=1.15,
                                           base_image_seq_len=256, max_image_seq_len=4096)


def tiny_pipeline(schnell: bool = False):
    """FLUX layout at small width: 19 dual-stream + 38 single-stream blocks, 2 heads of 16; CLIP + T5 (64 tokens).

    Width 32, not less: CPU kernels vectorize elementwise ops (SiLU, ...) 32 floats at a time and round the
    remainder differently, so with rows of 16 floats identical rows of one batch came out different in the last
    bit (a row's image then depended on its place in the batch). Real widths are multiples of 32."""
    from diffusers import FluxPipeline, FluxTransformer2DModel

    transformer = FluxTransformer2DModel(
        patch_size=1, in_channels=16, num_layers=19, num_single_layers=38, attention_head_dim=16,
        num_attention_heads=2, joint_attention_dim=32, pooled_projection_dim=32, axes_dims_rope=[4, 4, 8],
        guidance_embeds=not schnell,
    ).eval()
    tokenizer_2 = t5_tokenizer(TINY_T5_TOKENS)
    return FluxPipeline(
        transformer=transformer, scheduler=_scheduler(schnell), vae=tiny_vae(4, sd3=True),
        text_encoder=tiny_clip_text_model(32, 4, False), tokenizer=clip_tokenizer(),
        text_encoder_2=tiny_t5_encoder(32, 2, len(tokenizer_2)), tokenizer_2=tokenizer_2,
    )


def fullsize_pipeline(schnell: bool = False):
    """FLUX.1's configuration (12B transformer, CLIP-L, T5-XXL, 16-channel VAE), random weights."""
    from diffusers import FluxPipeline, FluxTransformer2DModel

    transformer = FluxTransformer2DModel(
        patch_size=1, in_channels=64, num_layers=19, num_single_layers=38, attention_head_dim=128,
        num_attention_heads=24, joint_attention_dim=4096, pooled_projection_dim=768, axes_dims_rope=[16, 56, 56],
        guidance_embeds=not schnell,
    ).eval()
    return FluxPipeline(
        transformer=transformer, scheduler=_scheduler(schnell), vae=vae16(scaling=0.3611, shift=0.1159),
        text_encoder=clip_text_model(768, 12, 12, 3072, None, "quick_gelu"), tokenizer=clip_tokenizer(),
        text_encoder_2=t5_xxl_encoder(), tokenizer_2=t5_tokenizer(512),
    )


def _dev_or_schnell(schnell: bool):
    return (lambda: tiny_pipeline(schnell)), (lambda: fullsize_pipeline(schnell))


_FLUX = {"joint_attn": 19, "single_attn": 38, "ff": 19, "ff_context": 19}
_NOTE = "FLUX.1 12B MM-DiT (19 dual + 38 single blocks), CLIP-L (12) + T5-XXL (24) text; estimate"
_TINY = {**_FLUX, "text_self_attn": (4, 2), "text_mlp": (4, 2)}
_FULL = {**_FLUX, "text_self_attn": (12, 24), "text_mlp": (12, 24)}
_HUB = "black-forest-labs/FLUX.1-"

tiny_dev, random_dev = _dev_or_schnell(False)
tiny_schnell, random_schnell = _dev_or_schnell(True)

FLUX = register(Architecture(
    name="flux", title="FLUX.1-dev", released="2024-08", adapter=FluxAdapter, pipelines=("FluxPipeline",),
    tiny=tiny_dev, fullsize=random_dev, state_kinds=(),
    costs={"flux": ArchCost(28, 3.5, 1024, 0.35, _FULL, note=f"{_NOTE}; ~10 s per 28-step 1024² image")},
    tiny_sites=_TINY, hub_ids={_HUB + "dev": "flux"},
))

FLUX_SCHNELL = register(Architecture(
    name="flux_schnell", title="FLUX.1-schnell", released="2024-08", adapter=FluxSchnellAdapter,
    pipelines=("FluxPipeline",), tiny=tiny_schnell, fullsize=random_schnell, state_kinds=(),
    costs={"flux_schnell": ArchCost(4, 0.0, 1024, 0.35, _FULL, note=f"{_NOTE}; ~1.4 s per 4-step 1024² image")},
    tiny_sites=_TINY, hub_ids={_HUB + "schnell": "flux_schnell"},
    claims=lambda config: not config.get("guidance_embeds", False),  # schnell has no guidance embedding
))
