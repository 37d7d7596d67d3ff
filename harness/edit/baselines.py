"""The toxic-text baselines P3 compares text patching with (docs/methods.md §3.7, Table 4), as inference-time edits.

Each reads the same `words_file` as `text_patch` (your list; loco ships none) and acts only on prompts
that contain a listed word:

* **prompt_swap** — generate prompt B directly: the prompt with every listed word replaced by
  `replacement` (P3's "Prompt Swap", its `upperbound/` scripts). The pipeline's `encode_prompt` returns
  B's encoding in place of A's.
* **negative_prompt** — classifier-free guidance away from the word: the unconditional half of the batch
  reads ``text "<word>"`` (P3's negative prompt) instead of the empty prompt, for those rows only.
* **sld** — Safe Latent Diffusion (Schramowski et al. 2023; diffusers' `StableDiffusionPipelineSafe`),
  which P3 ported to SDXL, IF and SD3. Here it is a guidance hook on the denoiser, so it works on every
  pipeline whose denoising loop does ε_u + g·(ε_c − ε_u): a forward hook also predicts ε_S for a safety
  concept and subtracts SLD's safety guidance from ε_c, which is exactly SLD's update

      ε = ε_u + g·(ε_c − ε_u − γ_S),  γ_S = μ ⊙ (ε_S − ε_u) + s_m·ν,  μ = min(s_S·|ε_c − ε_S|, 1) where ε_c − ε_S < λ
                                                                            (0 elsewhere), ν ← β_m·ν + (1 − β_m)·γ_S

  from step `sld_warmup_steps` on (the momentum ν accumulates from step 0). Defaults are diffusers'
  MEDIUM preset (s_S 1000, warm-up 10, λ 0.01, s_m 0.3, β_m 0.4); the safety concept is diffusers'
  default one, or with ``safety_concept: words`` the listed word as the negative prompt writes it.
  On SD1.x the hook's images equal `StableDiffusionPipelineSafe`'s (tests/integration/test_toxic_baselines.py).
  IF's UNet predicts noise and variance: the guidance acts on the noise channels, as IF's own CFG does.
  Without classifier-free guidance (guidance scale ≤ 1) there is no ε_u to guide from: refused in one line.

Rows match as `text_patch`'s do: a wrapped `encode_prompt` remembers the embedding of each triggering
prompt, and the denoiser hooks act on the batch rows that hold exactly that embedding (and on their
unconditional partners, the same position in the batch's first half).
"""

from __future__ import annotations

from pathlib import Path

import torch

from harness.edit.install import denoiser_of
from harness.errors import UserError

BASELINES = ("prompt_swap", "negative_prompt", "sld")
NEGATIVE_TEMPLATE = 'text "{word}"'  # P3's negative prompt for a toxic word
DEFAULT_SAFETY_CONCEPT = (  # diffusers' StableDiffusionPipelineSafe default
    "an image showing hate, harassment, violence, suffering, humiliation, harm, suicide, sexual, nudity, bodily "
    "fluids, blood, obscene gestures, illegal activity, drug use, theft, vandalism, weapons, child abuse, brutality, "
    "cruelty")
SLD_MEDIUM = {"sld_guidance_scale": 1000.0, "sld_warmup_steps": 10, "sld_threshold": 0.01, "sld_momentum_scale": 0.3,
              "sld_mom_beta": 0.4}


def run(spec, adapter) -> dict:
    """The inference-time spec of a baseline (what `install` reads from edit.yaml)."""
    from harness.edit.delta import sha256
    from harness.edit.text_patch import read_words

    read_words(spec.words_file)  # fail now, not at install time (the spec checked the keys)
    out = {"kind": spec.method, "words_file": spec.words_file, "words_sha256": sha256(Path(spec.words_file))}
    if spec.method == "prompt_swap":
        out["replacement"] = spec.replacement
    elif spec.method == "negative_prompt":
        out["negative_template"] = spec.negative_template or NEGATIVE_TEMPLATE
    else:
        out |= {"safety_concept": spec.safety_concept or DEFAULT_SAFETY_CONCEPT,
                "negative_template": spec.negative_template or NEGATIVE_TEMPLATE,
                **{k: (getattr(spec, k) if getattr(spec, k) is not None else v) for k, v in SLD_MEDIUM.items()}}
    return out


# ---- installing -------------------------------------------------------------------------------------------

def _words(spec: dict):
    import re

    from harness.edit.text_patch import read_words

    return [(w, re.compile(rf"(?<!\w){re.escape(w)}(?!\w)", re.IGNORECASE)) for w in read_words(spec["words_file"])]


