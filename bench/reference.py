"""Reference-style loops: the papers' way of running the same science, for same-run speed ratios.

One pipeline call per variant, batch 1, prompt strings re-encoded by every call, forward hooks doing the
intervention — the structure of LocoGen's `trace_attn_layer.py` (P2), P3's cached K/V patching scripts (on
FLUX also the structure of Zarei et al.'s block-by-block scripts: a clean run cached, then one call per
prompt and block with that block's hooks installed by hand) and a P1-style causal trace with a cached clean
run. Written here from the papers' descriptions (docs/methods.md), not
copied. Each function returns the list of images it generated (uint8), so the benchmark can check that the
harness produced the same pictures.
"""

from __future__ import annotations

from contextlib import contextmanager

import numpy as np
import torch
from torch.nn.functional import linear

from harness.interventions import embedding_std, input_embedding_modules, stable_seed, token_positions
from harness.sites import TEXT_KINDS


@contextmanager
def _hooked(*handles):
    """Keep the hooks `handles` registered for the body, then remove them."""
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def _call(adapter, prompt, seed, cfg, **extra) -> np.ndarray:
    """One plain pipeline call at batch 1 (with the keywords the architecture's plain call needs: FLUX's T5
    length), as uint8."""
    out = adapter.pipe(prompt=prompt, num_inference_steps=cfg.steps, guidance_scale=cfg.guidance_scale,
                       height=cfg.height, width=cfg.width, generator=torch.Generator().manual_seed(seed),
                       output_type="np", **adapter.plain_call_kwargs(), **extra)
    return (np.asarray(out.images) * 255).round().clip(0, 255).astype(np.uint8)[0]


def locogen_loop(adapter, pairs, seed, cfg, window: int = 1, starts: int | None = None) -> list[np.ndarray]:
    """LocoGen as its code does it: the pipeline is called with the *target* prompt, and forward hooks on
    every attn2.to_k/to_v outside the window overwrite the conditional half (batch index 1) with the
    projection of what those projections read for the original prompt (`kv_input`: its prompt embeddings on
    the UNets, PixArt's caption projection of T5); one call per window start (the first `starts` of them,
    default all), plus the original image. Where the text sites mask the prompt's padding (PixArt, SANA:
    `masks_text`), a pre-hook on each of those attentions also gives the conditional half the original
    prompt's mask, whose padding sits elsewhere than the target's."""
    sites = [s.name for s in adapter.sites.of_kind("cross_attn")]
    images = []
    for prompt, target in pairs:
        images.append(_call(adapter, prompt, seed, cfg))
        for start in range(len(sites) - window + 1)[:starts]:
            cond = adapter.encode([prompt])  # re-encoded for every call, as the loop does
            original = adapter.kv_input(cond)
            mask = adapter.text_mask(cond) if adapter.masks_text else None
            handles = []
            for i, site in enumerate(sites):
                if start <= i < start + window:
                    continue
                for proj in adapter.kv_modules(site):
                    def hook(_m, _a, out, proj=proj):
                        out[1] = linear(original.to(proj.weight.dtype), proj.weight, proj.bias)[0]
                        return out
                    handles.append(proj.register_forward_hook(hook))
                if mask is not None:
                    handles.append(adapter.module(site).register_forward_pre_hook(_cond_mask(mask), with_kwargs=True))
            with _hooked(*handles):
                images.append(_call(adapter, target, seed, cfg))
    return images


def _cond_mask(mask: torch.Tensor):
    """A pre-forward hook giving an attention's conditional half (batch index 1) the additive padding bias
    `mask` (1 × 1 × tokens) in its ``attention_mask`` keyword; a copy, since every block shares the tensor."""

    def hook(_m, args, kwargs):
        moved = kwargs["attention_mask"].clone()
        moved[1] = mask[0].to(moved.dtype)
        return args, {**kwargs, "attention_mask": moved}

    return hook


class _Steps:
    def __init__(self, module):
        self.step = -1
        self.handle = module.register_forward_pre_hook(self)

    def __call__(self, *_):
        self.step += 1


