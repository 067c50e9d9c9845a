"""Word and character error rates with our own edit distance and a text-normalisation hook.

``WER = (S + D + I) / N`` over words and ``CER`` the same over characters, where ``N`` is the number of
reference units and ``S``, ``D``, ``I`` come from one minimum-cost alignment (all three cost 1). Rates over a
corpus add up the errors and reference lengths of all utterances before dividing (as jiwer does), so long
utterances weigh more than short ones.

Normalisation is a plain callable ``str -> str`` applied to references and hypotheses alike. The default,
:func:`basic_normalize`, lowercases, removes punctuation and collapses whitespace. Scripts written without
spaces (Chinese, Japanese) have no words: :func:`split_words` turns every CJK character into its own token,
so "WER" there is a character rate over CJK characters and a word rate over the Latin words mixed in, and
:func:`char_error_rate` can ignore spaces (``ignore_spaces=True``), which is the usual CER for those
languages.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

__all__ = [
    "EditCounts",
    "ErrorRate",
    "edit_distance",
    "basic_normalize",
    "identity_normalize",
    "is_cjk_char",
    "split_words",
    "split_chars",
    "error_rate",
    "word_error_rate",
    "char_error_rate",
]

Normalizer = Callable[[str], str]


@dataclass(frozen=True)
class EditCounts:
    """Substitutions, deletions and insertions of one minimum-cost alignment, and the reference length."""

    substitutions: int
    deletions: int
    insertions: int
    reference_length: int

    @property
    def errors(self) -> int:
        return self.substitutions + self.deletions + self.insertions

    def __add__(self, other: EditCounts) -> EditCounts:
        return EditCounts(
            self.substitutions + other.substitutions,
            self.deletions + other.deletions,
            self.insertions + other.insertions,
            self.reference_length + other.reference_length,
        )


def edit_distance(reference: Sequence, hypothesis: Sequence) -> EditCounts:
    """Levenshtein alignment of two token sequences (unit costs), with its S / D / I breakdown.

    Among alignments of minimum total cost, ties are broken towards substitutions, then deletions, then
    insertions, so e.g. ``"a b" → "c"`` counts one substitution and one deletion (jiwer does the same).
    """
    n, m = len(reference), len(hypothesis)
    # cost[i][j]: distance between reference[:i] and hypothesis[:j]; O(n·m) is fine for transcripts.
    cost = [[0] * (m + 1) for _ in range(n + 1)]
    for i in range(n + 1):
        cost[i][0] = i
    for j in range(m + 1):
        cost[0][j] = j
    for i in range(1, n + 1):
        for j in range(1, m + 1):
            diagonal = cost[i - 1][j - 1] + (reference[i - 1] != hypothesis[j - 1])
            cost[i][j] = min(diagonal, cost[i - 1][j] + 1, cost[i][j - 1] + 1)
    # Walk back along one optimal path to split the distance into S, D and I.
    i, j, subs, dels, ins = n, m, 0, 0, 0
    while i > 0 or j > 0:
        if i > 0 and j > 0 and cost[i][j] == cost[i - 1][j - 1] + (reference[i - 1] != hypothesis[j - 1]):
            subs += reference[i - 1] != hypothesis[j - 1]
            i, j = i - 1, j - 1
        elif i > 0 and cost[i][j] == cost[i - 1][j] + 1:
            dels += 1
            i -= 1
        else:
            ins += 1
            j -= 1
    return EditCounts(subs, dels, ins, n)


def _is_punctuation(char: str) -> bool:
    return unicodedata.category(char).startswith("P")


def basic_normalize(text: str) -> str:
    """Lowercase, replace punctuation by spaces (apostrophes inside words are kept), collapse whitespace.

    ``"Don't stop, Mr. Smith!"`` → ``"don't stop mr smith"``.
    """
    text = unicodedata.normalize("NFKC", text).lower()
    chars = []
    for k, char in enumerate(text):
        inner_apostrophe = (
            char in "'’" and 0 < k < len(text) - 1 and text[k - 1].isalnum() and text[k + 1].isalnum()
        )
        chars.append(char if inner_apostrophe or not _is_punctuation(char) else " ")
    return " ".join("".join(chars).split())


def identity_normalize(text: str) -> str:
    """No normalisation beyond collapsing whitespace."""
    return " ".join(text.split())


def is_cjk_char(char: str) -> bool:
    """Han ideographs, kana, Hangul syllables and CJK symbols: characters of scripts written without spaces."""
    code = ord(char)
    return (
        0x3040 <= code <= 0x30FF  # hiragana, katakana
        or 0x3400 <= code <= 0x4DBF  # CJK extension A
        or 0x4E00 <= code <= 0x9FFF  # CJK unified ideographs
        or 0xAC00 <= code <= 0xD7AF  # Hangul syllables
        or 0xF900 <= code <= 0xFAFF  # CJK compatibility ideographs
        or 0xFF66 <= code <= 0xFF9F  # half-width katakana
        or 0x20000 <= code <= 0x2FA1F  # CJK extensions B-F, compatibility supplement
    )


def split_words(text: str) -> list[str]:
    """Whitespace words, with every CJK character split off as its own word (``"我爱 NLP"`` → 我, 爱, NLP)."""
    words: list[str] = []
    for chunk in text.split():
        current = ""
        for char in chunk:
            if is_cjk_char(char):
                if current:
                    words.append(current)
                    current = ""
                words.append(char)
            else:
                current += char
        if current:
            words.append(current)
    return words


def split_chars(text: str, ignore_spaces: bool = False) -> list[str]:
    """Characters of ``text`` (whitespace runs count as one space unless ``ignore_spaces``)."""
    text = " ".join(text.split())
    return [c for c in text if c != " "] if ignore_spaces else list(text)


@dataclass(frozen=True)
class ErrorRate:
    """A corpus error rate with its counts. ``rate`` is ``errors / reference_length``.

    An empty reference (``reference_length == 0``) gives 0.0 without errors and ``float(errors)`` otherwise,
    i.e. it counts as one reference unit so that insertions against silence are still visible (jiwer raises
    instead).
    """

    counts: EditCounts

    @property
    def rate(self) -> float:
        return self.counts.errors / max(self.counts.reference_length, 1)

    def __float__(self) -> float:
        return self.rate


def error_rate(
    references: Iterable[str],
    hypotheses: Iterable[str],
    tokenize: Callable[[str], Sequence],
    normalize: Normalizer | None = basic_normalize,
) -> ErrorRate:
    """Corpus error rate: sum of the per-utterance edit counts of ``tokenize(normalize(text))``."""
    references, hypotheses = list(references), list(hypotheses)
    if len(references) != len(hypotheses):
        raise ValueError(f"got {len(references)} references but {len(hypotheses)} hypotheses.")
    normalize = normalize or identity_normalize
    total = EditCounts(0, 0, 0, 0)
    for ref, hyp in zip(references, hypotheses, strict=True):
        total = total + edit_distance(tokenize(normalize(ref)), tokenize(normalize(hyp)))
    return ErrorRate(total)


def word_error_rate(
    references: Iterable[str] | str,
    hypotheses: Iterable[str] | str,
    normalize: Normalizer | None = basic_normalize,
    tokenize: Callable[[str], Sequence] = split_words,
) -> ErrorRate:
    """WER over a corpus (or one pair of strings). ``float(result)`` is the rate."""
    if isinstance(references, str):
        references, hypotheses = [references], [hypotheses]
    return error_rate(references, hypotheses, tokenize, normalize)


def char_error_rate(
    references: Iterable[str] | str,
    hypotheses: Iterable[str] | str,
    normalize: Normalizer | None = basic_normalize,
    ignore_spaces: bool = False,
) -> ErrorRate:
    """CER over a corpus (or one pair of strings); spaces are characters unless ``ignore_spaces``."""
    if isinstance(references, str):
        references, hypotheses = [references], [hypotheses]
    return error_rate(references, hypotheses, lambda t: split_chars(t, ignore_spaces), normalize)
