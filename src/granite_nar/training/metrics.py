"""Word and character error rates: jiwer's edit distance, our tokenisation and a text-normalisation hook.

``WER = (S + D + I) / N`` over words and ``CER`` the same over characters, where ``N`` is the number of
reference units and ``S``, ``D``, ``I`` come from one minimum-cost alignment (all three cost 1), computed
by jiwer (the ``eval`` or ``train`` extra) on sequences this module has already tokenised. Rates over a
corpus add up the errors and reference lengths of all utterances before dividing (as jiwer does), so long
utterances weigh more than short ones.

Normalisation is a plain callable ``str -> str`` applied to references and hypotheses alike. The default,
:func:`basic_normalize`, case-folds, removes punctuation and collapses whitespace;
:mod:`granite_nar.training.normalizers` composes others (Whisper's English normaliser among them). Scripts written without
spaces (Chinese, Japanese) have no words: :func:`split_words` turns every CJK character into its own token,
so "WER" there is a character rate over CJK characters and a word rate over the Latin words mixed in, and
:func:`char_error_rate` can ignore spaces (``ignore_spaces=True``), which is the usual CER for those
languages.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass

__all__ = [
    "EditCounts",
    "ErrorRate",
    "edit_distance",
    "basic_normalize",
    "identity_normalize",
    "remove_punctuation",
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


def edit_distance(reference: Sequence[Hashable], hypothesis: Sequence[Hashable]) -> EditCounts:
    """Levenshtein alignment of two token sequences (unit costs), with its S / D / I breakdown, by jiwer.

    Tokens are any hashable values (words, characters, token ids). The total ``S + D + I`` is the edit
    distance; among the alignments of that cost jiwer (rapidfuzz) picks one by a fixed rule, which decides
    how a tie splits into kinds (``tests/training/test_metrics.py`` spells the rule out in plain Python):
    ``"a b" → "c"`` counts one substitution and one deletion.

    Raises:
        ImportError: jiwer is not installed (it comes with the ``eval`` and ``train`` extras).
    """
    n, m = len(reference), len(hypothesis)
    if n == 0 or m == 0:  # nothing to align
        return EditCounts(0, n, m, n)
    jiwer = _import_jiwer()
    # jiwer aligns lists of strings: give every distinct token a string of its own, so that tokens of any
    # hashable type (ids, characters, words) compare exactly as they are.
    keys: dict[Hashable, str] = {}
    ref = [keys.setdefault(token, str(len(keys))) for token in reference]
    hyp = [keys.setdefault(token, str(len(keys))) for token in hypothesis]
    keep = jiwer.Compose([])  # the sentences are tokenised already: no transform
    out = jiwer.process_words([ref], [hyp], keep, keep)
    return EditCounts(out.substitutions, out.deletions, out.insertions, n)


JIWER_HINT = "pip install jiwer (or, from a clone, the eval extra: pip install -e '.[eval]')"


def _import_jiwer():
    try:
        import jiwer
    except ImportError as err:
        raise ImportError(
            f"word and character error rates need the jiwer package ({err}); {JIWER_HINT}"
        ) from None
    return jiwer


def _is_punctuation(char: str) -> bool:
    return unicodedata.category(char).startswith("P")


def remove_punctuation(text: str) -> str:
    """Replace punctuation (Unicode category ``P*``) by spaces, keeping apostrophes inside words.

    ``"Don't stop, Mr. Smith!"`` → ``"Don't stop  Mr  Smith "`` (whitespace is left for the caller to
    collapse); ``'``, ``’`` count as inside a word when a letter or digit is on both sides.
    """
    chars = []
    for k, char in enumerate(text):
        inner_apostrophe = (
            char in "'’" and 0 < k < len(text) - 1 and text[k - 1].isalnum() and text[k + 1].isalnum()
        )
        chars.append(char if inner_apostrophe or not _is_punctuation(char) else " ")
    return "".join(chars)


def basic_normalize(text: str) -> str:
    """NFKC, case folding (:meth:`str.casefold`), punctuation replaced by spaces (apostrophes inside words
    are kept), whitespace collapsed.

    ``"Don't stop, Mr. Smith!"`` → ``"don't stop mr smith"``; ``"Straße"`` → ``"strasse"``.
    """
    return " ".join(remove_punctuation(unicodedata.normalize("NFKC", text).casefold()).split())


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
    i.e. it counts as one reference unit so that insertions against silence are still visible (jiwer 4 does
    the same).
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
