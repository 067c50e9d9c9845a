"""Score a model on a manifest: CER / WER of the CTC draft and of every editing step, overall and per slice.

    manifest (JSON lines: audio_path, text, duration_sec, any other fields)
      └─ rows parsed; a bad row is a RowFailure (its line, its file, why), the others go on
           └─ audio headers read; missing, unreadable, empty, too short or too long files are failures
                └─ longest first, per batch: read the audio, features, model.generate(K editing steps)
                     └─ each step's transcript decoded, normalised, split, scored against the reference
                          └─ EvaluationReport: overall and per-slice scores, RTFx, every utterance

Every step is scored from one ``generate`` call: the draft (step 0) and the hypotheses after editing steps
1..K, as :class:`~granite_nar.training.TranscriptionEvaluator` does during training. Corpus rates add the
errors and reference lengths of the utterances before dividing, so a slice's counts add up to the overall
ones when its slices partition the utterances.

Unlike the training reader (:func:`granite_nar.training.read_manifest`), nothing is filtered: an empty
reference is scored (against silence, any word is an error), a transcript longer than its audio can carry
is scored, and every failure names its file. Audio longer than ``max_audio_seconds`` (30 s, the segment
length of the long-form path) is not edited whole: such rows are failures that say so.

``granite-nar evaluate`` (:func:`run_from_args`) is this module's command line; docs/evaluation.md shows both.
"""

from __future__ import annotations

import bisect
import json
import math
import os
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path
from typing import Any

import torch

from ..audio.io import audio_info, load_audio
from ..audio.waveform import InvalidAudioError
from ..lengths import SAMPLES_PER_ENCODER_FRAME, SAMPLING_RATE
from .metrics import EditCounts, ErrorRate
from .normalizers import TranscriptScorer, UtteranceErrors, build_normalizer
from .trainer import step_name

__all__ = [
    "DEFAULT_MAX_AUDIO_SECONDS",
    "EvaluationReport",
    "EvaluationUsageError",
    "RowFailure",
    "SliceScore",
    "SliceSpec",
    "StepScore",
    "UtteranceResult",
    "evaluate_manifest",
    "run_from_args",
]

# The longest audio edited in one piece: the long-form path's segment length (LongFormOptions).
DEFAULT_MAX_AUDIO_SECONDS = 30.0
MISSING = "(missing)"  # the slice of rows that lack the field (or, for bins, a finite number in it)


class EvaluationUsageError(ValueError):
    """Settings that cannot run at all (a bad slice or normalisation, no manifest, a model that does not
    load): one line that names the problem."""


@dataclass(frozen=True)
class SliceSpec:
    """Slice the utterances by a manifest field: one slice per value, or per bin of a numeric field.

    ``SliceSpec.parse("speaker")`` slices by value; ``SliceSpec.parse("duration_sec:5,10,20")`` bins by the
    increasing edges into ``<5``, ``5-10``, ``10-20`` and ``>=20`` (a value equal to an edge goes to the bin
    that starts there). Rows without the field, or with a non-number in a binned field, form the slice
    ``(missing)``.
    """

    field: str
    edges: tuple[float, ...] | None = None

    @classmethod
    def parse(cls, text: str) -> SliceSpec:
        name, colon, edges = text.partition(":")
        name = name.strip()
        if not name:
            raise ValueError(f"slice {text!r}: no field name; use FIELD or FIELD:EDGE,EDGE,...")
        if not colon:
            return cls(name)
        try:
            values = tuple(float(edge) for edge in edges.split(","))
        except ValueError:
            raise ValueError(
                f"slice {text!r}: bin edges are numbers separated by commas, e.g. duration_sec:5,10,20"
            ) from None
        if not all(math.isfinite(v) for v in values) or any(b <= a for a, b in pairwise(values)):
            raise ValueError(f"slice {text!r}: bin edges must be finite and increasing")
        return cls(name, values)

    @property
    def key(self) -> str:
        """``speaker`` or ``duration_sec:5,10,20``: the name of this slicing in reports."""
        if self.edges is None:
            return self.field
        return f"{self.field}:{','.join(f'{edge:g}' for edge in self.edges)}"

    def bin_labels(self) -> list[str]:
        """The bins in order (``<5``, ``5-10``, ``>=10``); empty for a slicing by value."""
        if self.edges is None:
            return []
        edges = [f"{edge:g}" for edge in self.edges]
        middle = [f"{low}-{high}" for low, high in pairwise(edges)]
        return [f"<{edges[0]}", *middle, f">={edges[-1]}"]

    def value_of(self, fields: Mapping[str, Any]) -> str:
        """The slice a row with these manifest fields belongs to."""
        value = fields.get(self.field)
        if self.edges is None:
            if value is None:
                return MISSING
            return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
        if not _is_number(value) or not math.isfinite(value):
            return MISSING
        return self.bin_labels()[bisect.bisect_right(self.edges, value)]

    def order(self, values: set[str]) -> list[str]:
        """The slices present, in reading order: bins by their edges, values sorted, ``(missing)`` last."""
        known = self.bin_labels() if self.edges is not None else sorted(values - {MISSING})
        return [v for v in known if v in values] + ([MISSING] if MISSING in values else [])


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