def patching_loop(adapter, pairs, seed, cfg, step_start: int, limit: int | None = None) -> list[np.ndarray]:
    """P3's cached patching (SD3 / IF), and Zarei et al.'s block-by-block loop on FLUX: run prompt B once
    caching every layer's text-side K/V output per step on the CPU, run A once, then for each layer run A
    again replacing that layer's text K/V with B's from step `step_start` on. Where a projection sees text
    and image together (FLUX's single-stream blocks) only its text slice (`adapter.text_tokens`) is cached
    and replaced. `limit`: the first that many layers only."""
    sites = [s.name for kind in TEXT_KINDS for s in adapter.sites.of_kind(kind)][:limit]  # SD3: joint; FLUX: + single
    text = {site: slice(*(adapter.text_tokens(site) or (None, None))) for site in sites}
    images = []
    for prompt, target in pairs:
        cache: dict[tuple[int, int], torch.Tensor] = {}
        steps = _Steps(adapter.denoiser)
        handles = []
        for i, site in enumerate(sites):
            for j, proj in enumerate(adapter.kv_modules(site)):
                def record(_m, _a, out, key=(i, j), tokens=text[site]):
                    cache[key + (steps.step,)] = out[:, tokens].detach().to("cpu", copy=True)
                handles.append(proj.register_forward_hook(record))
        with _hooked(*handles, steps.handle):
            images.append(_call(adapter, target, seed, cfg))
        images.append(_call(adapter, prompt, seed, cfg))
        for i, site in enumerate(sites):
            steps = _Steps(adapter.denoiser)
            handles = []
            for j, proj in enumerate(adapter.kv_modules(site)):
                def patch(_m, _a, out, key=(i, j), tokens=text[site]):
                    if steps.step >= step_start:
                        out[:, tokens] = cache[key + (steps.step,)].to(out.device, out.dtype)
                    return out
                handles.append(proj.register_forward_hook(patch))
            with _hooked(*handles, steps.handle):
                images.append(_call(adapter, prompt, seed, cfg))
    return images


def causal_trace_loop(adapter, items, seed, cfg, kinds=("cross_attn",), scale: float = 3.0) -> list[np.ndarray]:
    """P1-style causal tracing, one call per restored site: a clean run caching every traced site's output
    at every step, a corrupted run (noise on the attribute's token embeddings), then one corrupted run per
    site with that site's clean output restored in the conditional half at every step. (SD1.x: one text
    encoder. The noise is drawn as the harness draws it, so the images can be compared.)"""
    pipe = adapter.pipe
    sites = [s.name for k in kinds for s in adapter.sites.of_kind(k)]
    encoder, tokenizer = pipe.text_encoder, pipe.tokenizer
    sigma = embedding_std(encoder)
    images = []
    for prompt, attribute in items:
        span = token_positions(tokenizer, prompt, attribute, 77)["span"]
        gen = torch.Generator().manual_seed(stable_seed(0, prompt, "text_encoder"))
        noise = torch.randn(len(span), encoder.get_input_embeddings().weight.shape[1], generator=gen) * scale * sigma

        def corrupt(_m, _a, out):
            out[0, span] += noise.to(out.dtype)
            return out

        clean: dict[tuple[str, int], torch.Tensor] = {}
        steps = _Steps(adapter.denoiser)
        handles = []
        for site in sites:
            def record(_m, _a, out, site=site):
                clean[(site, steps.step)] = out.detach().clone()
            handles.append(adapter.module(site).register_forward_hook(record))
        with _hooked(*handles, steps.handle):
            images.append(_call(adapter, prompt, seed, cfg))
        noise_handles = [m.register_forward_hook(corrupt) for m in input_embedding_modules(encoder)]
        with _hooked(*noise_handles), torch.no_grad():  # the prompt's embeddings only, not the negative's
            corrupted = pipe.encode_prompt(prompt, adapter.device, 1, False)[0]
        images.append(_call(adapter, None, seed, cfg, prompt_embeds=corrupted))
        for site in sites:
            steps = _Steps(adapter.denoiser)

            def restore(_m, _a, out, site=site):
                out[1] = clean[(site, steps.step)][1]
                return out
            with _hooked(adapter.module(site).register_forward_hook(restore), steps.handle):
                images.append(_call(adapter, None, seed, cfg, prompt_embeds=corrupted))
    return images
