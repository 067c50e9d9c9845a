"""Text normalisation for scoring, applied to references and hypotheses alike, and the split of the
normalised text into the words and characters that WER and CER count.

A :class:`TextNormalizer` runs some of these steps, always in this order (whatever order they are named in),
then collapses whitespace:

* ``nfkc``: Unicode NFKC; full-width forms and ligatures become plain letters (``ＡＢＣ１２３`` →
  ``ABC123``, ``ﬁ`` → ``fi``);
* ``english``: Whisper's English normaliser (``EnglishTextNormalizer`` of transformers): lowercase, text
  in brackets and fillers (uh, um, hmm) dropped, contractions and titles spelled out (``don't`` → ``do
  not``, ``Mr`` → ``mister``), numbers as digits (``twenty five dollars`` → ``$25``), punctuation and
  diacritics removed, British spellings made American through a mapping (empty unless given, see below);
* ``case``: case folding (:meth:`str.casefold`: ``Straße`` → ``strasse``);
* ``punctuation``: punctuation (Unicode category ``P*``) replaced by spaces; apostrophes inside words stay.

Two names stand for sets of steps: ``basic`` is ``nfkc`` + ``case`` + ``punctuation`` (the same text as
:func:`~granite_nar.training.metrics.basic_normalize`, the default of the error rates), ``none`` is no
step (whitespace is still collapsed).

Whisper's tokenizer reads its British-to-American spelling mapping from a file of the model repository on
the Hugging Face Hub (``normalizer.json``); here the mapping is empty by default (no download, and results
that do not depend on one), and :func:`load_spelling_mapping` reads such a JSON file (``{"colour":
"color", ...}``) when one is given.

:class:`TranscriptScorer` turns normalised text into words and characters. With ``cjk_chars=True`` every
CJK character (Han, kana, Hangul) is a word of its own and CER ignores spaces, the usual scoring of
Chinese and Japanese, which are written without spaces between words; otherwise words are separated by
whitespace (a run of CJK characters is one word) and spaces count as characters.
"""

from __future__ import annotations

import json
import os
import unicodedata
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .metrics import (
    EditCounts,
    ErrorRate,
    edit_distance,
    remove_punctuation,
    split_chars,
    split_words,
)

__all__ = [
    "NORMALIZER_STEPS",
    "NORMALIZER_NAMES",
    "TextNormalizer",
    "TranscriptScorer",
    "UtteranceErrors",
    "build_normalizer",
    "load_spelling_mapping",
]

# The steps in the order they run.
NORMALIZER_STEPS = ("nfkc", "english", "case", "punctuation")
# Names that stand for several steps (or none).
_ALIASES = {"basic": ("nfkc", "case", "punctuation"), "none": ()}
# Every name a step list may use (the --normalize choices).
NORMALIZER_NAMES = ("english", "basic", "nfkc", "case", "punctuation", "none")


def _parse_steps(steps: str | Iterable[str]) -> tuple[str, ...]:
    """Step names (a sequence, or one string with names separated by commas, ``+`` or spaces) → the steps,
    deduplicated, in running order."""
    names = steps.replace(",", " ").replace("+", " ").split() if isinstance(steps, str) else list(steps)
    unknown = [name for name in names if name not in NORMALIZER_NAMES]
    if unknown:
        raise ValueError(
            f"unknown normalisation step{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))}; "
            f"choose from {', '.join(NORMALIZER_NAMES)}"
        )
    if "none" in names and len(set(names)) > 1:
        raise ValueError(f"normalisation 'none' cannot be combined with other steps, got {', '.join(names)}")
    chosen = {step for name in names for step in _ALIASES.get(name, (name,))}
    return tuple(step for step in NORMALIZER_STEPS if step in chosen)


def load_spelling_mapping(path: str | os.PathLike) -> dict[str, str]:
    """A British → American spelling mapping from a JSON file holding one object of words to words
    (``{"colour": "color", "analyse": "analyze"}``), as Whisper's ``english.json``.

    Raises:
        ValueError: the file cannot be read, is not JSON, or is not such an object; the message names it.
    """
    name = os.fspath(path)
    try:
        with open(name, encoding="utf-8") as handle:
            mapping = json.load(handle)
    except OSError as err:
        raise ValueError(f"spelling mapping {name}: cannot be read ({err.strerror or err})") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"spelling mapping {name}: not a JSON file ({err})") from None
    if not isinstance(mapping, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in mapping.items()
    ):
        raise ValueError(
            f'spelling mapping {name}: expected one JSON object of words to words, like {{"colour": "color"}}'
        )
    return mapping


