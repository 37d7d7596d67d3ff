"""Prompts against the text encoders' token limits, checked when the job is validated.

CLIP encoders read 77 tokens (BOS, 75 words' worth, EOS), T5 in SD3 256: the pipeline cuts the rest.
Two consequences, checked once per job against every tokenizer the model has:

* a causal-tracing **concept past the limit** cannot be corrupted — the encoder never sees it — so the
  job is refused, naming the prompt row, instead of failing every unit at run time;
* a **prompt or target longer than the limit** is cut as the pipeline cuts it (LocoGen's and P3's targets
  too): allowed, and said once, so the user knows which words took no part.
"""

from __future__ import annotations

from harness.errors import JobError


def check_token_limits(job, tokenizers: dict[str, tuple[object, int]], text=lambda prompt: prompt) -> list[str]:
    """Raise `JobError` for a concept past the limit; return one warning per prompt or target that is cut.
    `tokenizers`: {encoder name: (tokenizer, max length)}; `text`: the string the pipeline tokenizes."""
    from harness.interventions import token_positions

    warnings = []
    for i, row in enumerate(job.prompts):
        for name, (tokenizer, length) in tokenizers.items():
            if job.method == "causal_trace" and row.concept:
                try:
                    token_positions(tokenizer, text(row.prompt), row.concept, length)
                except ValueError:
                    raise JobError(f"prompts[{i}].concept: '{row.concept}' falls past token {length} of the prompt, "
                                   f"which {name} never reads (it encodes {length} tokens); shorten the prompt or "
                                   "move the concept forward") from None
            for field in ("prompt", "target"):
                value = getattr(row, field)
                if value:
                    count = len(tokenizer(text(value), truncation=False)["input_ids"])
                    if count > length:
                        warnings.append(f"prompts[{i}].{field}: {count} tokens; {name} reads the first {length} "
                                        "(the pipeline cuts the rest)")
    return list(dict.fromkeys(warnings))
