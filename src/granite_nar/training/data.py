"""Training data: a JSONL manifest reader with filters, a lazy audio dataset and the batch collator.

Manifest format, one JSON object per line::

    {"audio_path": "wavs/train/000.wav", "text": "the red cat", "duration_sec": 1.94, "cer": 0.02}

``audio_path`` is absolute, or relative to ``audio_root`` (default: the manifest's folder). ``duration_sec``
is optional (read from the file header when missing). Any other field is kept in :attr:`ManifestRow.extra`
and can drive a score filter, e.g. drop rows whose previous-model ``cer`` is above 0.3.

Bad rows never stop a run: they are skipped, counted per reason in a :class:`ManifestReport`, and the first
few line numbers of each reason are kept so they can be found. A row is bad when its line is not a JSON
object, its audio file is missing or unreadable, its text is empty, or its audio is too short for its
transcript: the encoder's BPE CTC emits one symbol per 80 ms window (``ceil(T / 4)`` windows for ``T``
encoder frames, docs/reference_behaviour.md §2.3), and a transcript of ``n`` tokens with ``r`` adjacent repeats needs ``n + r``
windows (a blank must separate repeats). Such rows would only ever contribute a zero (infeasible) loss.

Rows whose text has characters the tokenizer cannot represent are kept (they are trained on with the
tokenizer's ``<unk>`` in place of those characters, which no word decodes to), but counted in the report
with the characters; when more than ``max_unknown_fraction`` of the kept rows have them,
:func:`read_manifest` refuses the manifest with a :class:`ManifestError`: the text most likely needs
normalising (case, digits, punctuation) to the tokenizer's alphabet first.
"""

from __future__ import annotations

import json
import math
import os
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..audio.processing_granite_speech_nar import encode_labels, pad_label_ids
from ..lengths import SAMPLING_RATE, lengths_to_mask, num_bpe_windows, num_encoder_frames
from ..model.ctc import ctc_symbols_needed

__all__ = [
    "ManifestRow",
    "ManifestFilter",
    "ManifestReport",
    "ManifestError",
    "read_manifest",
    "unknown_characters",
    "ctc_symbols_needed",
    "load_waveform",
    "SpeechDataset",
    "DataCollatorForGraniteSpeechNar",
]

MAX_EXAMPLES_PER_REASON = 5
# Most characters listed by ManifestReport.unknown_summary() and ManifestError.
MAX_CHARACTERS_SHOWN = 20
# Default of read_manifest(max_unknown_fraction=): the fraction of kept rows whose text may have characters
# the tokenizer cannot represent before the manifest is refused.
DEFAULT_MAX_UNKNOWN_FRACTION = 0.01


@dataclass
class ManifestRow:
    """One usable utterance of a manifest.

    Args:
        audio_path: resolved path of the audio file.
        text: the transcript, stripped.
        duration_sec: duration in seconds (from the manifest, or the file header).
        line: 1-based line number in the manifest.
        extra: the other fields of the line (scores, speaker ids …).
    """

    audio_path: Path
    text: str
    duration_sec: float
    line: int
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class ManifestFilter:
    """Which rows to keep. ``None`` disables a bound.

    Args:
        min_duration_sec, max_duration_sec: duration bounds.
        min_text_chars, max_text_chars: bounds on the stripped transcript length in characters.
        max_label_tokens: bound on the transcript length in tokens (needs a tokenizer).
        score_field: name of a per-row numeric field (e.g. ``"cer"`` of a previous model); rows without it
            are skipped when a score bound is set.
        min_score, max_score: bounds on ``score_field``.
        check_ctc_fit: skip rows whose audio is too short for their transcript (needs a tokenizer): the
            encoder's BPE CTC cannot emit more symbols than it has pooled windows.
        pooling_window: encoder frames per BPE window for that check; the model's
            ``encoder_config.pooling_window`` (4 in the released model).
    """

    min_duration_sec: float | None = None
    max_duration_sec: float | None = None
    min_text_chars: int | None = 1
    max_text_chars: int | None = None
    max_label_tokens: int | None = None
    score_field: str | None = None
    min_score: float | None = None
    max_score: float | None = None
    check_ctc_fit: bool = True
    pooling_window: int = 4


class ManifestError(ValueError):
    """A manifest that cannot be trained on as a whole; :attr:`report` says what was read."""

    def __init__(self, message: str, report: ManifestReport):
        super().__init__(message)
        self.report = report


