"""``granite_nar.training.metrics``: edit distance, word and character error rates, normalisation, CJK text.

The edit distance is jiwer's; :func:`reference_edit_distance` below is a slow, readable Levenshtein in plain
Python that spells out which of several minimum-cost alignments jiwer (rapidfuzz) reports, and the jiwer
path is checked against it, kind by kind, on many random sequences.
"""

from __future__ import annotations

import random
import sys

import pytest

from granite_nar.training import EditCounts, char_error_rate, edit_distance, split_words, word_error_rate
from granite_nar.training.metrics import basic_normalize


def reference_edit_distance(reference, hypothesis) -> EditCounts:
    """Levenshtein distance (unit costs) by dynamic programming, split into S / D / I along one alignment.

    The alignment is the one rapidfuzz (and so jiwer) reports: a common prefix and suffix are matched first;
    then, walking back from the end of the table, a deletion is taken whenever it is optimal, else an
    insertion when it is at least as good as a match, else the diagonal (a match or a substitution).
    """
    n, m = len(reference), len(hypothesis)
    start = 0
    while start < min(n, m) and reference[start] == hypothesis[start]:
        start += 1
    end = 0
    while end < min(n, m) - start and reference[n - 1 - end] == hypothesis[m - 1 - end]:
        end += 1
    ref, hyp = reference[start : n - end], hypothesis[start : m - end]
    # cost[i][j]: distance between ref[:i] and hyp[:j].
    cost = [[i + j if i == 0 or j == 0 else 0 for j in range(len(hyp) + 1)] for i in range(len(ref) + 1)]
    for i in range(1, len(ref) + 1):
        for j in range(1, len(hyp) + 1):
            diagonal = cost[i - 1][j - 1] + (ref[i - 1] != hyp[j - 1])
            cost[i][j] = min(diagonal, cost[i - 1][j] + 1, cost[i][j - 1] + 1)
    i, j, subs, dels, ins = len(ref), len(hyp), 0, 0, 0
    while i > 0 or j > 0:
        if j == 0 or (i > 0 and cost[i][j] == cost[i - 1][j] + 1):
            dels, i = dels + 1, i - 1
        elif i == 0 or cost[i - 1][j - 1] == cost[i][j - 1] + 1:
            ins, j = ins + 1, j - 1
        else:
            subs += ref[i - 1] != hyp[j - 1]
            i, j = i - 1, j - 1
    return EditCounts(subs, dels, ins, n)


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
    return EditCounts(s, d, i, n)


def test_jiwer_edit_distance_equals_the_reference_kind_by_kind():
    rng = random.Random(0)
    for trial in range(2000):
        alphabet = rng.choice(["ab", "abc", "abcdefgh", "abcdefghijklmnopqrstuvwxyz"])
        size = rng.choice([3, 8, 20, 60, 150])
        ref = rng.choices(alphabet, k=rng.randint(0, size))
        if trial % 2:  # a noisy copy, like a transcript of the reference
            hyp = [rng.choice(alphabet) if rng.random() < 0.2 else t for t in ref if rng.random() > 0.1]
            hyp[rng.randint(0, len(hyp)) : 0] = rng.choices(alphabet, k=rng.randint(0, 2))
        else:
            hyp = rng.choices(alphabet, k=rng.randint(0, size))
        assert edit_distance(ref, hyp) == reference_edit_distance(ref, hyp), (ref, hyp)


def test_tokens_of_any_hashable_type_compare_as_they_are():
    # Token ids, and tokens whose strings would collide: 1 and "1" are different tokens.
    assert edit_distance([5, 7, 9], [5, 8, 9]) == _counts(1, 0, 0, 3)
    assert edit_distance([1, 2], ["1", "2"]) == _counts(2, 0, 0, 2)
    assert edit_distance(("the", "cat"), ["the", "cat"]) == _counts(0, 0, 0, 2)


def test_without_jiwer_the_error_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "jiwer", None)  # import jiwer raises ImportError
    with pytest.raises(ImportError, match=r"pip install -e '\.\[eval\]'"):
        word_error_rate("a b", "a c")
    assert word_error_rate("", "").rate == 0.0  # nothing to align needs no jiwer


def test_basic_normalize_by_hand():
    assert basic_normalize("Don't stop, Mr. Smith!") == "don't stop mr smith"
    assert basic_normalize("  STRASSE  Straße ") == "strasse strasse"  # case folding, not just lower()
    assert basic_normalize("ＡＢＣ，ﬁne") == "abc fine"  # NFKC: full-width letters and comma, ligature
    assert basic_normalize("'quoted' rock'n'roll") == "quoted rock'n'roll"


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
