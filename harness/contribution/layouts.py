"""Where the text sits in a text-reading attention: one *reader* per attention family.

The fused attention processors (SDPA, FLUX's ``dispatch_attention_fn``) never materialize the attention
probabilities, so the contribution hook recomputes what it needs from the module's own inputs and weights. It
calls the module's own projections on the whole batch, so hooks already on them (an installed edit, a K/V swap
addressed by batch row) act exactly as in the forward pass, and selects the measured rows afterwards. A
reader takes an attention module and the inputs of one call and returns, for the whole batch, the *image*
queries as the processor computes them (after qk-norm and rotary embeddings), every key those queries
attend over (the softmax normalizer runs over all of them), the additive logit mask, the values, the column
where the text keys start, and the output projection W_o that turns the heads into the module's output.

Readers (the name an architecture declares per site kind, `ModelAdapter.text_attention`):

=================  ==========================================================  ===============================
reader             attention                                                   keys of the image queries
=================  ==========================================================  ===============================
``cross``          diffusers ``Attention`` with ``AttnProcessor2_0``: SD1.x/2.x    text only (``to_k``/``to_v`` of
                   and SDXL ``attn2``, PixArt and SANA ``attn2``                 the text), with the text mask
``added_kv``       DeepFloyd IF's ``AttnAddedKVProcessor``: text K/V from         [text, image]
                   ``add_k_proj``/``add_v_proj`` beside the image's own
``joint``          SD3/SD3.5 ``JointAttnProcessor2_0`` (qk-norm included)       [image, text]
``joint_text_first``  FLUX dual-stream ``FluxAttnProcessor`` (RoPE, qk-norm)    [text, image]
``single_text_first`` FLUX single-stream: one concatenated [text, image]        [text, image]; no ``to_out``
                   stream, text length from the adapter
=================  ==========================================================  ===============================

Each reader is checked against its module (`tests/unit/test_contribution.py`): softmax(q·kᵀ/√d + mask)·v through
W_o reproduces the module's own output for the image tokens, so the probabilities the contribution reads are
the ones the model used. A new attention family is one more reader here (or a callable declared in the
architecture's module); an architecture whose attention is one of these only names it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

INPUT_NAMES = ("hidden_states", "encoder_hidden_states", "attention_mask")


@dataclass
class AttentionRead:
    """What the image queries of one attention call see (all float32).

    `query` (B, H, Nq, d) image queries; `key`/`value` (B, H, Nk, d) every key they attend over; `bias`
    an additive logit mask broadcastable to (B, H, Nq, Nk), or None; `text_start` the key column of text
    token 0; `out` W_o applied to the heads concatenated (None: the module has none), scaled by `out_scale`.
    """

    query: torch.Tensor
    key: torch.Tensor
    value: torch.Tensor
    bias: torch.Tensor | None
    text_start: int
    out: torch.nn.Linear | None
    out_scale: float = 1.0

    def rows(self, index: torch.Tensor) -> AttentionRead:
        """The same read for batch rows `index` only (a mask of batch size 1 is shared by every row)."""
        pick = lambda t: t[index.to(t.device)]  # noqa: E731
        bias = self.bias if self.bias is None or self.bias.shape[0] == 1 else pick(self.bias)
        return AttentionRead(pick(self.query), pick(self.key), pick(self.value), bias, self.text_start, self.out,
                             self.out_scale)


Reader = Callable[[torch.nn.Module, dict, int], AttentionRead]


def call_inputs(args: tuple, kwargs: dict) -> dict:
    """An attention call's inputs by name (its first positional arguments are the hidden states, the text
    states and the mask, as diffusers' ``Attention.forward`` and ``FluxAttention.forward`` take them)."""
    return {**dict(zip(INPUT_NAMES, args)), **kwargs}


def _heads(x: torch.Tensor, heads: int) -> torch.Tensor:
    """(B, N, H·d) -> (B, H, N, d)."""
    return x.unflatten(-1, (heads, -1)).transpose(1, 2)