@dataclass
class ManifestReport:
    """What :func:`read_manifest` kept and skipped, with reasons and example line numbers.

    ``unknown_rows`` counts the kept rows whose text has characters the tokenizer cannot represent
    (they become ``<unk>``), ``unknown_characters`` how many of those rows each such character is in, and
    ``unknown_examples`` the first line numbers.
    """

    path: str
    total: int = 0
    kept: int = 0
    kept_seconds: float = 0.0
    skipped: Counter = field(default_factory=Counter)
    examples: dict[str, list[int]] = field(default_factory=dict)
    unknown_rows: int = 0
    unknown_characters: Counter = field(default_factory=Counter)
    unknown_examples: list[int] = field(default_factory=list)

    def skip(self, reason: str, line: int) -> None:
        self.skipped[reason] += 1
        lines = self.examples.setdefault(reason, [])
        if len(lines) < MAX_EXAMPLES_PER_REASON:
            lines.append(line)

    def add_unknown(self, characters: str, line: int) -> None:
        """Count a kept row whose text has ``characters`` that the tokenizer cannot represent."""
        self.unknown_rows += 1
        self.unknown_characters.update(dict.fromkeys(characters).keys())  # once per row, in order
        if len(self.unknown_examples) < MAX_EXAMPLES_PER_REASON:
            self.unknown_examples.append(line)

    @property
    def num_skipped(self) -> int:
        return sum(self.skipped.values())

    @property
    def unknown_fraction(self) -> float:
        """Fraction of the kept rows whose text has characters the tokenizer cannot represent."""
        return self.unknown_rows / self.kept if self.kept else 0.0

    def unknown_summary(self) -> str:
        """``'A' (3 rows), '!' (1 row)``: the unrepresentable characters, most frequent first."""
        shown = [
            f"{char!r} ({count} row{'s' if count != 1 else ''})"
            for char, count in self.unknown_characters.most_common(MAX_CHARACTERS_SHOWN)
        ]
        more = len(self.unknown_characters) - len(shown)
        return ", ".join(shown) + (f" and {more} more" if more > 0 else "")

    def limit(self, rows: list[ManifestRow], max_rows: int | None, reason: str) -> list[ManifestRow]:
        """Keep the first ``max_rows`` of ``rows`` (the kept rows of this report); the others are counted
        as skipped for ``reason``, so that the report's counts describe the rows actually used."""
        if max_rows is None or len(rows) <= max_rows:
            return rows
        for row in rows[max_rows:]:
            self.skip(reason, row.line)
            self.kept -= 1
            self.kept_seconds -= row.duration_sec
        return rows[:max_rows]

    def __str__(self) -> str:
        head = (
            f"{self.path}: kept {self.kept} of {self.total} rows ({self.kept_seconds / 3600:.2f} h), "
            f"skipped {self.num_skipped}"
        )
        reasons = [
            f"  {count:6d}  {reason} (lines {', '.join(map(str, self.examples[reason]))}"
            f"{', …' if count > len(self.examples[reason]) else ''})"
            for reason, count in self.skipped.most_common()
        ]
        if self.unknown_rows:
            lines = ", ".join(map(str, self.unknown_examples))
            more = ", …" if self.unknown_rows > len(self.unknown_examples) else ""
            reasons.append(
                f"  {self.unknown_rows:6d}  kept rows with characters the tokenizer cannot represent, trained "
                f"on as <unk> (lines {lines}{more}): {self.unknown_summary()}"
            )
        return "\n".join([head, *reasons])


def _audio_seconds(path: Path) -> float:
    from ..audio.io import audio_info

    return audio_info(path).duration_sec


