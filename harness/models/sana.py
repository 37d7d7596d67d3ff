"""SANA: a linear-attention DiT (`SanaTransformer2DModel`; 20 blocks at 1.6B, 28 at 600M, 60 at 4.8B) on a 32×
DC-AE latent, reading Gemma-2 text through classic cross-attention.

**Where text enters.** The pipeline prefixes the prompt with a long "complex human instruction" (its
default; Zarei et al. keep it), encodes prefix and prompt with Gemma-2 (2B, a decoder: causal attention),
and keeps the first token (BOS) and the last 299 positions of the padded sequence — so `prompt_embeds` start
at the prompt, the instruction dropped (right-padded, masked). The transformer projects them once per call
(`caption_projection`, then `caption_norm`, an RMSNorm) and every block's ``attn2`` reads that tensor through
`to_k`/`to_v` with the mask as an additive bias. As on PixArt (whose adapter this shares,
`harness.models.pixart.CaptionDiTAdapter`), a block's text K/V are a fixed function of the prompt: injection
is exact with the mask moved along, and LocoEdit, UCE and TIME rewrite `attn2.to_k`/`to_v`.

**Positions.** A word's tokens are found in the instruction-prefixed text the tokenizer really sees, after
the instruction (which has words of its own: "cat", "street"); `kv_positions` maps them to the kept tail
(token t of the encoder is K/V position t − n + 2, n the instruction's token count with BOS).

**Sites.** Per block: ``attn1`` (linear self-attention, gated), ``attn2`` (cross-attention, added ungated),
``ff`` (the Mix-FFN `GLUMBConv`, gated) and the block (``block``, the state); Gemma-2's attention and MLP
sublayers. Text enters nowhere else.

Every call passes ``use_resolution_binning=False`` (a 32² request would otherwise denoise 512² latents).
Zarei et al.: `Efficient-Large-Model/Sana_1600M_1024px_BF16_diffusers` in bf16, 20 steps, guidance 4.5, 3
seeds, top K = 6 blocks per concept (no fixed layer named).
"""

from __future__ import annotations

import functools
import inspect
import json
import re

from harness.models.adapters import GenerationConfig
from harness.models.parts import gemma_tokenizer
from harness.models.pixart import CaptionDiTAdapter
from harness.models.registry import ArchCost, Architecture, register
from harness.sites import classify


@functools.cache
def instruction() -> str:
    """The pipeline's default complex human instruction, joined as `SanaPipeline` joins it."""
    from diffusers import SanaPipeline

    return "\n".join(inspect.signature(SanaPipeline.__call__).parameters["complex_human_instruction"].default)


def site_kind(component: str, path: str, module) -> str | None:
    """SANA's blocks (``block``), their Mix-FFN (``ff``), Gemma-2's sublayers; the rest as `classify`."""
    cls = type(module).__name__
    if component == "transformer":
        return {"SanaTransformerBlock": "block", "GLUMBConv": "ff"}.get(cls) or classify(component, path, module)
    if component.startswith("text_encoder"):
        return {"Gemma2Attention": "text_self_attn", "Gemma2MLP": "text_mlp"}.get(cls)
    return None


