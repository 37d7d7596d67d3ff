"""Where the text sits, for every architecture: the positions of a prompt's words in each encoder's tokens and
in the sequence the text sites' K/V read, the tensor those K/V read, its padding mask, and the attention
reader the attention contribution uses per site kind.

Interventions at a token (P1's last subject token), every closed-form editor's keys, a K/V swap's mask and
`attn_contrib`'s concept columns all ask these methods, so an architecture whose text is laid out differently
(SANA's instruction before the prompt, SD3's CLIP ⊕ T5 sequence, FLUX's T5-only stream) overrides them in its
own module and everything else follows. `harness.models.adapters.ModelAdapter` inherits them.
"""

from __future__ import annotations

import torch

from harness.errors import JobError


class TextLayout:
    """The text side of a `ModelAdapter` (which supplies `pipe`, `arch`, `sites`, `text_encoder_names`,
    `tokenizer_names`)."""

    # Site kind -> the reader of its attention (`harness.contribution.layouts`: where the image queries and the
    # text keys sit, which projection is W_o), for the attention contribution (`attn_contrib`).
    text_attention: dict = {"cross_attn": "cross"}
    # The text encoders whose tokens make up, in this order, the text sequence the text attention reads (its
    # key columns): SD3 reads CLIP's 77 tokens, then T5's 256.
    text_sequence: tuple[str, ...] = ("text_encoder",)
    # True when the text sites mask the prompt's padding (`text_mask`): a K/V swap then moves the mask too.
    masks_text: bool = False

    def text_encoders(self) -> dict[str, tuple[torch.nn.Module, object]]:
        """Text encoder and its tokenizer, by component name."""
        out = {}
        for enc, tok in zip(self.text_encoder_names, self.tokenizer_names):
            if getattr(self.pipe, enc, None) is not None:
                out[enc] = (getattr(self.pipe, enc), getattr(self.pipe, tok))
        return out

    def pipeline_text(self, prompt: str) -> str:
        """The prompt as the pipeline hands it to its tokenizers (token positions are found in this)."""
        return prompt

    def token_positions(self, encoder_name: str, prompt: str, words: str) -> dict:
        """P1's positions of `words` in `prompt` (`harness.interventions.token_positions`: span, first/middle/
        last subject, last) in text encoder `encoder_name`'s token sequence; ValueError when absent or cut off.
        An architecture whose pipeline puts text before the prompt (SANA's instruction) overrides this."""
        from harness.interventions.text import token_positions

        tokenizer = self.text_encoders()[encoder_name][1]
        return token_positions(tokenizer, self.pipeline_text(prompt), words, self.max_text_length(encoder_name))

    def kv_positions(self, prompt: str, words: str) -> dict:
        """The same positions counted in the sequence the text sites' K/V read (`kv_input`): the first text
        encoder's tokens here; SANA's pipeline keeps only the tail of its encoder's sequence, and maps them."""
        return self.token_positions(next(iter(self.text_encoders())), prompt, words)

    def max_text_length(self, encoder_name: str) -> int:
        """The sequence length the pipeline encodes `encoder_name`'s text with."""
        return 77

    def text_reader(self, site_name: str):
        """The attention reader of a text-reading site (`text_attention` by the site's kind)."""
        kind = self.sites[site_name].kind
        if kind not in self.text_attention:
            raise JobError(f"sites: '{site_name}' is a {kind} site; the attention contribution reads "
                           f"{', '.join(self.text_attention)} sites on {self.arch}")
        return self.text_attention[kind]

    def text_length(self) -> int:
        """The length of the text sequence the text attention reads (`text_sequence`)."""
        return sum(self.max_text_length(name) for name in self.text_sequence)

    def concept_columns(self, prompt: str, concept: str) -> list[int]:
        """The positions of `concept`'s tokens in the text sequence (`text_sequence`): every encoder's span in the
        prompt as the pipeline tokenizes it, offset by the lengths of the encoders before it (an encoder the
        pipeline lacks still takes its place). SANA's kept tail is [BOS, prompt tokens], so the prompt's own
        positions are its columns there too."""
        from harness.interventions.text import token_positions

        encoders = self.text_encoders()
        columns, offset = [], 0
        for name in self.text_sequence:
            length = self.max_text_length(name)
            if name in encoders:
                span = token_positions(encoders[name][1], self.pipeline_text(prompt), concept, length)["span"]
                columns += [offset + i for i in span]
            offset += length
        return columns

    def kv_input(self, cond: dict[str, torch.Tensor]) -> torch.Tensor:
        """What the text sites' K/V projections read, from a prompt's conditioning (`encode`): its prompt
        embeddings here; an architecture that projects them first (PixArt's caption projection) overrides this."""
        return cond["prompt_embeds"]

    def text_mask(self, cond: dict[str, torch.Tensor]) -> torch.Tensor | None:
        """The additive attention bias (rows × 1 × tokens) with which the text sites mask the prompt's padding,
        from a prompt's conditioning (`masks_text`), or None when they attend to every text token (SD, SDXL, IF,
        SD3). A K/V swap moves it with the K/V (`harness.interventions.hooks`)."""
        return None