def read_manifest(
    path: str | os.PathLike,
    *,
    audio_root: str | os.PathLike | None = None,
    tokenizer=None,
    filters: ManifestFilter | None = None,
    check_files: bool = True,
    max_unknown_fraction: float | None = DEFAULT_MAX_UNKNOWN_FRACTION,
) -> tuple[list[ManifestRow], ManifestReport]:
    """Read a JSONL manifest, resolve the audio paths and apply ``filters``.

    Args:
        path: the manifest.
        audio_root: folder that relative ``audio_path`` values are relative to (default: the manifest's).
        tokenizer: used for ``max_label_tokens``, the CTC-fit check and the unknown-character count; without
            one they are skipped.
        filters: a :class:`ManifestFilter` (default: non-empty text, CTC fit).
        check_files: check that each audio file exists (and read its header when ``duration_sec`` is missing).
        max_unknown_fraction: refuse the manifest when more than this fraction of the kept rows have
            characters the tokenizer cannot represent (they would be trained on as ``<unk>``); ``None``
            only counts them.

    Returns the kept rows and a :class:`ManifestReport`. Never raises for a bad row; raises
    :class:`ManifestError` (a ``ValueError``) when too many kept rows have unrepresentable characters.
    """
    if max_unknown_fraction is not None and not 0.0 <= max_unknown_fraction <= 1.0:
        raise ValueError(f"max_unknown_fraction must be in [0, 1] or None, got {max_unknown_fraction}.")
    path = Path(path)
    root = Path(audio_root) if audio_root is not None else path.parent
    filters = filters or ManifestFilter()
    report = ManifestReport(path=str(path))
    rows: list[ManifestRow] = []
    with open(path, encoding="utf-8") as handle:
        for line_no, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            report.total += 1
            reason, row, unknown = _parse_row(line, line_no, root, tokenizer, filters, check_files)
            if reason is not None:
                report.skip(reason, line_no)
                continue
            rows.append(row)
            report.kept += 1
            report.kept_seconds += row.duration_sec
            if unknown:
                report.add_unknown(unknown, line_no)
    if max_unknown_fraction is not None and report.unknown_fraction > max_unknown_fraction:
        raise ManifestError(
            f"{path}: {report.unknown_rows} of {report.kept} kept rows ({100 * report.unknown_fraction:.1f} %) have "
            f"characters the tokenizer cannot represent, which would be trained on as <unk>: "
            f"{report.unknown_summary()} (first lines {', '.join(map(str, report.unknown_examples))}); the "
            f"limit is max_unknown_fraction={max_unknown_fraction:g}. Normalise the text to the tokenizer's "
            "alphabet (e.g. lowercase it, spell out digits) or raise the limit.",
            report,
        )
    return rows, report


def unknown_characters(tokenizer, text: str) -> str:
    """The characters of ``text`` that ``tokenizer`` maps to its unknown token, in order of appearance.

    Empty when the tokenizer has no unknown token (byte-level tokenizers represent every character).
    """
    return _unknown_characters(tokenizer, text, None)


def _unknown_characters(tokenizer, text: str, encoding) -> str:
    unk = getattr(tokenizer, "unk_token_id", None)
    if unk is None:
        return ""
    if encoding is None:
        encoding = _encode(tokenizer, text)
    ids = encoding["input_ids"]
    if unk not in ids:
        return ""
    found: dict[str, None] = {}
    offsets = encoding.get("offset_mapping")
    if offsets is not None:
        for token, (start, end) in zip(ids, offsets, strict=True):
            if token == unk:
                found.update(dict.fromkeys(c for c in text[start:end] if not c.isspace()))
    if not found:  # no offsets (slow tokenizer): try each character alone
        for char in dict.fromkeys(text):
            if not char.isspace() and unk in tokenizer(char, add_special_tokens=False)["input_ids"]:
                found[char] = None
    return "".join(found)


def _encode(tokenizer, text: str):
    """The tokenizer's ids of ``text`` without special tokens, with character offsets when it has them."""
    try:
        return tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    except (NotImplementedError, ValueError, TypeError):  # slow tokenizers have no offsets
        return tokenizer(text, add_special_tokens=False)


def _parse_row(
    line: str, line_no: int, root: Path, tokenizer, filters: ManifestFilter, check_files: bool
) -> tuple[str | None, ManifestRow | None, str]:
    """``(reason, None, "")`` for a bad or filtered row, ``(None, row, unknown characters)`` otherwise."""
    reason, row, encoding = _check_row(line, line_no, root, tokenizer, filters, check_files)
    if row is None or tokenizer is None:
        return reason, row, ""
    return None, row, _unknown_characters(tokenizer, row.text, encoding)