class SanaAdapter(CaptionDiTAdapter):
    """SANA: instruction + prompt → Gemma-2 → the kept tail → caption_projection + caption_norm → attn2."""

    arch = "sana"
    paper_defaults = GenerationConfig(20, 4.5, 1024, 1024)
    gpu_dtype = "bf16"  # as SANA ships and Zarei et al. ran it
    training_objective = "flow"  # rectified flow (`train_dreambooth_lora_sana.py`)
    max_sequence_length = 300
    site_kind = staticmethod(site_kind)

    def training_forward(self, noisy, t, cond, batch):
        """The transformer as `train_dreambooth_lora_sana.py` calls it: with the caption's padding mask."""
        return self.denoiser(noisy, encoder_hidden_states=cond["prompt_embeds"], timestep=t,
                             encoder_attention_mask=cond["prompt_attention_mask"]).sample

    def probe_size(self) -> int:
        return max(32, super().probe_size())  # the pipeline takes sizes divisible by 32

    @functools.cached_property
    def instruction_tokens(self) -> int:
        """n: the instruction's tokens with BOS, as the pipeline counts them."""
        return len(self.pipe.tokenizer.encode(instruction()))

    def max_text_length(self, encoder_name: str) -> int:
        return self.instruction_tokens + self.max_sequence_length - 2  # the pipeline's `max_length_all`

    def token_positions(self, encoder_name: str, prompt: str, words: str) -> dict:
        from harness.interventions.text import token_positions

        text = instruction() + self.pipeline_text(prompt)
        return token_positions(self.pipe.tokenizer, text, words, self.max_text_length(encoder_name),
                               start=len(instruction()))

    def kv_positions(self, prompt: str, words: str) -> dict:
        shift = self.instruction_tokens - 2
        return {k: [i - shift for i in v] if isinstance(v, list) else v - shift
                for k, v in self.token_positions("text_encoder", prompt, words).items()}

    def _encode(self, prompts):
        embeds, mask, _, _ = self.pipe.encode_prompt(prompts, do_classifier_free_guidance=False, device=self.device,
                                                     clean_caption=False, max_sequence_length=self.max_sequence_length,
                                                     complex_human_instruction=instruction().split("\n"))
        return {"prompt_embeds": embeds, "prompt_attention_mask": mask}

    def _encode_negative(self):
        _, _, neg, neg_mask = self.pipe.encode_prompt([""], do_classifier_free_guidance=True, device=self.device,
                                                      clean_caption=False, max_sequence_length=self.max_sequence_length,
                                                      complex_human_instruction=instruction().split("\n"))
        return {"negative_prompt_embeds": neg, "negative_prompt_attention_mask": neg_mask}


def _scheduler():
    from diffusers import DPMSolverMultistepScheduler

    return DPMSolverMultistepScheduler(flow_shift=3.0, prediction_type="flow_prediction", use_flow_sigmas=True)


def _tokenizer():
    words = {"a", "the", "of", "in", "sign", "that", "says", "photo", "style", "painting", "house"}
    return gemma_tokenizer(sorted(words | set(re.findall(r"[A-Za-z']+", instruction()))))


def tiny_pipeline():
    """SANA 1.6B's 20 blocks at width 8 (2 heads × 4), a 2-layer Gemma-2 (8-d), a 2-block DC-AE (scale 2)."""
    from diffusers import AutoencoderDC, SanaPipeline, SanaTransformer2DModel
    from transformers import Gemma2Config, Gemma2Model

    tokenizer = _tokenizer()
    text_encoder = Gemma2Model(Gemma2Config(
        vocab_size=len(tokenizer), hidden_size=8, intermediate_size=16, num_hidden_layers=2, num_attention_heads=2,
        num_key_value_heads=2, head_dim=4, max_position_embeddings=2048, attn_implementation="eager")).eval()
    transformer = SanaTransformer2DModel(
        patch_size=1, in_channels=4, out_channels=4, num_layers=20, num_attention_heads=2, attention_head_dim=4,
        num_cross_attention_heads=2, cross_attention_head_dim=4, cross_attention_dim=8, caption_channels=8,
        sample_size=32).eval()
    vae = AutoencoderDC(
        in_channels=3, latent_channels=4, attention_head_dim=2, encoder_block_types=("ResBlock", "EfficientViTBlock"),
        decoder_block_types=("ResBlock", "EfficientViTBlock"), encoder_block_out_channels=(8, 8),
        decoder_block_out_channels=(8, 8), encoder_qkv_multiscales=((), (5,)), decoder_qkv_multiscales=((), (5,)),
        encoder_layers_per_block=(1, 1), decoder_layers_per_block=(1, 1), downsample_block_type="conv",
        upsample_block_type="interpolate", decoder_norm_types="rms_norm", decoder_act_fns="silu",
        scaling_factor=0.41407).eval()
    return SanaPipeline(tokenizer=tokenizer, text_encoder=text_encoder, vae=vae, transformer=transformer,
                        scheduler=_scheduler())