@dataclass(frozen=True)
class TextNormalizer:
    """Composable text normalisation, a callable ``str -> str``.

    Args:
        steps: step names (see the module docstring): a sequence such as ``("nfkc", "case")``, or one string
            (``"english"``, ``"nfkc,case"``). They run in the fixed order nfkc, english, case, punctuation;
            whitespace is always collapsed. Default: ``basic``.
        spelling_mapping: British → American spellings for the ``english`` step (default: none); only
            allowed with that step.

    Raises:
        ValueError: an unknown step name (the message lists the known ones), ``none`` mixed with other
            steps, or a spelling mapping without the ``english`` step.

    ``TextNormalizer("english")("Mr. Smith's 2 cats, don't they?")`` → ``"mister smith is 2 cats do not they"``.
    """

    steps: tuple[str, ...] | str = ("nfkc", "case", "punctuation")
    spelling_mapping: Mapping[str, str] | None = field(default=None, hash=False)
    _english: Callable[[str], str] | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        steps = _parse_steps(self.steps)
        object.__setattr__(self, "steps", steps)
        if self.spelling_mapping is not None and "english" not in steps:
            raise ValueError("a spelling mapping is used by the 'english' normalisation step only; add it")
        if "english" in steps:
            from transformers.models.whisper.english_normalizer import EnglishTextNormalizer

            english = EnglishTextNormalizer(dict(self.spelling_mapping or {}))
            object.__setattr__(self, "_english", english)

    @property
    def name(self) -> str:
        """The steps joined by ``+`` (``"nfkc+case+punctuation"``), or ``"none"``."""
        return "+".join(self.steps) or "none"

    def __call__(self, text: str) -> str:
        if "nfkc" in self.steps:
            text = unicodedata.normalize("NFKC", text)
        if self._english is not None:
            text = self._english(text)
        if "case" in self.steps:
            text = text.casefold()
        if "punctuation" in self.steps:
            text = remove_punctuation(text)
        return " ".join(text.split())


def build_normalizer(
    steps: str | Iterable[str] = "basic",
    spelling_mapping: Mapping[str, str] | str | os.PathLike | None = None,
) -> TextNormalizer:
    """A :class:`TextNormalizer` from step names, with the spelling mapping given as a dict or a JSON file.

    ``build_normalizer("english")``, ``build_normalizer(["nfkc", "case"])``,
    ``build_normalizer("english", "english.json")``.
    """
    if isinstance(spelling_mapping, (str, os.PathLike)):
        spelling_mapping = load_spelling_mapping(spelling_mapping)
    return TextNormalizer(steps if isinstance(steps, str) else tuple(steps), spelling_mapping)


@dataclass(frozen=True)
class UtteranceErrors:
    """Word and character edit counts of one reference / hypothesis pair."""

    words: EditCounts
    chars: EditCounts

    def __add__(self, other: UtteranceErrors) -> UtteranceErrors:
        return UtteranceErrors(self.words + other.words, self.chars + other.chars)


@dataclass(frozen=True)
class TranscriptScorer:
    """Normalise, split into words and characters, and count errors.

    Args:
        normalizer: any ``str -> str`` (a :class:`TextNormalizer`, ``basic_normalize`` ...); its output's
            whitespace is collapsed. Default: ``TextNormalizer("basic")``.
        cjk_chars: score CJK text per character: every CJK character is a word (``split_words``) and CER
            ignores spaces.
    """

    normalizer: Callable[[str], str] = field(default_factory=TextNormalizer)
    cjk_chars: bool = False

    def normalize(self, text: str) -> str:
        return " ".join(self.normalizer(text).split())

    def words(self, text: str) -> list[str]:
        """The normalised words of ``text`` (CJK characters split off with ``cjk_chars``)."""
        text = self.normalize(text)
        return split_words(text) if self.cjk_chars else text.split()

    def chars(self, text: str) -> list[str]:
        """The normalised characters of ``text`` (without spaces with ``cjk_chars``)."""
        return split_chars(self.normalize(text), ignore_spaces=self.cjk_chars)

    def score(self, reference: str, hypothesis: str) -> UtteranceErrors:
        """Word and character edit counts of one pair."""
        return UtteranceErrors(
            edit_distance(self.words(reference), self.words(hypothesis)),
            edit_distance(self.chars(reference), self.chars(hypothesis)),
        )

    def _total(self, references: Sequence[str] | str, hypotheses: Sequence[str] | str) -> UtteranceErrors:
        if isinstance(references, str):
            references, hypotheses = [references], [hypotheses]
        if len(references) != len(hypotheses):
            raise ValueError(f"got {len(references)} references but {len(hypotheses)} hypotheses.")
        total = UtteranceErrors(EditCounts(0, 0, 0, 0), EditCounts(0, 0, 0, 0))
        for ref, hyp in zip(references, hypotheses, strict=True):
            total = total + self.score(ref, hyp)
        return total

    def word_error_rate(self, references: Sequence[str] | str, hypotheses: Sequence[str] | str) -> ErrorRate:
        """Corpus WER (errors and reference words summed over the pairs)."""
        return ErrorRate(self._total(references, hypotheses).words)

    def char_error_rate(self, references: Sequence[str] | str, hypotheses: Sequence[str] | str) -> ErrorRate:
        """Corpus CER (errors and reference characters summed over the pairs)."""
        return ErrorRate(self._total(references, hypotheses).chars)

    def describe(self) -> dict[str, Any]:
        """What this scorer does, for reports: the normaliser's name and the CJK setting."""
        name = getattr(self.normalizer, "name", None) or getattr(self.normalizer, "__name__", "custom")
        return {"normalizer": name, "cjk_chars": self.cjk_chars}