def _check_row(
    line: str, line_no: int, root: Path, tokenizer, filters: ManifestFilter, check_files: bool
) -> tuple[str | None, ManifestRow | None, Any]:
    """``(reason, None, None)`` for a bad or filtered row, ``(None, row, encoding or None)`` otherwise."""
    try:
        record = json.loads(line)
    except json.JSONDecodeError:
        return "invalid JSON", None, None
    if not isinstance(record, dict):
        return "invalid JSON", None, None
    audio = record.pop("audio_path", None)
    if not isinstance(audio, str) or not audio:
        return "no audio_path", None, None
    text = record.pop("text", None)
    if not isinstance(text, str) or not text.strip():
        return "empty text", None, None
    text = text.strip()
    audio_path = Path(audio) if os.path.isabs(audio) else root / audio
    if check_files and not audio_path.is_file():
        return "missing audio file", None, None

    duration = record.pop("duration_sec", None)
    if not isinstance(duration, (int, float)) or isinstance(duration, bool) or not math.isfinite(duration):
        if not check_files:
            return "no duration_sec", None, None
        try:
            duration = _audio_seconds(audio_path)
        except ImportError:  # no soundfile: not the row's fault, and every row would be skipped
            raise
        except Exception:  # any decoder error means the file cannot be trained on
            return "unreadable audio", None, None
    duration = float(duration)

    f = filters
    if f.min_duration_sec is not None and duration < f.min_duration_sec:
        return "shorter than min_duration_sec", None, None
    if f.max_duration_sec is not None and duration > f.max_duration_sec:
        return "longer than max_duration_sec", None, None
    if f.min_text_chars is not None and len(text) < f.min_text_chars:
        return "text shorter than min_text_chars", None, None
    if f.max_text_chars is not None and len(text) > f.max_text_chars:
        return "text longer than max_text_chars", None, None
    if f.score_field is not None and (f.min_score is not None or f.max_score is not None):
        score = record.get(f.score_field)
        if not isinstance(score, (int, float)) or isinstance(score, bool):
            return f"no numeric {f.score_field}", None, None
        if f.min_score is not None and score < f.min_score:
            return f"{f.score_field} below min_score", None, None
        if f.max_score is not None and score > f.max_score:
            return f"{f.score_field} above max_score", None, None
    encoding = None
    if tokenizer is not None:
        encoding = _encode(tokenizer, text)
    if tokenizer is not None and (f.check_ctc_fit or f.max_label_tokens is not None):
        ids = encoding["input_ids"]
        if not ids:
            return "text has no tokens", None, None
        if f.max_label_tokens is not None and len(ids) > f.max_label_tokens:
            return "more tokens than max_label_tokens", None, None
        if f.check_ctc_fit:
            windows = num_bpe_windows(
                num_encoder_frames(int(round(duration * SAMPLING_RATE))), f.pooling_window
            )
            if ctc_symbols_needed(ids) > windows:
                return "audio too short for its transcript", None, None
    return None, ManifestRow(audio_path, text, duration, line_no, record), encoding


def load_waveform(path: str | os.PathLike, sampling_rate: int = SAMPLING_RATE) -> np.ndarray:
    """Mono float32 waveform at ``sampling_rate`` (:func:`granite_nar.audio.load_audio`: channels averaged,
    resampled with soxr when needed)."""
    from ..audio.io import load_audio

    return load_audio(path, sampling_rate)


class SpeechDataset(torch.utils.data.Dataset):
    """Utterances of a manifest, audio loaded lazily.

    Items are ``{"audio": float32 array, "text": str}``; with a ``feature_extractor`` they are
    ``{"input_features": (T, 160) tensor, "text": str}`` instead, and ``cache_features=True`` keeps them in
    memory after the first epoch (about 13 kB per second of audio), which saves the file read and the STFT
    on small corpora.

    Args:
        rows: the :class:`ManifestRow` list of :func:`read_manifest`.
        feature_extractor: compute features in ``__getitem__`` (i.e. in the data-loader workers).
        cache_features: memoise the features (only with a feature extractor).
        sampling_rate: target rate of the waveforms.
    """

    def __init__(
        self,
        rows: Sequence[ManifestRow],
        feature_extractor=None,
        cache_features: bool = False,
        sampling_rate: int = SAMPLING_RATE,
    ):
        self.rows = list(rows)
        self.feature_extractor = feature_extractor
        self.cache_features = cache_features and feature_extractor is not None
        self.sampling_rate = sampling_rate
        self._cache: dict[int, torch.Tensor] = {}

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def lengths(self) -> list[int]:
        """Encoder frames per utterance (from the durations), for length-grouped sampling."""
        return [num_encoder_frames(int(round(r.duration_sec * self.sampling_rate))) for r in self.rows]

    def __getitem__(self, index: int) -> dict[str, Any]:
        row = self.rows[index]
        if self.feature_extractor is None:
            return {"audio": load_waveform(row.audio_path, self.sampling_rate), "text": row.text}
        features = self._cache.get(index)
        if features is None:
            wave = load_waveform(row.audio_path, self.sampling_rate)
            features = self.feature_extractor(wave, sampling_rate=self.sampling_rate)["input_features"][0]
            if self.cache_features:
                self._cache[index] = features
        return {"input_features": features, "text": row.text}