# The released configurations (transformer/config.json of the diffusers checkpoints), by cost variant.
SIZES = {"sana": dict(num_layers=20, num_attention_heads=70, num_cross_attention_heads=20, cross_attention_head_dim=112,
                      cross_attention_dim=2240),
         "sana_600m": dict(num_layers=28, num_attention_heads=36, num_cross_attention_heads=16,
                           cross_attention_head_dim=72, cross_attention_dim=1152)}


def fullsize_pipeline(variant: str = "sana"):
    """SANA 1.6B (or 600M) at 1024²: the transformer, Gemma-2 2B and the f32c32 DC-AE, random weights."""
    from diffusers import AutoencoderDC, SanaPipeline, SanaTransformer2DModel
    from transformers import Gemma2Config, Gemma2Model

    transformer = SanaTransformer2DModel(in_channels=32, out_channels=32, attention_head_dim=32, caption_channels=2304,
                                         mlp_ratio=2.5, sample_size=32, patch_size=1, **SIZES[variant]).eval()
    text_encoder = Gemma2Model(Gemma2Config(
        vocab_size=256000, hidden_size=2304, intermediate_size=9216, num_hidden_layers=26, num_attention_heads=8,
        num_key_value_heads=4, head_dim=256, max_position_embeddings=8192, sliding_window=4096,
        query_pre_attn_scalar=256, final_logit_softcapping=30.0, attn_logit_softcapping=50.0)).eval()
    vae = AutoencoderDC(encoder_block_types=("ResBlock",) * 3 + ("EfficientViTBlock",) * 3,
                        decoder_block_types=("ResBlock",) * 3 + ("EfficientViTBlock",) * 3,
                        upsample_block_type="interpolate", downsample_block_type="Conv", scaling_factor=0.41407).eval()
    return SanaPipeline(tokenizer=_tokenizer(), text_encoder=text_encoder, vae=vae, transformer=transformer,
                        scheduler=_scheduler())


def variant_of(folder) -> str | None:
    """``sana_600m`` for a 28-block checkpoint, else None (1.6B)."""
    config = folder / "transformer" / "config.json"
    if config.is_file() and json.loads(config.read_text()).get("num_layers") == 28:
        return "sana_600m"
    return None


def _blocks(n: int) -> dict:
    return {"cross_attn": n, "self_attn": n, "ff": n, "block": n}


_GEMMA2 = {"text_self_attn": (26,), "text_mlp": (26,)}

SANA = register(Architecture(
    name="sana", title="SANA", released="2024-10", adapter=SanaAdapter,
    pipelines=("SanaPipeline",), tiny=tiny_pipeline, fullsize=fullsize_pipeline,
    costs={"sana": ArchCost(20, 4.5, 1024, 0.03, {**_blocks(20), **_GEMMA2},
                            note="SANA 1.6B (1024 latent tokens, linear attention), Gemma-2 2B text (26 layers); "
                                 "estimated, not measured: ~0.6 s per 20-step image"),
           "sana_600m": ArchCost(20, 4.5, 1024, 0.02, {**_blocks(28), **_GEMMA2},
                                 note="SANA 600M, Gemma-2 2B text; estimated, not measured")},
    tiny_sites={**_blocks(20), "text_self_attn": (2,), "text_mlp": (2,)},
    hub_ids={"Efficient-Large-Model/Sana_1600M_1024px_diffusers": "sana",
             "Efficient-Large-Model/Sana_1600M_1024px_BF16_diffusers": "sana",
             "Efficient-Large-Model/Sana_600M_1024px_diffusers": "sana_600m"},
    variant_of=variant_of,
    state_kinds=("block",),
    edit_sites={"all": ("cross_attn", None)},  # UCE, TIME; LocoEdit and neuron edits take a sweep's layers
))