def _f32(*tensors):
    return tuple(None if t is None else t.float() for t in tensors)


def cross(attn, inputs: dict, text_length: int) -> AttentionRead:
    """``AttnProcessor2_0`` on a cross-attention: queries from the image, keys and values from the text."""
    hidden = inputs["hidden_states"]
    text = inputs.get("encoder_hidden_states")
    mask = inputs.get("attention_mask")
    if attn.spatial_norm is not None:
        hidden = attn.spatial_norm(hidden, inputs.get("temb"))
    if hidden.ndim == 4:
        hidden = hidden.flatten(2).transpose(1, 2)
    batch = hidden.shape[0]
    if mask is not None:
        mask = attn.prepare_attention_mask(mask, text.shape[1], batch)
        mask = mask.view(batch, attn.heads, -1, mask.shape[-1])
    if attn.group_norm is not None:
        hidden = attn.group_norm(hidden.transpose(1, 2)).transpose(1, 2)
    if attn.norm_cross:
        text = attn.norm_encoder_hidden_states(text)
    query, key, value = (_heads(p, attn.heads) for p in (attn.to_q(hidden), attn.to_k(text), attn.to_v(text)))
    if attn.norm_q is not None:
        query = attn.norm_q(query)
    if attn.norm_k is not None:
        key = attn.norm_k(key)
    query, key, value, mask = _f32(query, key, value, mask)
    return AttentionRead(query, key, value, mask, 0, attn.to_out[0], 1.0 / attn.rescale_output_factor)


def added_kv(attn, inputs: dict, text_length: int) -> AttentionRead:
    """``AttnAddedKVProcessor(2_0)`` (DeepFloyd IF): the text's K/V (``add_k_proj``/``add_v_proj``) come first
    among the keys, then the image's own (unless the layer is cross-attention only)."""
    hidden = inputs["hidden_states"]
    text = inputs.get("encoder_hidden_states")
    mask = inputs.get("attention_mask")
    hidden = hidden.view(hidden.shape[0], hidden.shape[1], -1).transpose(1, 2)
    batch, length = hidden.shape[:2]
    if mask is not None:
        mask = attn.prepare_attention_mask(mask, length, batch, out_dim=4)
    if attn.norm_cross:
        text = attn.norm_encoder_hidden_states(text)
    hidden = attn.group_norm(hidden.transpose(1, 2)).transpose(1, 2)
    query = _heads(attn.to_q(hidden), attn.heads)
    key, value = _heads(attn.add_k_proj(text), attn.heads), _heads(attn.add_v_proj(text), attn.heads)
    if not attn.only_cross_attention:
        key = torch.cat([key, _heads(attn.to_k(hidden), attn.heads)], dim=2)
        value = torch.cat([value, _heads(attn.to_v(hidden), attn.heads)], dim=2)
    query, key, value, mask = _f32(query, key, value, mask)
    return AttentionRead(query, key, value, mask, 0, attn.to_out[0])


def _joint_projections(attn, hidden: torch.Tensor, text: torch.Tensor):
    """Image and text Q/K/V of an MM-DiT joint attention, after its qk-norms, as (B, H, N, d)."""
    q, k, v = (_heads(p(hidden), attn.heads) for p in (attn.to_q, attn.to_k, attn.to_v))
    tk, tv = _heads(attn.add_k_proj(text), attn.heads), _heads(attn.add_v_proj(text), attn.heads)
    if attn.norm_q is not None:
        q = attn.norm_q(q)
    if attn.norm_k is not None:
        k = attn.norm_k(k)
    if attn.norm_added_k is not None:
        tk = attn.norm_added_k(tk)
    return q, k, v, tk, tv