class DataCollatorForGraniteSpeechNar:
    """Batch of ``{"audio" | "input_features", "text"}`` items → model inputs.

    Returns ``input_features`` ``(B, T_max, 160)``, ``input_features_mask`` ``(B, T_max)`` bool,
    ``labels`` ``(B, S_max)`` token ids right-padded with ``label_pad_id`` and ``label_lengths`` ``(B,)``.
    Transcripts are tokenized without special tokens; a transcript that tokenizes to the CTC blank id
    is refused, since CTC cannot emit its blank as a label.

    Args:
        feature_extractor: a :class:`~granite_nar.GraniteSpeechNarFeatureExtractor` (for ``"audio"`` items).
        tokenizer: the model's tokenizer.
        blank_token_id: the CTC blank (default: the tokenizer's eos id, as in the released model).
        label_pad_id: padding of ``labels`` (never read: ``label_lengths`` is authoritative).
        text_transform: optional ``str -> str`` applied to transcripts before tokenizing.
        char_vocabulary: characters of the encoder's character CTC head, in id order from 1 (0 is its
            blank); when given, batches also carry ``char_labels`` / ``char_label_lengths`` (characters
            outside the vocabulary are dropped).
    """

    def __init__(
        self,
        feature_extractor,
        tokenizer,
        blank_token_id: int | None = None,
        label_pad_id: int = -100,
        text_transform: Callable[[str], str] | None = None,
        char_vocabulary: str | Sequence[str] | None = None,
    ):
        self.feature_extractor = feature_extractor
        self.tokenizer = tokenizer
        self.blank_token_id = tokenizer.eos_token_id if blank_token_id is None else blank_token_id
        self.label_pad_id = label_pad_id
        self.text_transform = text_transform
        self.char_to_id = {c: i for i, c in enumerate(char_vocabulary, start=1)} if char_vocabulary else None

    @classmethod
    def from_processor(cls, processor, **kwargs) -> DataCollatorForGraniteSpeechNar:
        """Build from a processor holding ``feature_extractor`` and ``tokenizer``."""
        return cls(processor.feature_extractor, processor.tokenizer, **kwargs)

    def encode_text(self, texts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """``(labels (B, S_max), label_lengths (B,))`` for a list of transcripts."""
        if self.text_transform is not None:
            texts = [self.text_transform(t) for t in texts]
        return encode_labels(self.tokenizer, list(texts), self.blank_token_id, self.label_pad_id)

    def __call__(self, items: Sequence[dict[str, Any]]) -> dict[str, torch.Tensor]:
        if all("input_features" in item for item in items):
            feats = [torch.as_tensor(item["input_features"]) for item in items]
            lengths = torch.tensor([f.shape[0] for f in feats])
            batch = torch.nn.utils.rnn.pad_sequence(
                feats, batch_first=True, padding_value=float(self.feature_extractor.padding_value)
            )  # (B, T_max, 160)
            mask = lengths_to_mask(lengths, batch.shape[1])  # (B, T_max)
        else:
            out = self.feature_extractor(
                [item["audio"] for item in items], sampling_rate=self.feature_extractor.sampling_rate
            )
            batch, mask = out["input_features"], out["input_features_mask"]
        texts = [item["text"] for item in items]
        labels, label_lengths = self.encode_text(texts)
        out = {
            "input_features": batch,
            "input_features_mask": mask,
            "labels": labels,
            "label_lengths": label_lengths,
        }
        if self.char_to_id is not None:
            out["char_labels"], out["char_label_lengths"] = self.encode_chars(texts)
        return out

    def encode_chars(self, texts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """``(char_labels (B, C_max), char_label_lengths (B,))`` over ``char_vocabulary`` (ids from 1)."""
        if self.text_transform is not None:
            texts = [self.text_transform(t) for t in texts]
        ids = [[self.char_to_id[c] for c in t if c in self.char_to_id] for t in texts]
        return pad_label_ids(ids, self.label_pad_id)
