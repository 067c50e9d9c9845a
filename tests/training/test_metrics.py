"""``granite_nar.training.metrics``: edit distance, word and character error rates, normalisation, CJK text."""

from __future__ import annotations

import random

import pytest

from granite_nar.training import char_error_rate, edit_distance, split_words, word_error_rate


def test_edit_distance_counts_each_error_kind():
    assert edit_distance("a b c".split(), "a x c".split()) == _counts(1, 0, 0, 3)
    assert edit_distance("a b c".split(), "a c".split()) == _counts(0, 1, 0, 3)
    assert edit_distance("a b c".split(), "a b c d".split()) == _counts(0, 0, 1, 3)
    # x+, a, b, c→d, d→e: 3 edits (deleting c and inserting x and e would be 4).
    assert edit_distance("a b c d".split(), "x a b d e".split()) == _counts(2, 0, 1, 4)
    assert edit_distance("a b c d e".split(), "b c e".split()) == _counts(0, 2, 0, 5)
    assert edit_distance([], "a b".split()) == _counts(0, 0, 2, 0)
    assert edit_distance("a b".split(), []) == _counts(0, 2, 0, 2)


def _counts(s, d, i, n):
    from granite_nar.training import EditCounts

    return EditCounts(s, d, i, n)


def test_wer_and_cer_by_hand():
    # Corpus rates add errors and reference lengths before dividing: (1 ins + 1 del) / (3 + 1) words.
    wer = word_error_rate(["the cat sat", "hello"], ["the cat sat on", ""])
    assert (wer.counts.insertions, wer.counts.deletions, wer.rate) == (1, 1, 0.5)
    assert char_error_rate("abc", "abd").rate == pytest.approx(1 / 3)
    assert char_error_rate("a b", "ab").rate == pytest.approx(1 / 3)  # the space is a character
    assert char_error_rate("a b", "ab", ignore_spaces=True).rate == 0.0
    # Normalisation: case and punctuation do not count; apostrophes inside words do.
    assert word_error_rate("Hello, World!", "hello world").rate == 0.0
    assert word_error_rate("don't", "dont").rate == 1.0
    assert word_error_rate("Hello", "hello", normalize=None).rate == 1.0


def test_empty_reference():
    assert word_error_rate("", "").rate == 0.0
    assert word_error_rate("", "a b").rate == 2.0  # an empty reference counts as one unit
    assert word_error_rate(["", "a"], ["x", "a"]).rate == 1.0


def test_cjk_text_is_scored_per_character():
    assert split_words("我爱 NLP 模型") == ["我", "爱", "NLP", "模", "型"]
    assert word_error_rate("我爱北京", "我爱南京").rate == pytest.approx(1 / 4)
    assert char_error_rate("我爱 北京", "我爱北京", ignore_spaces=True).rate == 0.0


def test_wer_matches_jiwer_on_random_sentences():
    jiwer = pytest.importorskip("jiwer")
    rng = random.Random(0)
    words = "a b c d e f".split()
    refs = [" ".join(rng.choices(words, k=rng.randint(1, 8))) for _ in range(50)]
    hyps = [" ".join(rng.choices(words, k=rng.randint(0, 8))) for _ in range(50)]
    assert word_error_rate(refs, hyps).rate == pytest.approx(jiwer.wer(refs, hyps))
    assert char_error_rate(refs, hyps).rate == pytest.approx(jiwer.cer(refs, hyps))