def joint(attn, inputs: dict, text_length: int) -> AttentionRead:
    """``JointAttnProcessor2_0`` (SD3, SD3.5): one softmax over [image, text] keys; the image queries' text
    columns start after the image's own keys."""
    hidden = inputs["hidden_states"]
    q, k, v, tk, tv = _joint_projections(attn, hidden, inputs["encoder_hidden_states"])
    query, key, value = _f32(q, torch.cat([k, tk], dim=2), torch.cat([v, tv], dim=2))
    return AttentionRead(query, key, value, None, k.shape[2], attn.to_out[0])


def _no_mask(inputs: dict) -> None:
    """FLUX pipelines pass no attention mask; one passed anyway would have to be sliced to the image queries."""
    if inputs.get("attention_mask") is not None:
        raise NotImplementedError("attention contribution: a FLUX attention mask is not supported (the "
                                  "pipelines pass none)")


def _rotary(x: torch.Tensor, rotary) -> torch.Tensor:
    """FLUX's rotary embedding on (B, H, N, d) tensors (diffusers applies it on (B, N, H, d))."""
    from diffusers.models.embeddings import apply_rotary_emb

    return apply_rotary_emb(x.transpose(1, 2), rotary, sequence_dim=1).transpose(1, 2)


def _flux_projections(attn, hidden: torch.Tensor, text: torch.Tensor | None):
    """FLUX's Q/K/V (fused projections included, as the processor reads them) with its qk-norms, as
    (B, H, N, d); with text states, the text's come first along the sequence, as the processor concatenates."""
    from diffusers.models.transformers.transformer_flux import _get_qkv_projections

    q, k, v, tq, tk, tv = _get_qkv_projections(attn, hidden, text)
    q, k, v = attn.norm_q(_heads(q, attn.heads)), attn.norm_k(_heads(k, attn.heads)), _heads(v, attn.heads)
    if text is not None and attn.added_kv_proj_dim is not None:
        tq, tk = attn.norm_added_q(_heads(tq, attn.heads)), attn.norm_added_k(_heads(tk, attn.heads))
        q, k, v = (torch.cat([t, x], dim=2) for t, x in ((tq, q), (tk, k), (_heads(tv, attn.heads), v)))
    return q, k, v


def joint_text_first(attn, inputs: dict, text_length: int) -> AttentionRead:
    """FLUX dual-stream attention: [text, image] queries and keys, rotary embeddings on both; the image
    queries are the rows after the text's."""
    text = inputs["encoder_hidden_states"]
    q, k, v = _flux_projections(attn, inputs["hidden_states"], text)
    rotary = inputs.get("image_rotary_emb")
    if rotary is not None:
        q, k = _rotary(q, rotary), _rotary(k, rotary)
    query, key, value = _f32(q[:, :, text.shape[1]:], k, v)
    return AttentionRead(query, key, value, _no_mask(inputs), 0, attn.to_out[0])


def single_text_first(attn, inputs: dict, text_length: int) -> AttentionRead:
    """FLUX single-stream attention over the concatenated [text, image] stream; the text is the first
    `text_length` tokens, and the module has no output projection (the block's `proj_out` mixes it with the
    MLP), so the contribution is read before any."""
    q, k, v = _flux_projections(attn, inputs["hidden_states"], None)
    rotary = inputs.get("image_rotary_emb")
    if rotary is not None:
        q, k = _rotary(q, rotary), _rotary(k, rotary)
    out = attn.to_out[0] if getattr(attn, "to_out", None) is not None else None
    query, key, value = _f32(q[:, :, text_length:], k, v)
    return AttentionRead(query, key, value, _no_mask(inputs), 0, out)


READERS: dict[str, Reader] = {"cross": cross, "added_kv": added_kv, "joint": joint,
                              "joint_text_first": joint_text_first, "single_text_first": single_text_first}


def reader(name_or_reader: str | Reader) -> Reader:
    """The reader an architecture declares: a name of `READERS`, or its own callable."""
    if callable(name_or_reader):
        return name_or_reader
    try:
        return READERS[name_or_reader]
    except KeyError:
        raise ValueError(f"unknown attention reader '{name_or_reader}'; known: {', '.join(READERS)}") from None
