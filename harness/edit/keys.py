"""Keys and values: the text-side vectors a closed-form edit is fitted on.

A closed-form edit needs pairs (k_i, v_i): "when this layer sees k_i it should produce v_i". All the
editors build them the same way (docs/methods.md §1.3, §2.3, §11):

1. **Augment**: each concept is put into a few prompt templates ("{}", "a photo of {}", ...), and the
   target into the same templates, so the edit covers the concept in context, not only alone.
2. **Encode** both with the model's own text encoder(s): the keys of a cross-attention K/V edit are the
   vectors ``attn2`` reads, the adapter's `kv_input` (SD1.x: CLIP last layer, 768-d; SD2: 1024-d; SDXL: the
   two encoders' penultimate states concatenated, 2048-d; PixArt: T5 through the caption projection;
   SANA: Gemma-2 through the caption projection and norm).
3. **Pick positions**: the *last subject token* (the last token of the concept in the prompt; the papers'
   "token before the first EOS" when the concept ends the prompt), optionally followed by the EOS/padding
   positions, aligned one to one with the target prompt's positions after its own last subject token;
   once the target runs out, extra keys pair with its last position (76), as DiffQuickFix's notebook does.
   Positions count in the sequence the K/V read (`ModelAdapter.kv_positions`: SANA keeps only the tail of
   its encoder's instruction-prefixed sequence).

Values are then the *original* layer applied to the target's vectors (v = W_old x_target): after the
edit, the layer maps the concept where it used to map the target.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from harness.errors import UserError
from harness.interventions import token_positions

MAX_LENGTH = 77

TEMPLATES = {  # P2's LocoEdit augmentations (loco_edit.py) per attribute; P1's DiffQuickFix set
    "style": ["{}", "a painting in the style of {}", "a photo in the style of {}", "a picture in the style of {}"],
    "object": ["{}", "an image of {}", "a photo of {}", "a picture of {}"],
    "diffquickfix": ["{}", "a photo of {}", "an image of {}", "a picture of {}"],
    "bare": ["{}"],
}


class EditInputError(UserError):
    """Keys or values that cannot be built (a concept no template prompt tokenizes, a bad template)."""


@dataclass(frozen=True)
class Pair:
    """One (concept prompt, target prompt) pair and the aligned token positions of keys and values."""

    key_prompt: str
    value_prompt: str
    key_positions: tuple[int, ...]
    value_positions: tuple[int, ...]


def first_eos(tokenizer, text: str) -> int:
    ids = tokenizer(text, padding="max_length", max_length=MAX_LENGTH, truncation=True)["input_ids"]
    eos = tokenizer.eos_token_id
    return ids.index(eos) if eos in ids else len(ids) - 1


def last_subject(tokenizer, text: str, words: str) -> int:
    """Index of the last token of `words` in `text`; for empty `words` the token before the first EOS
    (UCE's ``attention_mask.sum() - 2``, i.e. BOS for the empty prompt)."""
    if not words.strip():
        return first_eos(tokenizer, text) - 1
    return token_positions(tokenizer, text, words, MAX_LENGTH)["last_subject"]


def aligned(key_last: int, value_last: int, use_eos: bool) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Key positions [key_last, .., 76] (or only key_last) and the value positions paired with them."""
    if not use_eos:
        return (key_last,), (value_last,)
    keys = tuple(range(key_last, MAX_LENGTH))
    return keys, tuple(min(value_last + i, MAX_LENGTH - 1) for i in range(len(keys)))


def check_templates(templates: list[str]) -> None:
    for i, template in enumerate(templates):
        if template.count("{}") != 1:
            raise EditInputError(f"templates[{i}]: '{template}' must contain '{{}}' exactly once (where the "
                                 "concept or target goes)")


def kv_subject(adapter, prompt: str, words: str) -> int:
    """The last subject token of `words` in `prompt`, counted in the sequence the K/V read; for empty `words`
    the token before the first EOS."""
    if not words.strip():
        return first_eos(next(iter(adapter.text_encoders().values()))[1], adapter.pipeline_text(prompt)) - 1
    return adapter.kv_positions(prompt, words)["last_subject"]


def build_pairs(tokenizer, text_of, concept: str, target: str, templates: list[str], use_eos: bool,
                where: str, subject_of=None) -> list[Pair]:
    """Aligned pairs for one edit over the templates; a template whose prompt does not tokenize the concept
    (cut off after 77 tokens, or words the tokenizer drops) is skipped, and none left is an error. Positions
    are `tokenizer`'s of `text_of(prompt)`, or `subject_of(prompt, words)` when given (`kv_subject`)."""
    check_templates(templates)
    subject_of = subject_of or (lambda prompt, words: last_subject(tokenizer, text_of(prompt), words))
    pairs = []
    for template in templates:
        key_prompt, value_prompt = template.format(concept), template.format(target)
        try:
            k_last = subject_of(key_prompt, concept)
            v_last = subject_of(value_prompt, target)
        except ValueError:
            continue
        kp, vp = aligned(k_last, v_last, use_eos)
        pairs.append(Pair(key_prompt, value_prompt, kp, vp))
    if not pairs:
        raise EditInputError(f"{where}.concept: no augmentation prompt tokenizes '{concept}' (templates: "
                             + "; ".join(templates) + ")")
    return pairs


def gather(embeds: torch.Tensor, prompts: list[str], pairs: list[Pair], value: bool) -> torch.Tensor:
    """Rows of `embeds` (one per prompt, N × 77 × d) at the pairs' key (or value) positions, stacked."""
    index = {p: i for i, p in enumerate(prompts)}
    rows = []
    for pair in pairs:
        prompt = pair.value_prompt if value else pair.key_prompt
        positions = pair.value_positions if value else pair.key_positions
        rows.append(embeds[index[prompt], list(positions)])
    return torch.cat(rows) if rows else embeds.new_zeros(0, embeds.shape[-1])


def prompt_embedding_pairs(adapter, edits, templates: list[str], use_eos: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """(X_key, X_value): the vectors attn2 reads (`kv_input`), at aligned positions, for every edit stacked.

    `edits` is a list of objects with `concept` and `target`."""
    pairs = []
    for i, edit in enumerate(edits):
        pairs += build_pairs(None, None, edit.concept, edit.target, templates, use_eos, f"edits[{i}]",
                             subject_of=lambda p, w: kv_subject(adapter, p, w))
    prompts = list(dict.fromkeys([p.key_prompt for p in pairs] + [p.value_prompt for p in pairs]))
    embeds = adapter.kv_input(adapter.encode(prompts)).to(torch.float64)
    return gather(embeds, prompts, pairs, value=False), gather(embeds, prompts, pairs, value=True)


def concept_embeddings(adapter, concepts: list[str], templates: list[str]) -> torch.Tensor:
    """Last-subject-token K/V inputs (`kv_input`) of `concepts` in `templates` (UCE's preserve keys)."""
    prompts, positions = [], []
    for concept in concepts:
        for template in templates:
            prompt = template.format(concept)
            try:
                positions.append(kv_subject(adapter, prompt, concept))
            except ValueError:
                raise EditInputError(f"preserve: '{concept}' is not tokenized in '{prompt}'") from None
            prompts.append(prompt)
    if not prompts:
        return torch.zeros(0, 0, dtype=torch.float64)
    embeds = adapter.kv_input(adapter.encode(prompts)).to(torch.float64)
    return embeds[torch.arange(len(prompts)), torch.tensor(positions)]


def prompt_covariance(adapter, prompts: list[str], ridge: float | None = None):
    """MEMIT's prior C0 = E[k kᵀ] over every token (BOS to first EOS; where the text sites mask padding, every
    unmasked token) of `prompts`' K/V inputs (`kv_input`), checked for rank
    (`harness.edit.solver.covariance_prior`: refused when singular unless `ridge`)."""
    from harness.edit.solver import covariance_prior

    tokenizer = next(iter(adapter.text_encoders().values()))[1]
    cond = adapter.encode(list(prompts))
    embeds = adapter.kv_input(cond).to(torch.float64)
    mask = adapter.text_mask(cond)
    if mask is not None:
        rows = [embeds[i, mask[i, 0] == 0] for i in range(len(prompts))]
    else:
        rows = [embeds[i, : first_eos(tokenizer, adapter.pipeline_text(p)) + 1] for i, p in enumerate(prompts)]
    return covariance_prior(torch.cat(rows), len(prompts), ridge)
