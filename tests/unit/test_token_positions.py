"""Causal tracing corrupts and restores the attribute's tokens as the pipeline itself tokenizes the prompt."""

import torch

from harness.interventions import Corruption, Sample, input_embedding_modules, text_hooks
from tests.conftest import tiny


def test_corruption_noises_the_attribute_tokens_as_the_pipeline_tokenizes_them():
    # IF lower-cases prompts before its cased T5 tokenizer: positions must be found in that text.
    adapter = tiny("if")
    encoder, tokenizer = adapter.text_encoders()["text_encoder"]
    prompt = "The House of Van Gogh"
    rows = [Sample(prompt, 0), Sample(prompt, 0, corruption=Corruption("Van Gogh", 3.0))]
    seen = []
    with torch.no_grad(), text_hooks(adapter, rows):  # records after the noise hook: hooks run in order
        handles = [m.register_forward_hook(lambda _m, args, out: seen.append((args[0], out)))
                   for m in input_embedding_modules(encoder)]  # the one the forward really calls records
        try:
            adapter.encode([r.prompt for r in rows])
        finally:
            for handle in handles:
                handle.remove()
    ids, out = seen[0]
    changed = (out[1] != out[0]).any(-1).nonzero().flatten().tolist()
    assert changed and tokenizer.decode(ids[1, changed]).replace(" ", "") == "vangogh"


def test_p1s_four_positions_include_the_middle_of_the_concept():
    from harness.interventions import token_positions

    tokenizer = tiny("sd15").text_encoders()["text_encoder"][1]
    words = "the statue of liberty at night"
    concept = "statue of liberty"
    pos = token_positions(tokenizer, words, concept, 77)
    span = pos["span"]
    assert tokenizer.decode(tokenizer(words)["input_ids"][span[0]:span[-1] + 1]).replace(" ", "") == "statueofliberty"
    assert len(span) >= 3 and span[0] < pos["middle_subject"] < span[-1]
    assert pos["middle_subject"] == span[(len(span) - 1) // 2]
    assert (pos["first_subject"], pos["last_subject"]) == (span[0], span[-1])
