"""SANA (`harness.models.sana`): the shared architecture specification and the planted known answer through a
sweep on `tiny:sana`; where a word sits in the K/V sequence the pipeline keeps after its instruction."""

import torch

from tests.conftest import tiny
from tests.models.architecture_tester import ArchitectureTester, KVEditTester, PlantedSweepTester


class TestSana(ArchitectureTester, PlantedSweepTester, KVEditTester):
    arch = "sana"
    planted_label = "cross_attn#10"  # Zarei et al. localize per concept and name no fixed layer


def test_a_words_kv_position_is_its_token_in_the_kept_tail_not_in_the_instruction():
    adapter = tiny("sana")
    # "cat" and "street" are words of the instruction too; the positions are the prompt's
    cat, dog = "a cat in a street", "a dog in a street"
    first = adapter.kv_positions(cat, "cat")["first_subject"]
    assert adapter.kv_positions(dog, "dog")["first_subject"] == first
    assert 0 < first < adapter.kv_positions(cat, "street")["first_subject"] < 20
    # Gemma-2 is causal: K/V inputs before the word are the same for both prompts, and differ at the word
    x = adapter.kv_input(adapter.encode([cat, dog]))
    assert torch.equal(x[0, :first], x[1, :first]) and not torch.equal(x[0, first], x[1, first])


def test_attn_contrib_reads_the_words_columns_in_the_kept_tail_not_in_the_instruction():
    adapter = tiny("sana")  # "street" is a word of the instruction too
    assert adapter.concept_columns("a cat in a street", "street") == adapter.kv_positions("a cat in a street",
                                                                                          "street")["span"]
    assert adapter.concept_columns("a cat in a street", "street")[0] < 20
