"""The attention contribution's arithmetic: the formula against a hand computation, and every attention
reader against its module (the probabilities it forms are the ones the module used)."""

import pytest
import torch
from diffusers.models.attention_processor import (
    Attention,
    AttnAddedKVProcessor2_0,
    AttnProcessor2_0,
    JointAttnProcessor2_0,
)

from harness.contribution import AttentionRead, contribution, reader
from harness.contribution.layouts import call_inputs


def hand_contribution(q, k, v, mask, text_start, cols, weight, bias, scale=1.0):
    """The definition, written out: full attention probabilities, then Σ_k A[i, k] · V[k] one token at a
    time, heads concatenated, W_o (and b_o), norm per image token, mean over image tokens."""
    logits = q @ k.transpose(-1, -2) / q.shape[-1] ** 0.5
    if mask is not None:
        logits = logits + mask
    probs = torch.softmax(logits, dim=-1)  # (H, Nq, Nk)
    z = torch.zeros(q.shape[0], q.shape[1], v.shape[-1])
    for c in cols:
        z += probs[:, :, text_start + c, None] * v[:, None, text_start + c, :]
    z = z.transpose(0, 1).flatten(1)
    y = z @ weight.T
    return (y * scale).norm(dim=-1).mean().item(), ((y + bias) * scale).norm(dim=-1).mean().item()


def test_the_contribution_is_the_definition_computed_by_hand():
    torch.manual_seed(0)
    batch, heads, n_query, n_key, dim = 2, 3, 7, 11, 4
    q, k, v = (torch.randn(batch, heads, n, dim) for n in (n_query, n_key, n_key))
    mask = torch.zeros(batch, 1, 1, n_key)
    mask[1, ..., -2:] = -1e4  # row 1 masks its last two keys (PixArt's padding mask)
    out = torch.nn.Linear(heads * dim, 5)
    read = AttentionRead(q, k, v, mask, 3, out, 0.5)
    cols = [[0, 2], [1]]
    got = contribution(read, cols)
    for b in range(batch):
        want = hand_contribution(q[b], k[b], v[b], mask[b], 3, cols[b], out.weight.detach(), out.bias.detach(), 0.5)
        assert got[b].tolist() == pytest.approx(want, rel=1e-5)


def test_chunking_the_queries_changes_nothing(monkeypatch):
    from harness.contribution import measure

    torch.manual_seed(1)
    read = AttentionRead(*(torch.randn(1, 2, n, 4) for n in (9, 6, 6)), None, 2, torch.nn.Linear(8, 3))
    whole = contribution(read, [[0, 1, 3]])
    monkeypatch.setattr(measure, "MAX_LOGITS", 2 * 6 * 2)  # two queries per chunk
    assert torch.allclose(contribution(read, [[0, 1, 3]]), whole, rtol=1e-12, atol=0)


def test_a_concept_the_queries_ignore_contributes_nothing_and_without_an_output_projection_it_is_z():
    torch.manual_seed(2)
    q, k, v = (torch.randn(1, 2, n, 4) for n in (5, 6, 6))
    mask = torch.zeros(1, 1, 1, 6)
    mask[..., 1] = -torch.inf
    read = AttentionRead(q, k, v, mask, 0, None)
    assert contribution(read, [[1]]).tolist() == [[0.0, 0.0]]
    probs = torch.softmax(q[0] @ k[0].transpose(-1, -2) / 2 + mask[0], dim=-1)
    z = (probs[:, :, 3:4] @ v[0, :, 3:4]).transpose(0, 1).flatten(1)
    assert contribution(read, [[3]])[0, 0].item() == pytest.approx(z.norm(dim=-1).mean().item(), rel=1e-6)


# ---- readers: softmax(q kᵀ/√d + mask) v through W_o is the module's own output --------------------------------

def rebuild(read: AttentionRead) -> torch.Tensor:
    logits = read.query @ read.key.transpose(-1, -2) / read.query.shape[-1] ** 0.5
    if read.bias is not None:
        logits = logits + read.bias
    z = (torch.softmax(logits, dim=-1) @ read.value).transpose(1, 2).flatten(2)
    return (z if read.out is None else read.out(z)) * read.out_scale


def read_call(module, name, *args, text_length=0, **kwargs):
    """The reader's view of a call of `module`."""
    return reader(name)(module, call_inputs(args, kwargs), text_length)