@dataclass(frozen=True)
class RowFailure:
    """A manifest row that was not scored: its 1-based line, its audio file (when the row names one) and
    why, in one line (an audio error names the file)."""

    line: int
    audio_path: str | None
    reason: str
    manifest: str = ""

    @property
    def message(self) -> str:
        return " ".join(f"{self.manifest} line {self.line}: {self.reason}".split())

    def to_dict(self) -> dict[str, Any]:
        return {"line": self.line, "audio_path": self.audio_path, "error": self.reason}


def _counts_dict(counts: EditCounts) -> dict[str, int]:
    return {
        "substitutions": counts.substitutions,
        "deletions": counts.deletions,
        "insertions": counts.insertions,
        "reference_length": counts.reference_length,
    }


@dataclass(frozen=True)
class StepScore:
    """Word and character error counts of one step (0: the CTC draft, k: after editing step k)."""

    step: int
    words: EditCounts
    chars: EditCounts

    @property
    def name(self) -> str:
        return step_name(self.step)

    @property
    def wer(self) -> float:
        return ErrorRate(self.words).rate

    @property
    def cer(self) -> float:
        return ErrorRate(self.chars).rate

    def to_dict(self) -> dict[str, Any]:
        return {
            "cer": self.cer,
            "wer": self.wer,
            "char_errors": _counts_dict(self.chars),
            "word_errors": _counts_dict(self.words),
        }


@dataclass(frozen=True)
class SliceScore:
    """The scores of a set of utterances: all of them (``field is None``) or one slice of a slicing."""

    field: str | None
    value: str
    utterances: int
    audio_seconds: float
    steps: list[StepScore]

    @property
    def label(self) -> str:
        return "all" if self.field is None else f"{self.field}:{self.value}"

    @property
    def gap_cer(self) -> float:
        """Draft CER minus the last step's CER: what editing gains (negative when it loses)."""
        return self.steps[0].cer - self.steps[-1].cer

    @property
    def gap_wer(self) -> float:
        return self.steps[0].wer - self.steps[-1].wer

    @property
    def best_step(self) -> StepScore:
        """The step with the lowest CER, then the lowest WER, then the earliest."""
        return min(self.steps, key=lambda s: (s.cer, s.wer, s.step))

    def to_dict(self) -> dict[str, Any]:
        return {
            "field": self.field,
            "value": self.value,
            "utterances": self.utterances,
            "audio_seconds": self.audio_seconds,
            "steps": {s.name: s.to_dict() for s in self.steps},
            "gap": {"cer": self.gap_cer, "wer": self.gap_wer},
            "best_step": self.best_step.name,
        }


