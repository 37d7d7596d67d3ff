"""Causal tracing corrupts and restores the attribute's tokens as the pipeline itself tokenizes the prompt."""

import pytest
import torch

from harness.interventions import Corruption, Restore, Sample, input_embedding_modules, text_hooks
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


# ---- whole words: every place that finds a concept's tokens ------------------------------------------
CHECKERED = "a checkered background with a red circle"  # CLIP: a · chec · kered · background · ... · red · circle


def decoded(tokenizer, text: str, positions) -> list[str]:
    ids = tokenizer(text)["input_ids"]
    return [tokenizer.decode([ids[i]]) for i in positions]


def test_a_concept_is_found_as_whole_words_red_is_not_the_kered_of_checkered():
    from harness.interventions import token_positions

    tokenizer = tiny("sd15").text_encoders()["text_encoder"][1]
    assert "kered" in decoded(tokenizer, CHECKERED, range(len(tokenizer(CHECKERED)["input_ids"])))
    assert decoded(tokenizer, CHECKERED, token_positions(tokenizer, CHECKERED, "red", 77)["span"]) == ["red"]
    assert decoded(tokenizer, "A RED circle", token_positions(tokenizer, "A RED circle", "red", 77)["span"]) == ["red"]


def test_a_concept_that_is_not_a_whole_word_span_is_one_line_with_the_closest_words():
    from harness.interventions import token_positions

    tokenizer = tiny("sd15").text_encoders()["text_encoder"][1]
    with pytest.raises(ValueError, match=r"^'dog' is not a whole word or phrase of 'two dogs on a sofa' "
                                         r"\(did you mean 'dogs'\?\)$"):
        token_positions(tokenizer, "two dogs on a sofa", "dog", 77)
    with pytest.raises(ValueError, match=r"^'red' is not a whole word or phrase of 'a checkered background'$"):
        token_positions(tokenizer, "a checkered background", "red", 77)


def test_a_start_finds_the_words_after_a_prefix_as_whole_words_and_names_only_the_prompt():
    # SANA's prompt follows an instruction that may hold the same words: the search starts after it
    from harness.interventions import token_positions

    tokenizer = tiny("sd15").text_encoders()["text_encoder"][1]
    prefix = "describe the red car. "
    found = token_positions(tokenizer, prefix + CHECKERED, "red", 77, start=len(prefix))["span"]
    assert found != token_positions(tokenizer, prefix + CHECKERED, "red", 77)["span"]
    assert decoded(tokenizer, prefix + CHECKERED, found) == ["red"] and found[0] > 5
    with pytest.raises(ValueError, match=r"^'car' is not a whole word or phrase of 'a checkered background"):
        token_positions(tokenizer, prefix + CHECKERED, "car", 77, start=len(prefix))


def test_corruption_and_text_restores_act_on_the_word():
    adapter = tiny("sd15")
    encoder, tokenizer = adapter.text_encoders()["text_encoder"]
    corrupt = Corruption("red", 3.0)
    restore = Restore("text_encoder.encoder.layers.0.self_attn", "last_subject")
    rows = [Sample(CHECKERED, 0), Sample(CHECKERED, 0, corruption=corrupt),
            Sample(CHECKERED, 0, corruption=corrupt, restores=(restore,))]
    seen, restored = [], []
    with torch.no_grad(), text_hooks(adapter, rows):
        handles = [m.register_forward_hook(lambda _m, _a, out: seen.append(out.clone()))
                   for m in input_embedding_modules(encoder)]
        handles.append(adapter.module(restore.site).register_forward_hook(
            lambda _m, _a, out: restored.append(out[0].clone())))  # hooks run in order: after the restore
        try:
            adapter.encode([r.prompt for r in rows])
        finally:
            for handle in handles:
                handle.remove()
    noised = (seen[0][1] != seen[0][0]).any(-1).nonzero().flatten().tolist()
    assert decoded(tokenizer, CHECKERED, noised) == ["red"]
    copied = ((restored[0][2] == restored[0][0]).all(-1) & (restored[0][1] != restored[0][0]).any(-1))
    assert decoded(tokenizer, CHECKERED, copied.nonzero().flatten().tolist()) == ["red"]


@pytest.mark.parametrize("method", ["locoedit", "time", "neurons"])
def test_edit_keys_sit_on_the_word(method):
    # the same prompt as an augmentation template: the keys (LocoEdit, DiffQuickFix, UCE share
    # `keys.build_pairs`; TIME its spans; neuron edits their detection positions) must be at "red"
    from harness.edit import keys, neurons, time_edit

    adapter = tiny("sd15")
    tokenizer = adapter.text_encoders()["text_encoder"][1]
    template = "a checkered background with a {} circle"
    if method == "locoedit":
        pair = keys.build_pairs(tokenizer, adapter.pipeline_text, "red", "blue", [template], False, "edits[0]")[0]
        positions = pair.key_positions
    elif method == "time":
        positions = time_edit._span(adapter, CHECKERED, "red")
    else:
        prompts, positions = neurons._group(adapter, [template], ["red"])
        assert prompts == [CHECKERED]
    assert decoded(tokenizer, CHECKERED, positions) == ["red"]