@torch.no_grad()
def test_cross_reader_reproduces_sd_and_pixart_cross_attention():
    torch.manual_seed(0)
    sd = Attention(16, cross_attention_dim=32, heads=2, dim_head=8, processor=AttnProcessor2_0()).eval()
    image, text = torch.randn(2, 12, 16), torch.randn(2, 7, 32)
    assert torch.allclose(rebuild(read_call(sd, "cross", image, encoder_hidden_states=text)),
                          sd(image, encoder_hidden_states=text), atol=1e-5)
    pixart = Attention(24, cross_attention_dim=24, heads=3, dim_head=8, bias=True, processor=AttnProcessor2_0()).eval()
    image, text = torch.randn(2, 12, 24), torch.randn(2, 7, 24)
    keep = torch.ones(2, 7)
    keep[1, 4:] = 0  # row 1's text has 4 tokens and 3 of padding
    mask = ((1 - keep) * -10000.0).unsqueeze(1)  # as PixArtTransformer2DModel passes it
    read = read_call(pixart, "cross", image, encoder_hidden_states=text, attention_mask=mask)
    assert torch.allclose(rebuild(read), pixart(image, encoder_hidden_states=text, attention_mask=mask), atol=1e-5)


@torch.no_grad()
def test_added_kv_reader_reproduces_deepfloyd_if_attention():
    torch.manual_seed(0)
    attn = Attention(16, cross_attention_dim=16, heads=2, dim_head=8, added_kv_proj_dim=12, norm_num_groups=4,
                     bias=True, upcast_softmax=True, processor=AttnAddedKVProcessor2_0()).eval()
    image, text = torch.randn(2, 16, 3, 3), torch.randn(2, 5, 12)
    read = read_call(attn, "added_kv", image, encoder_hidden_states=text)
    assert read.text_start == 0 and read.key.shape[2] == 5 + 9  # text keys first, then the image's
    output = attn(image, encoder_hidden_states=text) - image  # the processor adds its input back
    assert torch.allclose(rebuild(read), output.flatten(2).transpose(1, 2), atol=1e-5)


@torch.no_grad()
@pytest.mark.parametrize("qk_norm", [None, "rms_norm"], ids=["sd3", "sd35-qk-norm"])
def test_joint_reader_reproduces_sd3_joint_attention(qk_norm):
    torch.manual_seed(0)
    attn = Attention(16, added_kv_proj_dim=16, dim_head=8, heads=2, out_dim=16, context_pre_only=False, bias=True,
                     qk_norm=qk_norm, eps=1e-6, processor=JointAttnProcessor2_0()).eval()
    image, text = torch.randn(2, 9, 16), torch.randn(2, 6, 16)
    read = read_call(attn, "joint", image, encoder_hidden_states=text)
    assert read.text_start == 9  # [image, text] keys
    assert torch.allclose(rebuild(read), attn(image, encoder_hidden_states=text)[0], atol=1e-5)


def flux_rotary(n_text, n_image):
    from diffusers.models.embeddings import FluxPosEmbed

    ids = torch.cat([torch.zeros(n_text, 3), torch.stack([torch.zeros(n_image), torch.arange(n_image) // 3,
                                                          torch.arange(n_image) % 3], dim=1)])
    return FluxPosEmbed(theta=10000, axes_dim=[2, 2, 4])(ids)


@torch.no_grad()
def test_flux_readers_reproduce_dual_and_single_stream_attention():
    from diffusers.models.transformers.transformer_flux import FluxAttention, FluxAttnProcessor

    torch.manual_seed(0)
    dual = FluxAttention(16, heads=2, dim_head=8, added_kv_proj_dim=16, out_dim=16, bias=True, eps=1e-6,
                         processor=FluxAttnProcessor()).eval()
    image, text, rotary = torch.randn(2, 9, 16), torch.randn(2, 5, 16), flux_rotary(5, 9)
    read = read_call(dual, "joint_text_first", image, encoder_hidden_states=text, image_rotary_emb=rotary)
    assert read.text_start == 0 and read.query.shape[2] == 9
    assert torch.allclose(rebuild(read), dual(image, encoder_hidden_states=text, image_rotary_emb=rotary)[0],
                          atol=1e-5)
    single = FluxAttention(16, heads=2, dim_head=8, out_dim=16, bias=True, eps=1e-6, pre_only=True,
                           processor=FluxAttnProcessor()).eval()
    stream = torch.randn(2, 14, 16)  # [text (5), image (9)]
    read = read_call(single, "single_text_first", stream, image_rotary_emb=rotary, text_length=5)
    assert read.out is None and read.query.shape[2] == 9
    assert torch.allclose(rebuild(read), single(stream, image_rotary_emb=rotary)[:, 5:], atol=1e-5)


def test_an_unknown_reader_is_named():
    with pytest.raises(ValueError, match="unknown attention reader 'crosss'; known: cross, added_kv"):
        reader("crosss")