@dataclass
class UtteranceResult:
    """One scored row: its reference, the hypothesis of every step and that step's error counts."""

    line: int
    audio_path: str
    reference: str
    audio_seconds: float
    fields: dict[str, Any]
    slices: dict[str, str]
    hypotheses: list[str] = field(default_factory=list)
    errors: list[UtteranceErrors] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        steps = {}
        for step, (hyp, err) in enumerate(zip(self.hypotheses, self.errors, strict=True)):
            steps[step_name(step)] = {
                "hypothesis": hyp,
                "cer": ErrorRate(err.chars).rate,
                "wer": ErrorRate(err.words).rate,
                "char_errors": _counts_dict(err.chars),
                "word_errors": _counts_dict(err.words),
            }
        return {
            "line": self.line,
            "audio_path": self.audio_path,
            "audio_seconds": self.audio_seconds,
            "reference": self.reference,
            "steps": steps,
            "slices": self.slices,
            "fields": self.fields,
            "error": None,
        }


@dataclass
class EvaluationReport:
    """What :func:`evaluate_manifest` measured.

    Attributes:
        rows: manifest rows read (non-blank lines, at most ``limit``); ``len(utterances) + len(failures)``.
        utterances: the scored rows, in manifest order; ``failures``: the others, in manifest order.
        overall: the scores of every scored utterance; ``slices``: per slicing (its :attr:`SliceSpec.key`),
            the scores of each slice present.
        audio_seconds: audio of the scored utterances.
        model_seconds: time in ``model.generate`` (encoder, draft and every editing step);
            ``total_seconds``: the whole pass after loading the model (reading headers and audio,
            features, generate, decoding).
    """

    manifest: str
    model: str
    num_editing_steps: int
    normalizer: str
    cjk_chars: bool
    rows: int
    utterances: list[UtteranceResult]
    failures: list[RowFailure]
    overall: SliceScore
    slices: dict[str, list[SliceScore]]
    audio_seconds: float
    model_seconds: float
    total_seconds: float

    @property
    def rtfx(self) -> float:
        """Seconds of audio per second of model compute."""
        return self.audio_seconds / self.model_seconds if self.model_seconds > 0 else 0.0

    @property
    def rtfx_end_to_end(self) -> float:
        """Seconds of audio per second of the whole pass (audio reading and features included)."""
        return self.audio_seconds / self.total_seconds if self.total_seconds > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        """The report as JSON-ready data (the ``--json`` file)."""
        return {
            "manifest": self.manifest,
            "model": self.model,
            "num_editing_steps": self.num_editing_steps,
            "normalizer": self.normalizer,
            "cjk_chars": self.cjk_chars,
            "rows": self.rows,
            "scored": len(self.utterances),
            "failed": len(self.failures),
            "failures": [f.to_dict() for f in self.failures],
            "audio_seconds": self.audio_seconds,
            "timing": {
                "model_seconds": self.model_seconds,
                "total_seconds": self.total_seconds,
                "rtfx": self.rtfx,
                "rtfx_end_to_end": self.rtfx_end_to_end,
            },
            "overall": self.overall.to_dict(),
            "slices": {key: [s.to_dict() for s in scores] for key, scores in self.slices.items()},
        }

    def prediction_records(self) -> list[dict[str, Any]]:
        """One record per manifest row, in manifest order (the ``--predictions`` lines); a failed row has
        its ``error`` and no ``steps``."""
        records = [(u.line, u.to_dict()) for u in self.utterances]
        records += [(f.line, f.to_dict()) for f in self.failures]
        return [record for _, record in sorted(records, key=lambda pair: pair[0])]

    def write_json(self, path: str | os.PathLike) -> None:
        Path(path).write_text(
            json.dumps(self.to_dict(), indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
        )

    def write_predictions(self, path: str | os.PathLike) -> None:
        lines = [json.dumps(record, ensure_ascii=False) for record in self.prediction_records()]
        Path(path).write_text("".join(line + "\n" for line in lines), encoding="utf-8")

    def format_table(self) -> str:
        """The report as readable text: what was scored, the speed, and one line per slice."""
        steps = self.overall.steps
        head = [
            f"{self.manifest}: {len(self.utterances)} of {self.rows} rows scored ({self.audio_seconds:.1f} s of "
            f"audio), {len(self.failures)} failed",
            f"model {self.model}; {self.num_editing_steps} editing step(s); normalisation {self.normalizer}"
            + ("; CJK scored per character" if self.cjk_chars else ""),
            f"RTFx {self.rtfx:.1f} (model {self.model_seconds:.3f} s), {self.rtfx_end_to_end:.1f} end to end "
            f"({self.total_seconds:.3f} s with reading audio, features and decoding)",
            "",
            "CER and WER in %; gap: draft minus the last step; best: the step with the lowest CER",
        ]
        rows = [self.overall] + [s for scores in self.slices.values() for s in scores]
        width = max(len("slice"), *(len(s.label) for s in rows))
        columns = f"{'slice':<{width}} {'utts':>5} {'audio s':>8}"
        for step in steps:
            columns += f" {step.name + ' CER':>10} {'WER':>6}"
        columns += f" {'gap CER':>8} {'WER':>6}  best"
        lines = [*head, columns]
        for score in rows:
            line = f"{score.label:<{width}} {score.utterances:>5} {score.audio_seconds:>8.1f}"
            for step in score.steps:
                line += f" {100 * step.cer:>10.2f} {100 * step.wer:>6.2f}"
            line += f" {100 * score.gap_cer:>8.2f} {100 * score.gap_wer:>6.2f}  {score.best_step.name}"
            lines.append(line)
        return "\n".join(lines)


@dataclass
class _Row:
    line: int
    audio_path: str  # resolved
    manifest_audio_path: str  # as the manifest writes it
    text: str
    fields: dict[str, Any]  # the other fields of the row
    num_samples: int = 0


def read_rows(
    manifest: str | os.PathLike, limit: int | None = None
) -> tuple[list[_Row], list[RowFailure], int]:
    """``(rows, failures, rows read)`` of a JSON-lines manifest; relative audio paths resolved against its
    folder. Raises :class:`EvaluationUsageError` when the manifest itself cannot be read."""
    path = Path(manifest)
    name = os.fspath(manifest)
    rows: list[_Row] = []
    failures: list[RowFailure] = []
    read = 0
    try:
        handle = open(path, encoding="utf-8")
    except FileNotFoundError:
        raise EvaluationUsageError(f"{name}: no such manifest file") from None
    except OSError as err:
        raise EvaluationUsageError(f"{name}: cannot read the manifest ({err.strerror or err})") from None
    with handle:
        try:
            for line_no, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                if limit is not None and read >= limit:
                    break
                read += 1
                row = _parse_row(line, line_no, path.parent)
                if isinstance(row, RowFailure):
                    failures.append(RowFailure(row.line, row.audio_path, row.reason, name))
                else:
                    rows.append(row)
        except UnicodeDecodeError as err:
            raise EvaluationUsageError(f"{name}: not a UTF-8 text file ({err})") from None
    return rows, failures, read


def _parse_row(line: str, line_no: int, root: Path) -> _Row | RowFailure:
    try:
        record = json.loads(line)
    except json.JSONDecodeError:
        return RowFailure(line_no, None, "not a JSON object")
    if not isinstance(record, dict):
        return RowFailure(line_no, None, "not a JSON object")
    audio = record.pop("audio_path", None)
    if not isinstance(audio, str) or not audio:
        return RowFailure(line_no, None, "no audio_path")
    expanded = os.path.expanduser(audio)
    audio_path = expanded if os.path.isabs(expanded) else str(root / expanded)
    text = record.pop("text", None)
    if not isinstance(text, str):
        return RowFailure(line_no, audio_path, f"{audio_path}: no text (the reference transcript, a string)")
    return _Row(line_no, audio_path, audio, text.strip(), record)


def _scorer(
    normalizer: str | Sequence[str] | Callable[[str], str],
    spelling_mapping: Mapping[str, str] | str | os.PathLike | None,
    cjk_chars: bool,
) -> TranscriptScorer:
    if isinstance(normalizer, str) or (isinstance(normalizer, Sequence) and not callable(normalizer)):
        try:
            normalizer = build_normalizer(normalizer, spelling_mapping)
        except ValueError as err:
            raise EvaluationUsageError(str(err)) from None
    elif spelling_mapping is not None:
        raise EvaluationUsageError("spelling_mapping needs a normaliser given by its step names (english)")
    return TranscriptScorer(normalizer, cjk_chars)


def _slice_specs(slice_by: Sequence[str | SliceSpec]) -> list[SliceSpec]:
    specs = []
    for spec in slice_by:
        try:
            specs.append(spec if isinstance(spec, SliceSpec) else SliceSpec.parse(spec))
        except ValueError as err:
            raise EvaluationUsageError(str(err)) from None
    keys = [s.key for s in specs]
    if len(set(keys)) != len(keys):
        raise EvaluationUsageError(f"a slicing is given twice: {', '.join(keys)}")
    return specs


def evaluate_manifest(
    manifest: str | os.PathLike,
    model,
    processor=None,
    *,
    num_editing_steps: int = 2,
    normalizer: str | Sequence[str] | Callable[[str], str] = "basic",
    spelling_mapping: Mapping[str, str] | str | os.PathLike | None = None,
    cjk_chars: bool = False,
    slice_by: Sequence[str | SliceSpec] = (),
    batch_size: int = 8,
    device: str | torch.device | None = None,
    dtype: str | torch.dtype | None = None,
    limit: int | None = None,
    max_audio_seconds: float = DEFAULT_MAX_AUDIO_SECONDS,
    on_failure: Callable[[RowFailure], None] | None = None,
) -> EvaluationReport:
    """Transcribe every row of a JSON-lines manifest and score the draft and each editing step.

    Args:
        manifest: JSON lines ``{"audio_path", "text", "duration_sec", ...any other fields}``; relative audio
            paths are relative to the manifest's folder. ``duration_sec`` is optional (the file says).
        model: a :class:`~granite_nar.GraniteSpeechNarForCTC`, a model folder or a Hub id
            (:func:`granite_nar.load_model`); ``processor``: its processor (default: next to the model).
        num_editing_steps: ``K``; the draft (step 0) and steps 1..K are scored.
        normalizer: step names for :class:`~granite_nar.training.normalizers.TextNormalizer`
            (``"basic"``, ``"english"``, ``["nfkc", "case"]`` ...), or any ``str -> str``.
        spelling_mapping: British → American spellings (a dict or a JSON file) for the ``english`` step.
        cjk_chars: score CJK characters as words, and CER without spaces.
        slice_by: slicings (``"speaker"``, ``"duration_sec:5,10,20"`` or :class:`SliceSpec`).
        batch_size: utterances per ``generate`` call (sorted longest first).
        device, dtype: where and in which precision the model runs (see :func:`granite_nar.load_model`).
        limit: read only the first ``limit`` rows of the manifest.
        max_audio_seconds: longer audio is not scored (a failure that says so).
        on_failure: called with each :class:`RowFailure` as soon as it is found (e.g. to print it).

    Returns an :class:`EvaluationReport`. Bad rows and audio files never stop the run: they are
    :attr:`EvaluationReport.failures`.

    Raises:
        EvaluationUsageError: a bad setting, a manifest that cannot be read, or a model that does not load.
        ImportError: jiwer or soundfile is missing (the ``eval`` extra).
    """
    if num_editing_steps < 0:
        raise EvaluationUsageError(f"num_editing_steps must be >= 0, got {num_editing_steps}")
    if batch_size < 1:
        raise EvaluationUsageError(f"batch_size must be >= 1, got {batch_size}")
    if limit is not None and limit < 1:
        raise EvaluationUsageError(f"limit must be >= 1, got {limit}")
    if not max_audio_seconds > 0:
        raise EvaluationUsageError(f"max_audio_seconds must be > 0, got {max_audio_seconds}")
    specs = _slice_specs(slice_by)
    scorer = _scorer(normalizer, spelling_mapping, cjk_chars)
    scorer.score("a", "b")  # needs jiwer: without it, the ImportError comes now, before the model loads
    rows, failures, read = read_rows(manifest, limit)
    name = os.fspath(manifest)

    from ..transcription.transcribe import load_model

    model_name = (
        os.fspath(model) if isinstance(model, (str, os.PathLike)) else getattr(model, "name_or_path", "")
    )
    try:
        model, processor = load_model(model, processor, device=device, dtype=dtype)
    except Exception as err:  # any loading failure is one line for the user
        raise EvaluationUsageError(f"cannot load the model from {model_name}: {err}") from err

    def fail(row: _Row, reason: str) -> None:
        failure = RowFailure(row.line, row.audio_path, reason, name)
        failures.append(failure)
        if on_failure is not None:
            on_failure(failure)

    if on_failure is not None:
        for failure in failures:
            on_failure(failure)
    start = time.perf_counter()
    longest = int(round(max_audio_seconds * SAMPLING_RATE))
    ready = []
    for row in rows:
        try:
            info = audio_info(row.audio_path)
        except InvalidAudioError as err:
            fail(row, str(err))
            continue
        row.num_samples = info.num_samples(SAMPLING_RATE)
        reason = _length_problem(row.audio_path, row.num_samples, longest, max_audio_seconds)
        if reason is not None:
            fail(row, reason)
        else:
            ready.append(row)
    ready.sort(key=lambda r: -r.num_samples)  # little padding per batch; stable for equal lengths

    results: list[UtteranceResult] = []
    model_seconds = 0.0
    rate = processor.feature_extractor.sampling_rate
    for first in range(0, len(ready), batch_size):
        batch, waves = [], []
        for row in ready[first : first + batch_size]:
            try:
                wave = load_audio(row.audio_path, rate)
            except InvalidAudioError as err:
                fail(row, str(err))
                continue
            reason = _length_problem(row.audio_path, len(wave), longest, max_audio_seconds)
            if reason is not None:  # the header promised another length
                fail(row, reason)
                continue
            batch.append(row)
            waves.append(wave)
        if not batch:
            continue
        inputs = processor(audio=waves, sampling_rate=rate, device=model.device)
        features = inputs["input_features"].to(model.dtype)
        _synchronize(model.device)
        tic = time.perf_counter()
        out = model.generate(
            features,
            inputs["input_features_mask"],
            num_editing_steps=num_editing_steps,
            return_dict_in_generate=True,
        )
        _synchronize(model.device)
        model_seconds += time.perf_counter() - tic
        texts = [processor.batch_decode(ids) for ids in [out.draft_ids, *(out.step_sequences or [])]]
        for b, (row, wave) in enumerate(zip(batch, waves, strict=True)):
            seconds = len(wave) / rate
            # Slices may use any field of the row, audio_path and text included; duration_sec defaults to
            # the audio's length.
            fields = {**row.fields, "audio_path": row.manifest_audio_path, "text": row.text}
            if not _is_number(fields.get("duration_sec")):
                fields["duration_sec"] = seconds
            result = UtteranceResult(
                row.line,
                row.audio_path,
                row.text,
                seconds,
                row.fields,
                {spec.key: spec.value_of(fields) for spec in specs},
            )
            for step_texts in texts:
                result.hypotheses.append(step_texts[b])
                result.errors.append(scorer.score(row.text, step_texts[b]))
            results.append(result)
    total_seconds = time.perf_counter() - start

    results.sort(key=lambda u: u.line)
    failures.sort(key=lambda f: f.line)
    return EvaluationReport(
        manifest=name,
        model=model_name,
        num_editing_steps=num_editing_steps,
        normalizer=scorer.describe()["normalizer"],
        cjk_chars=cjk_chars,
        rows=read,
        utterances=results,
        failures=failures,
        overall=_score(None, "all", results, num_editing_steps),
        slices={spec.key: _slices(spec, results, num_editing_steps) for spec in specs},
        audio_seconds=sum(u.audio_seconds for u in results),
        model_seconds=model_seconds,
        total_seconds=total_seconds,
    )


def _length_problem(path: str, num_samples: int, longest: int, max_seconds: float) -> str | None:
    if num_samples == 0:
        return f"{path}: the file holds no audio samples"
    if num_samples < SAMPLES_PER_ENCODER_FRAME:
        return (
            f"{path}: {1000 * num_samples / SAMPLING_RATE:.1f} ms of audio is shorter than one encoder frame "
            f"({1000 * SAMPLES_PER_ENCODER_FRAME / SAMPLING_RATE:.0f} ms)"
        )
    if num_samples > longest:
        return (
            f"{path}: {num_samples / SAMPLING_RATE:.1f} s of audio is longer than {max_seconds:g} s, the longest "
            "audio edited in one piece; score it in segments or raise max_audio_seconds (--max-audio-seconds)"
        )
    return None


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _score(
    field_name: str | None, value: str, results: Sequence[UtteranceResult], num_steps: int
) -> SliceScore:
    zero = EditCounts(0, 0, 0, 0)
    words, chars = [zero] * (num_steps + 1), [zero] * (num_steps + 1)
    for result in results:
        for step, errors in enumerate(result.errors):
            words[step] = words[step] + errors.words
            chars[step] = chars[step] + errors.chars
    steps = [StepScore(step, words[step], chars[step]) for step in range(num_steps + 1)]
    return SliceScore(field_name, value, len(results), sum(r.audio_seconds for r in results), steps)


def _slices(spec: SliceSpec, results: Sequence[UtteranceResult], num_steps: int) -> list[SliceScore]:
    groups: dict[str, list[UtteranceResult]] = defaultdict(list)
    for result in results:
        groups[result.slices[spec.key]].append(result)
    return [_score(spec.field, value, groups[value], num_steps) for value in spec.order(set(groups))]


def run_from_args(args) -> int:
    """``granite-nar evaluate``: evaluate, print the table, write ``--json`` / ``--predictions``; returns
    the exit status (0: every row scored, 1: some failed, each reported on stderr in one line).

    Raises :class:`EvaluationUsageError` for a problem with the settings, the manifest or the model.
    """
    for option, path in (("--json", args.json), ("--predictions", args.predictions)):
        if path is not None and not os.path.isdir(os.path.dirname(os.path.abspath(path))):
            raise EvaluationUsageError(f"{option} {path}: its folder does not exist")

    def report_failure(failure: RowFailure) -> None:
        print(f"granite-nar: error: {failure.message}", file=sys.stderr, flush=True)

    report = evaluate_manifest(
        args.manifest,
        args.model,
        num_editing_steps=args.editing_steps,
        normalizer=args.normalize,
        spelling_mapping=args.spelling_mapping,
        cjk_chars=args.cjk,
        slice_by=args.slice_by,
        batch_size=args.batch_size,
        device=args.device,
        dtype=args.dtype,
        limit=args.limit,
        max_audio_seconds=args.max_audio_seconds,
        on_failure=report_failure,
    )
    print(report.format_table(), flush=True)
    if args.json is not None:
        report.write_json(args.json)
    if args.predictions is not None:
        report.write_predictions(args.predictions)
    if report.failures:
        print(f"granite-nar: {len(report.failures)} of {report.rows} row(s) failed", file=sys.stderr)
        return 1
    return 0