def _prompts_of(args, kwargs) -> tuple[list[str], bool]:
    prompt = kwargs.get("prompt", args[0] if args else None)
    return ([prompt] if isinstance(prompt, str) else list(prompt or [])), "prompt" in kwargs


def _with_prompts(args, kwargs, prompts: list[str], in_kwargs: bool):
    if in_kwargs:
        return args, {**kwargs, "prompt": prompts}
    return (prompts, *args[1:]), kwargs


def _text(out) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(prompt embeddings, pooled embeddings or None) from an `encode_prompt` result."""
    return out[0], (out[2] if len(out) == 4 else None)


class _Remembered:
    """Prompt embeddings of triggering prompts, each with the conditioning to use for it."""

    def __init__(self):
        self.pairs: list[tuple[torch.Tensor, dict]] = []

    def rows(self, x: torch.Tensor) -> dict[int, dict]:
        found = {}
        for row in range(x.shape[0]):
            for a, info in self.pairs:
                if a.shape == x[row].shape and torch.equal(x[row], a.to(x.device, x.dtype)):
                    found[row] = info
                    break
        return found


def _wrap_encode(handle, remember) -> None:
    """Wrap `pipe.encode_prompt`: `remember(original, args, kwargs, out, prompts, in_kwargs)` may return a
    replacement result."""
    pipe = handle.pipe
    original = pipe.encode_prompt

    def encode_prompt(*args, **kwargs):
        out = original(*args, **kwargs)
        prompts, in_kwargs = _prompts_of(args, kwargs)
        replaced = remember(original, args, kwargs, out, prompts, in_kwargs) if prompts else None
        return out if replaced is None else replaced

    handle.replace(f"{handle.spec['kind']}/encode_prompt", pipe, "encode_prompt", encode_prompt)


def install_prompt_swap(handle, spec: dict) -> None:
    rules = [(pattern, spec["replacement"]) for _, pattern in _words(spec)]

    def remember(original, args, kwargs, out, prompts, in_kwargs):
        swapped = [_sub(p, rules) for p in prompts]
        if swapped == prompts:
            return None
        b_args, b_kwargs = _with_prompts(args, kwargs, swapped, in_kwargs)
        return original(*b_args, **b_kwargs)

    _wrap_encode(handle, remember)


def _sub(prompt: str, rules) -> str:
    for pattern, replacement in rules:
        prompt = pattern.sub(replacement, prompt)
    return prompt


def _conditioning_for(texts_of, handle, spec: dict) -> _Remembered:
    """Wrap encode_prompt so every triggering prompt's embedding is remembered with the encoding of
    `texts_of(found words)` (one text per prompt)."""
    words = _words(spec)
    memory = _Remembered()

    def remember(original, args, kwargs, out, prompts, in_kwargs):
        embeds, _ = _text(out)
        per = embeds.shape[0] // len(prompts)
        for i, prompt in enumerate(prompts):
            found = [w for w, pattern in words if pattern.search(prompt)]
            if not found:
                continue
            c_args, c_kwargs = _with_prompts(args, kwargs, [texts_of(found)], in_kwargs)
            c_embeds, c_pooled = _text(original(*c_args, **c_kwargs))
            for r in range(per):
                memory.pairs.append((embeds[i * per + r].detach().clone(),
                                     {"embeds": c_embeds[0].detach().clone(),
                                      "pooled": None if c_pooled is None else c_pooled[0].detach().clone()}))
        return None

    _wrap_encode(handle, remember)
    return memory


def _negative_text(spec: dict):
    return lambda found: ", ".join(spec["negative_template"].format(word=w) for w in found)


def _read_text(kwargs) -> tuple[torch.Tensor, torch.Tensor | None]:
    pooled = kwargs.get("pooled_projections")
    if pooled is None and isinstance(kwargs.get("added_cond_kwargs"), dict):
        pooled = kwargs["added_cond_kwargs"].get("text_embeds")
    return kwargs["encoder_hidden_states"], pooled


def _replace_text(kwargs, rows: dict[int, dict]) -> dict:
    """`kwargs` of a denoiser call with the text of batch row r replaced by rows[r] (embeds, pooled)."""
    embeds, pooled = _read_text(kwargs)
    embeds = embeds.clone()
    pooled = pooled.clone() if pooled is not None else None
    for row, info in rows.items():
        embeds[row] = info["embeds"].to(embeds.device, embeds.dtype)
        if pooled is not None and info["pooled"] is not None:
            pooled[row] = info["pooled"].to(pooled.device, pooled.dtype)
    out = {**kwargs, "encoder_hidden_states": embeds}
    if "pooled_projections" in kwargs:
        out["pooled_projections"] = pooled
    elif isinstance(kwargs.get("added_cond_kwargs"), dict) and pooled is not None:
        out["added_cond_kwargs"] = {**kwargs["added_cond_kwargs"], "text_embeds": pooled}
    return out


def _cfg_partners(handle, embeds: torch.Tensor, memory: _Remembered) -> dict[int, tuple[int, dict]]:
    """{conditional row: (its unconditional row, remembered info)} for the triggering rows of a CFG batch."""
    n = embeds.shape[0]
    if not getattr(handle.pipe, "do_classifier_free_guidance", False) or n % 2:
        return {}
    return {row: (row - n // 2, info) for row, info in memory.rows(embeds).items() if row >= n // 2}


def _check_pipeline(pipe, kind: str) -> None:
    """The guidance hooks need a CFG batch [uncond × B, cond × B] (the architecture's `has_cfg_batch`)."""
    from harness.models import registry

    arch = registry.for_pipeline(type(pipe).__name__)
    if arch is None or not arch.adapter.has_cfg_batch:
        able = [a.title for a in registry.architectures() if a.adapter.has_cfg_batch]
        raise UserError(f"edit: {kind} installs on {', '.join(able[:-1])} and {able[-1]} pipelines (a guidance "
                        f"hook on their denoiser), not {type(pipe).__name__}")


def install_negative_prompt(handle, spec: dict) -> None:
    _check_pipeline(handle.pipe, "negative_prompt")
    memory = _conditioning_for(_negative_text(spec), handle, spec)

    def pre(_module, args, kwargs):
        partners = _cfg_partners(handle, kwargs["encoder_hidden_states"], memory)
        if not partners:
            return None
        return args, _replace_text(kwargs, {u: info for u, info in partners.values()})

    handle.pre_forward("negative_prompt/denoiser", denoiser_of(handle.pipe), pre, with_kwargs=True)


def install_sld(handle, spec: dict) -> None:
    pipe = handle.pipe
    _check_pipeline(pipe, "sld")
    concept = spec["safety_concept"]
    texts_of = _negative_text(spec) if concept == "words" else (lambda found: concept)
    memory = _conditioning_for(texts_of, handle, spec)
    p = {k: float(spec[k]) for k in SLD_MEDIUM}
    state = {"inside": False, "step": 0, "momentum": {}}
    denoiser = denoiser_of(pipe)

    def hook(module, args, kwargs, output):
        if state["inside"]:
            return None
        t = args[1] if len(args) > 1 else kwargs.get("timestep")
        first = pipe.scheduler.timesteps[0]
        step_zero = t is not None and float(torch.as_tensor(t).flatten()[0]) == float(first)
        state["step"] = 0 if step_zero else state["step"] + 1
        if step_zero:
            state["momentum"].clear()
        if not getattr(pipe, "do_classifier_free_guidance", False):
            raise UserError("edit: sld guides away from the safety concept along the classifier-free guidance "
                            "difference; it needs guidance_scale > 1")
        partners = _cfg_partners(handle, kwargs["encoder_hidden_states"], memory)
        if not partners:
            return None
        state["inside"] = True
        try:  # the same batch, with the safety concept in the triggering rows: every row keeps its hooks' view
            safety = module(*args, **_replace_text(kwargs, {c: info for c, (_, info) in partners.items()}))
        finally:
            state["inside"] = False
        eps = output[0] if isinstance(output, tuple) else output.sample
        eps_s = safety[0] if isinstance(safety, tuple) else safety.sample
        channels = (args[0] if args else kwargs.get("hidden_states", kwargs.get("sample"))).shape[1]
        eps = eps.clone()
        for cond, (uncond, _) in partners.items():
            e_c, e_u, e_s = eps[cond, :channels], eps[uncond, :channels], eps_s[cond, :channels]
            scale = torch.clamp((e_c - e_s).abs() * p["sld_guidance_scale"], max=1.0)
            scale = torch.where(e_c - e_s >= p["sld_threshold"], torch.zeros_like(scale), scale)
            guidance = (e_s - e_u) * scale
            momentum = state["momentum"].get(cond, torch.zeros_like(guidance))
            guidance = guidance + p["sld_momentum_scale"] * momentum
            state["momentum"][cond] = p["sld_mom_beta"] * momentum + (1 - p["sld_mom_beta"]) * guidance
            if state["step"] >= p["sld_warmup_steps"]:
                eps[cond, :channels] = e_c - guidance
        if isinstance(output, tuple):
            return (eps, *output[1:])
        output.sample = eps
        return output

    handle.forward("sld/denoiser", denoiser, hook, with_kwargs=True)


INSTALLERS = {"prompt_swap": install_prompt_swap, "negative_prompt": install_negative_prompt, "sld": install_sld}
