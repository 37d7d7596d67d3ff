"""Text-encoder side: token positions of the concept, P1's corruption noise, and text-encoder restores."""

from __future__ import annotations

import hashlib
import weakref
from collections import defaultdict

import torch

from harness.interventions.hooks import Hooks, Move, apply_moves
from harness.interventions.spec import Corruption, Sample
from harness.words import find_words, missing_words_message

# ---- token positions ---------------------------------------------------------------------------------

def token_positions(tokenizer, prompt: str, attribute: str, max_length: int, start: int = 0) -> dict:
    """Token indices of `attribute` in `prompt` as the pipeline tokenizes it (its first occurrence at or after
    character `start`: SANA's prompt follows an instruction that may contain the same words).

    Returns ``span`` (all attribute token indices), ``first_subject``, ``middle_subject`` (the middle of the
    span, ``span[(n - 1) // 2]``: the first token for spans of one or two tokens), ``last_subject`` and
    ``last`` (the final non-padding token: EOS for CLIP and T5) — P1's four positions. The attribute is
    found as whole words (`harness.words`: "red" in "checkered ... red circle" is the word, not the token
    "kered") and mapped to tokens by the tokenizer's character offsets. Raises ValueError when the
    attribute is not a whole-word span of the prompt or is cut off by truncation.
    """
    found = find_words(prompt, attribute, start)
    if found is None:
        raise ValueError(missing_words_message(prompt[start:], attribute))
    start, end = found
    enc = tokenizer(prompt, truncation=True, max_length=max_length, return_offsets_mapping=True)
    span = [i for i, (a, b) in enumerate(enc["offset_mapping"]) if b > a and a < end and b > start]
    if not span:
        raise ValueError(f"attribute '{attribute}' falls outside the first {max_length} tokens of '{prompt}'")
    return {"span": span, "first_subject": span[0], "middle_subject": span[(len(span) - 1) // 2],
            "last_subject": span[-1],
            "last": len(enc["input_ids"]) - 1}


def stable_seed(*parts) -> int:
    """A 63-bit seed from `parts` that is the same in every process (Python's hash() is salted)."""
    return int.from_bytes(hashlib.sha256(repr(parts).encode()).digest()[:8], "little") & (2**63 - 1)


# ---- text side ---------------------------------------------------------------------------------------

_EMBEDDING_STD: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def embedding_std(encoder: torch.nn.Module) -> float:
    """σ of the encoder's token-embedding matrix (P1/ROME: noise scale = κ·σ). Computed once per encoder
    (T5-XXL's matrix is 131M entries) and again only if the weights are modified in place."""
    weight = encoder.get_input_embeddings().weight
    cached = _EMBEDDING_STD.get(encoder)
    if cached is None or cached[0] != weight._version:
        cached = (weight._version, float(weight.detach().float().std()))
        _EMBEDDING_STD[encoder] = cached
    return cached[1]


_SUBJECT_STD: dict = {}


def subject_std(adapter, name: str, subjects: tuple[str, ...]) -> float:
    """σ of the token embeddings of `subjects` in encoder `name` (ROME's ``collect_embedding_std``: all the
    subjects' tokens pooled), each tokenized alone as the pipeline would see it, without special tokens."""
    encoder, tokenizer = adapter.text_encoders()[name]
    weight = encoder.get_input_embeddings().weight
    key = (id(encoder), weight._version, subjects)
    if key not in _SUBJECT_STD:
        ids = [i for s in subjects for i in tokenizer(adapter.pipeline_text(s), add_special_tokens=False)["input_ids"]]
        if not ids:
            raise ValueError(f"noise_std: subject: the concepts {list(subjects)} have no tokens in {name}")
        _SUBJECT_STD[key] = float(weight.detach()[torch.tensor(ids, device=weight.device)].float().std())
    return _SUBJECT_STD[key]


def noise_std(adapter, name: str, corruption: Corruption) -> float:
    """σ of `corruption` in text encoder `name` (see `Corruption`)."""
    if corruption.std == "embedding":
        return embedding_std(adapter.text_encoders()[name][0])
    if corruption.std == "subject":
        return subject_std(adapter, name, corruption.subjects)
    return float(corruption.std)


def noise_stds(adapter, corruption: Corruption) -> list[float]:
    """σ per text encoder, in the adapter's encoder order (what result rows record as `noise_std`)."""
    return [noise_std(adapter, name, corruption) for name in adapter.text_encoders()]


def input_embedding_modules(encoder: torch.nn.Module) -> list[torch.nn.Module]:
    """The token-embedding modules the encoder's forward really calls: transformers 5 gives T5 a separate
    ``encoder.embed_tokens`` tied to ``shared`` (what get_input_embeddings returns), so match by weight."""
    weight = encoder.get_input_embeddings().weight
    return [m for m in encoder.modules()
            if isinstance(m, torch.nn.Embedding) and m.weight.data_ptr() == weight.data_ptr()]


def text_hooks(adapter, rows: list[Sample]) -> Hooks:
    """Hooks for one encode call over `rows` (one prompt): noise on the attribute tokens of corrupted rows
    and text-encoder restores from the clean row (index of the first plain row)."""
    hooks = Hooks()
    try:
        _install_text_hooks(hooks, adapter, rows)
    except BaseException:
        hooks.__exit__()
        raise
    return hooks


def _install_text_hooks(hooks: Hooks, adapter, rows: list[Sample]) -> None:
    prompt = rows[0].prompt
    clean = next((i for i, row in enumerate(rows) if row.is_plain), None)
    noise_rows = [(i, row.corruption) for i, row in enumerate(rows) if row.corruption is not None]
    for name, (encoder, _) in adapter.text_encoders().items():
        if noise_rows:
            moves = []
            width = encoder.get_input_embeddings().weight.shape[1]
            for i, corruption in noise_rows:
                span = adapter.token_positions(name, prompt, corruption.concept)["span"]
                gen = torch.Generator().manual_seed(stable_seed(corruption.seed, prompt, name))
                sigma = noise_std(adapter, name, corruption)
                noise = torch.randn(len(span), width, generator=gen) * corruption.scale * sigma
                moves.append((i, torch.tensor(span), noise))
            for module in input_embedding_modules(encoder):
                hooks.add(module.register_forward_hook(lambda _m, _a, out, moves=moves: _add_noise(out, moves)))
        by_site: dict[str, list[Move]] = defaultdict(list)
        for i, row in enumerate(rows):
            for restore in row.text_restores:
                if not restore.site.startswith(name + "."):
                    continue
                if clean is None:
                    raise RuntimeError(f"text restore for {prompt!r} needs a clean row in the encode batch")
                attribute = row.corruption.concept if row.corruption else ""
                pos = adapter.token_positions(name, prompt, attribute)[restore.position]
                by_site[restore.site].append(Move(torch.tensor([i]), torch.tensor([clean]), position=pos))
        for site, moves in by_site.items():
            hooks.add(adapter.module(site).register_forward_hook(
                lambda _m, _a, out, moves=moves: apply_moves(moves, out, None)))


def _add_noise(out: torch.Tensor, moves) -> torch.Tensor:
    for row, span, noise in moves:
        out[row, span] += noise.to(out.device, out.dtype)
    return out
