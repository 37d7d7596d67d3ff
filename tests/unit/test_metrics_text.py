"""OCR string metrics reproduce P3's GlyphControl P/R/Acc, at character level (P3) and word level."""

import pytest

from harness.metrics.text import f1_of_means, levenshtein, match_text, quoted_text


def prf(pred: str, gt: str, level: str) -> tuple[float, float, float, int]:
    m = match_text(pred, gt, level)
    return m.precision, m.recall, m.f1, m.exact


def test_a_perfect_reading_scores_one_at_both_levels():
    assert prf("hello", "hello", "char") == (1.0, 1.0, 1.0, 1)
    assert prf("hello", "hello", "word") == (1.0, 1.0, 1.0, 1)


def test_character_level_counts_characters_as_a_multiset():
    p, r, f1, exact = prf("helo", "hello", "char")  # 4 of 4 read characters match, 4 of 5 expected found
    assert (p, r, exact) == (1.0, 0.8, 0)
    assert f1 == pytest.approx(2 * 0.8 / 1.8)


def test_word_level_needs_whole_words_where_character_level_forgives_swaps():
    assert prf("open 24", "open 42", "word")[:2] == (0.5, 0.5)
    assert prf("open 24", "open 42", "char") == (1.0, 1.0, 1.0, 1)  # P3's quirk: same characters


def test_exact_match_is_p3s_order_blind_accuracy():
    assert prf("olleh", "hello", "char")[3] == 1  # an anagram is "exact" at character level
    assert prf("24 open", "open 24", "word")[3] == 1  # word order is ignored
    assert prf("hello", "hallo", "char")[3] == 0


def test_a_space_is_a_character_that_costs_precision_when_extra():
    p, r, _, exact = prf("a b", "ab", "char")  # items a, "", b against a, b
    assert (p, r) == (pytest.approx(2 / 3), 1.0)
    assert exact == 1  # empty items vanish in the concatenation P3 compares


def test_case_and_surrounding_whitespace_are_ignored():
    assert prf("  HeLLo \n", "hello", "char") == (1.0, 1.0, 1.0, 1)
    assert prf("  STOP  ", "Stop", "word") == (1.0, 1.0, 1.0, 1)


def test_repeated_items_are_matched_at_most_as_often_as_expected():
    p, r, _, _ = prf("lll", "hello", "char")  # "hello" holds two l's
    assert (p, r) == (pytest.approx(2 / 3), pytest.approx(2 / 5))
    p, r, _, _ = prf("stop stop stop", "stop", "word")
    assert (p, r) == (pytest.approx(1 / 3), 1.0)


def test_an_empty_reading_scores_zero_as_in_p3():
    assert prf("", "hello", "char") == (0.0, 0.0, 0.0, 0)
    assert prf("   ", "hello", "word") == (0.0, 0.0, 0.0, 0)


def test_an_empty_expectation_scores_zero_unless_nothing_is_read():
    assert prf("hello", "", "char") == (0.0, 0.0, 0.0, 0)
    assert prf("", "", "char") == (1.0, 1.0, 1.0, 1)
    assert prf(" ", "", "word") == (1.0, 1.0, 1.0, 1)


def test_an_unknown_level_is_rejected():
    with pytest.raises(ValueError, match="level"):
        match_text("a", "a", "line")


def test_levenshtein_compares_lower_cased_strings():
    assert levenshtein("kitten", "sitting") == 3
    assert levenshtein("HELLO", "hallo") == 1
    assert levenshtein("", "stop") == 4
    assert levenshtein("stop sign stop", "stop") == 10  # extra text read inflates the distance


def test_f1_of_means_is_the_harmonic_mean_of_macro_averages_not_the_mean_f1():
    rows = [match_text("ab", "abcd"), match_text("abcd", "ab")]  # P, R = (1, .5) and (.5, 1)
    assert f1_of_means([m.precision for m in rows], [m.recall for m in rows]) == pytest.approx(0.75)
    assert sum(m.f1 for m in rows) / 2 == pytest.approx(2 / 3)


def test_f1_of_means_is_zero_when_nothing_matches():
    assert f1_of_means([0.0, 0.0], [0.0, 0.0]) == 0.0


def test_f1_of_means_wants_paired_values():
    with pytest.raises(ValueError):
        f1_of_means([1.0], [1.0, 0.5])
    with pytest.raises(ValueError):
        f1_of_means([], [])


@pytest.mark.parametrize(("prompt", "text"), [
    ('A sign that says "hello".', "hello"),
    ('A neon sign that says "OPEN 24" above a door', "OPEN 24"),
    ('"first" and "second"', "first"),
    ("A sign with no text", None),
    (None, None),
])
def test_quoted_text_is_the_first_double_quoted_span(prompt, text):
    assert quoted_text(prompt) == text
