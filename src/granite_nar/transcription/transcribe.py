"""Audio files or waveforms in, text out: the high-level transcription API.

    inputs (paths, arrays, tensors, {"array", "sampling_rate"} dicts, mixed)
      └─ check each one; read file headers for their lengths ─► per-input errors
           └─ sort by length, longest first (little padding per batch; memory trouble shows up at once)
                └─ per batch of ``batch_size``: read and resample files, features, ``model.generate``, decode
                     └─ results back in input order

Files are read batch by batch, so a long list of files never sits in memory as waveforms at once.
Utterances do not influence each other inside a batch (docs/reference_behaviour.md §11.3), so sorting changes nothing but speed.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import partial
from numbers import Number
from typing import Any, Literal

import numpy as np
import torch

from ..audio.inputs import is_file_input, prepare_waveform
from ..audio.io import AudioLoadError, TruncatedAudioWarning, audio_info
from ..audio.processing_granite_speech_nar import GraniteSpeechNarProcessor
from ..audio.waveform import InvalidAudioError
from ..lengths import (
    ENCODER_FRAME_SECONDS,
    SAMPLES_PER_ENCODER_FRAME,
    SAMPLING_RATE,
    min_samples_for_audio_token,
    num_encoder_frames,
)
from ..model.compilation import compile_blocks
from ..model.ctc import ctc_collapse, ctc_collapse_with_scores, vocabulary_argmax
from ..model.modeling_granite_speech_nar import GraniteSpeechNarForCTC
from ..model.quantization import linear_parameters, quantize_int8
from .alignment import (
    forced_align,
    group_words,
    refine_word_times,
    speech_activity,
    token_spans,
    word_start_table,
)
from .long_form import LongFormOptions, SegmentPlan, encode_long
from .results import Segment, TranscriptionResult, Word

__all__ = [
    "Segment",
    "ShortAudioWarning",
    "TranscriptionResult",
    "Word",
    "load_model",
    "resolve_dtype",
    "transcribe",
    "transcribe_iter",
]

DTYPES = {
    "float32": torch.float32,
    "float16": torch.float16,
    "bfloat16": torch.bfloat16,
    "float64": torch.float64,
}


class ShortAudioWarning(UserWarning):
    """Audio shorter than one audio token (1600 samples, 100 ms): the editor gets no audio to attend to."""


@dataclass
class _Item:
    result: TranscriptionResult
    num_samples: int  # at 16 kHz; from the header for files
    path: str | None = None  # read when its batch comes up
    wave: torch.Tensor | None = None  # (N,) float32, validated
    word_timestamps: bool | None = None  # None: the editor's setting
    token_scores: bool | None = None  # None: the editor's setting


def resolve_dtype(dtype: str | torch.dtype | None) -> torch.dtype | None:
    """``"bfloat16"`` / ``torch.bfloat16`` / ``None`` → a torch dtype (or ``None``); anything else is refused."""
    if dtype is None or isinstance(dtype, torch.dtype):
        return dtype
    name = str(dtype).removeprefix("torch.")
    if name not in DTYPES:
        raise ValueError(f"unsupported dtype {dtype!r}; choose one of {', '.join(DTYPES)}")
    return DTYPES[name]


def load_model(
    model: str | os.PathLike | GraniteSpeechNarForCTC,
    processor: str | os.PathLike | GraniteSpeechNarProcessor | None = None,
    device: str | torch.device | None = None,
    dtype: str | torch.dtype | None = None,
    quantize: str | None = None,
    compile: bool = False,
) -> tuple[GraniteSpeechNarForCTC, GraniteSpeechNarProcessor]:
    """The model (in eval mode, on ``device``, in ``dtype``) and its processor.

    ``model`` is a model object, a local folder (native or original remote-code layout) or a Hub id (read
    from the local cache when ``HF_HUB_OFFLINE=1``). Nothing from the checkpoint is executed. Without
    ``processor`` it is loaded from the same place as the model. ``device=None`` keeps a model object where
    it is and puts a loaded one on CUDA when available, else on the CPU. A model object is moved in place.
    ``quantize="int8"`` runs the linear layers in dynamic int8 on the CPU (opt-in, float32 model; see
    :func:`granite_nar.quantize_int8` and docs/performance.md); a model object is quantized in place.
    ``compile=True`` compiles the conformer blocks and editor layers with ``torch.compile`` (opt-in; the
    first calls pay the compile time; :func:`granite_nar.model.compilation.compile_blocks`).
    """
    dtype = resolve_dtype(dtype)
    if quantize not in (None, "int8"):
        raise ValueError(f"quantize must be None or 'int8', got {quantize!r}")
    if quantize is not None:
        if dtype not in (None, torch.float32):
            raise ValueError(f"quantize='int8' runs a float32 model; drop dtype={dtype} or pass float32.")
        if device is not None and torch.device(device).type != "cpu":
            raise ValueError(f"quantize='int8' runs on the CPU only, not on device {device!s}.")
        device = device or "cpu"
    if isinstance(model, (str, os.PathLike)):
        source = os.fspath(model)
        model = GraniteSpeechNarForCTC.from_pretrained(source, dtype=dtype)
        if device is None:
            device = "cuda" if torch.cuda.is_available() else "cpu"
    elif not isinstance(model, GraniteSpeechNarForCTC):
        raise TypeError(
            f"model must be a GraniteSpeechNarForCTC, a folder or a Hub id, got {type(model).__name__}"
        )
    else:
        source = getattr(model, "name_or_path", "") or ""
    if processor is None:
        if not source:
            raise ValueError("the model object does not say where it was loaded from; pass processor=")
        processor = GraniteSpeechNarProcessor.from_pretrained(source)
    elif isinstance(processor, (str, os.PathLike)):
        processor = GraniteSpeechNarProcessor.from_pretrained(os.fspath(processor))
    if device is not None:
        model = model.to(torch.device(device))
    if dtype is not None:
        model = model.to(dtype)
    if quantize is not None:
        model = quantize_int8(model)
    if compile:
        model = compile_blocks(model)
    return model.eval(), processor


def transcribe(
    audio_or_paths: Any,
    model: str | os.PathLike | GraniteSpeechNarForCTC,
    processor: str | os.PathLike | GraniteSpeechNarProcessor | None = None,
    batch_size: int = 8,
    num_editing_steps: int = 1,
    device: str | torch.device | None = None,
    dtype: str | torch.dtype | None = None,
    quantize: str | None = None,
    compile: bool = False,
    return_drafts: bool = False,
    progress: bool | None = None,
    on_error: Literal["raise", "skip"] = "raise",
    sampling_rate: int | None = None,
    resample: bool = True,
    allow_truncated: bool = False,
    word_timestamps: bool | Literal["ctc"] = False,
    long_form: bool | None = None,
    max_segment_seconds: float | None = None,
    long_form_options: LongFormOptions | None = None,
    return_token_scores: bool = False,
) -> list[str] | list[TranscriptionResult]:
    """Transcribe audio files and/or waveforms of any length.

    Args:
        audio_or_paths: one input or a list of them. An input is a path to an audio file (wav, flac, ogg;
            resampled to 16 kHz and downmixed to mono, see :mod:`granite_nar.audio`; m4a / mp4 / aac need
            ffmpeg), the bytes of such a file, a ``{"array": ..., "sampling_rate": ...}`` dict as the
            ``datasets`` library yields, or a bare waveform together with ``sampling_rate=``: a 1-D array
            (numpy array, torch tensor or list of floats; float in [-1, 1] or int16 PCM) or a 2-D
            ``(channels, samples)`` one (averaged to mono).
        model: a :class:`GraniteSpeechNarForCTC`, a local folder or a Hub id (see :func:`load_model`).
            Load it once with :func:`load_model` when calling this repeatedly.
        processor: the :class:`GraniteSpeechNarProcessor` (or its folder); default: next to the model.
        batch_size: utterances per encoder batch, and segments per packed editor pass.
        num_editing_steps: editing passes over the CTC draft (0 returns the draft itself).
        device, dtype: where and in which precision to run (``"cuda"``, ``"bfloat16"`` …); see
            :func:`load_model` for the defaults. Features are computed on the same device.
        quantize: ``"int8"`` for dynamic int8 linear layers on the CPU (opt-in; :func:`load_model`).
        compile: compile the repeated blocks with ``torch.compile`` (opt-in; :func:`load_model`).
        return_drafts: also decode the encoder's CTC draft of each input (and of each segment).
        progress: show a tqdm bar on stderr; default: when there is more than one batch and stderr is a
            terminal.
        on_error: ``"raise"`` stops at the first bad input with its error; ``"skip"`` transcribes the others
            and reports the bad ones in :attr:`TranscriptionResult.error`.
        sampling_rate: rate of the bare in-memory waveforms. Required when there are any: a bare array
            without it is refused (``audio[index]: an array does not say its sampling rate ...``), since a
            wrong guess gives a wrong transcript silently. Dict inputs carry their own rate.
        resample: resample audio at another rate with soxr; with ``False`` such audio is an error.
        allow_truncated: transcribe the audio that is present in a truncated file (its data ends before
            its header says), with a :class:`~granite_nar.audio.TruncatedAudioWarning` and a note in
            :attr:`TranscriptionResult.warning`. By default such a file is an error that says how much is
            missing (with ``on_error="skip"``, an error record).
        word_timestamps: add every word's start, end and confidence to the segments
            (:attr:`Segment.words`): the final tokens are force-aligned to the encoder's BPE posteriors,
            then each word's boundaries are moved onto the stretch of sound it belongs to;
            ``"ctc"`` keeps the aligned times as they are (docs/long_form.md).
        long_form: ``None`` (default) cuts inputs longer than ``max_segment_seconds`` into segments at
            pauses (docs/long_form.md); ``True`` sends every input through that path (an input shorter
            than one segment gives the same tokens either way); ``False`` edits every input whole, as one
            utterance, however long (the editor degrades past a few minutes).
        max_segment_seconds: the longest segment; shorthand for ``long_form_options.max_segment_seconds``.
        long_form_options: every setting of the long-form path (:class:`LongFormOptions`).
        return_token_scores: fill each segment's :attr:`Segment.tokens` (the final token ids) and
            :attr:`Segment.token_confidences`.

    Returns:
        One entry per input, in input order (a list even for a single input): the transcripts as strings,
        or :class:`TranscriptionResult` objects (with segments, times and words) when
        ``return_drafts=True``, ``word_timestamps=True``, ``return_token_scores=True`` or
        ``on_error="skip"``.

    Raises:
        InvalidAudioError: (with ``on_error="raise"``) a bad input; :class:`~granite_nar.audio.AudioLoadError`,
            a subclass, for files (missing, unreadable, truncated …). The message names the file or
            ``audio[index]`` and says what to do.

    Audio of 320 to 1599 samples (20-100 ms) is transcribed with a :class:`ShortAudioWarning` (the
    result's ``warning``): it has encoder frames but no audio token for the editor. Under 320 samples
    (one encoder frame) is an error. :func:`transcribe_iter` yields each result as soon as it is done.
    """
    want_results = return_drafts or word_timestamps or return_token_scores or on_error == "skip"
    results = sorted(
        transcribe_iter(
            audio_or_paths,
            model,
            processor,
            batch_size=batch_size,
            num_editing_steps=num_editing_steps,
            device=device,
            dtype=dtype,
            quantize=quantize,
            compile=compile,
            return_drafts=return_drafts,
            progress=progress,
            on_error=on_error,
            sampling_rate=sampling_rate,
            resample=resample,
            allow_truncated=allow_truncated,
            word_timestamps=word_timestamps,
            long_form=long_form,
            max_segment_seconds=max_segment_seconds,
            long_form_options=long_form_options,
            return_token_scores=return_token_scores,
        ),
        key=lambda r: r.index,
    )
    return results if want_results else [r.text for r in results]


def transcribe_iter(
    audio_or_paths: Any,
    model: str | os.PathLike | GraniteSpeechNarForCTC,
    processor: str | os.PathLike | GraniteSpeechNarProcessor | None = None,
    batch_size: int = 8,
    num_editing_steps: int = 1,
    device: str | torch.device | None = None,
    dtype: str | torch.dtype | None = None,
    quantize: str | None = None,
    compile: bool = False,
    return_drafts: bool = False,
    progress: bool | None = None,
    on_error: Literal["raise", "skip"] = "raise",
    sampling_rate: int | None = None,
    resample: bool = True,
    allow_truncated: bool = False,
    word_timestamps: bool | Literal["ctc"] = False,
    long_form: bool | None = None,
    max_segment_seconds: float | None = None,
    long_form_options: LongFormOptions | None = None,
    return_token_scores: bool = False,
) -> Iterator[TranscriptionResult]:
    """:func:`transcribe`, yielding each input's :class:`TranscriptionResult` as soon as it is finished.

    Results come in the order they finish, not in input order (each carries its ``index``): inputs that
    fail to load come first, then the longest recordings (they are processed first), then the rest.
    A caller that writes each result as it arrives loses nothing finished when it is interrupted.
    """
    if on_error not in ("raise", "skip"):
        raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if num_editing_steps < 0:
        raise ValueError(f"num_editing_steps must be >= 0, got {num_editing_steps}")
    if word_timestamps not in (True, False, "ctc"):
        raise ValueError(f"word_timestamps must be True, False or 'ctc', got {word_timestamps!r}")
    if long_form not in (None, True, False):
        raise ValueError(f"long_form must be None, True or False, got {long_form!r}")
    options = long_form_options if long_form_options is not None else LongFormOptions()
    if max_segment_seconds is not None:  # a third of it is the shortest segment, unless options say otherwise
        minimum = None if long_form_options is None else options.min_segment_seconds
        options = dataclasses.replace(
            options, max_segment_seconds=max_segment_seconds, min_segment_seconds=minimum
        )
    inputs = _as_input_list(audio_or_paths)
    if not inputs:
        return
    model, processor = load_model(
        model, processor, device=device, dtype=dtype, quantize=quantize, compile=compile
    )
    target_rate = processor.feature_extractor.sampling_rate
    shortest = min_samples_for_audio_token(model.config.projector_config.downsample_rate)

    def fail(item: _Item, err: InvalidAudioError) -> None:
        if on_error == "raise":
            raise err
        item.result.error = str(err)

    items = [
        _prepare(value, index, target_rate, sampling_rate, resample, allow_truncated, shortest, fail)
        for index, value in enumerate(inputs)
    ]
    for item in items:
        if not item.result.ok:
            yield item.result
    pending = sorted((it for it in items if it.result.ok), key=lambda it: -it.num_samples)  # stable
    longest = int(options.max_segment_seconds * target_rate)
    is_long = (lambda it: True) if long_form else (lambda it: long_form is None and it.num_samples > longest)
    long_items = [it for it in pending if is_long(it)]
    short_items = [it for it in pending if not is_long(it)]
    show = progress if progress is not None else (len(pending) > batch_size and sys.stderr.isatty())
    from tqdm.auto import tqdm

    editor = _SegmentEditor(
        model, processor, num_editing_steps, return_drafts, word_timestamps, batch_size, return_token_scores
    )
    load = partial(
        _load, target_rate=target_rate, resample=resample, allow_truncated=allow_truncated, shortest=shortest
    )
    with tqdm(total=len(pending), unit="file", disable=not show, desc="transcribing") as bar:

        def finished(results: list[TranscriptionResult]) -> Iterator[TranscriptionResult]:
            bar.update(len(results))
            yield from results

        for item in long_items:
            if not load(item, fail=fail):
                yield from finished([item.result])
                continue
            yield from finished(editor.add_recording(item, options))
        for start in range(0, len(short_items), batch_size):
            batch = short_items[start : start + batch_size]
            ready = []
            for item in batch:
                if load(item, fail=fail):
                    ready.append(item)
                else:
                    yield from finished([item.result])
            if ready:
                yield from finished(editor.add_batch(ready))
        yield from finished(editor.flush())


def _as_input_list(audio_or_paths: Any) -> list[Any]:
    """One input or a list of inputs → a list of inputs."""
    if isinstance(audio_or_paths, (str, os.PathLike, dict, np.ndarray, torch.Tensor)):
        return [audio_or_paths]
    if isinstance(audio_or_paths, Sequence):
        items = list(audio_or_paths)
        if items and all(isinstance(x, Number) for x in items):
            return [audio_or_paths]  # a flat list of samples is one waveform
        return items
    return [audio_or_paths]  # refused by _prepare with a message


def _prepare(
    value: Any,
    index: int,
    target_rate: int,
    sampling_rate: int | None,
    resample: bool,
    allow_truncated: bool,
    shortest: int,
    fail: Callable[[_Item, InvalidAudioError], None],
) -> _Item:
    """Check one input; in-memory audio is validated now, files only by their header."""
    is_path = is_file_input(value)
    item = _Item(TranscriptionResult(index, os.fspath(value) if is_path else f"audio[{index}]"), 0)
    try:
        if is_path:
            info = audio_info(value)
            if info.frames == 0:
                raise AudioLoadError(f"{item.result.source}: the file holds no audio samples")
            if info.sampling_rate != target_rate and not resample:
                raise AudioLoadError(
                    f"{item.result.source}: sampled at {info.sampling_rate} Hz, but {target_rate} Hz is "
                    "needed; enable resampling or convert the file"
                )
            item.path = item.result.source
            item.num_samples = info.num_samples(target_rate)
        else:
            wave, notes = _read(value, index, sampling_rate, target_rate, resample, allow_truncated)
            _set_wave(item, wave, shortest, notes)
    except InvalidAudioError as err:
        fail(item, err)
    return item


def _read(
    value: Any,
    index: int | None,
    sampling_rate: int | None,
    target_rate: int,
    resample: bool,
    allow_truncated: bool,
) -> tuple[torch.Tensor, list[str]]:
    """:func:`prepare_waveform`, and the :class:`TruncatedAudioWarning` messages it emitted (other warnings
    pass through)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", TruncatedAudioWarning)
        wave = prepare_waveform(value, index, sampling_rate, target_rate, resample, allow_truncated)
    notes = []
    for caught_warning in caught:
        if issubclass(caught_warning.category, TruncatedAudioWarning):
            notes.append(str(caught_warning.message))
        else:
            warnings.warn_explicit(
                caught_warning.message,
                caught_warning.category,
                caught_warning.filename,
                caught_warning.lineno,
            )
    return wave, notes


def _set_wave(item: _Item, wave: torch.Tensor, shortest: int, notes: Sequence[str] = ()) -> None:
    item.wave = wave.cpu()
    item.num_samples = int(wave.shape[0])
    item.result.duration_sec = item.num_samples / SAMPLING_RATE
    for note in notes:  # a truncated file transcribed with allow_truncated=True
        _add_warning(item.result, note)
        warnings.warn(note, TruncatedAudioWarning, stacklevel=_caller_stacklevel())
    if item.num_samples < shortest:
        note = (
            f"{item.result.source}: {item.num_samples} samples ({1000 * item.num_samples / SAMPLING_RATE:.0f} ms) "
            f"is shorter than one audio token ({shortest} samples, 100 ms); the transcript rests on the CTC "
            "draft alone and is likely empty"
        )
        _add_warning(item.result, note)
        warnings.warn(note, ShortAudioWarning, stacklevel=_caller_stacklevel())


def _caller_stacklevel() -> int:
    """The ``stacklevel`` that makes a warning point at the first frame outside this module (the line that
    called :func:`transcribe`), however deep the helpers and comprehensions in between."""
    frame, level = sys._getframe(1), 1  # the function that calls warnings.warn
    while frame is not None and frame.f_globals.get("__name__") == __name__:
        frame, level = frame.f_back, level + 1
    return level


def _add_warning(result: TranscriptionResult, note: str) -> None:
    result.warning = note if result.warning is None else f"{result.warning}; {note}"


def _load(
    item: _Item, *, target_rate: int, resample: bool, allow_truncated: bool, shortest: int, fail: Callable
) -> bool:
    """Read a file input's samples (in-memory inputs are ready); ``False`` if it failed."""
    if item.wave is not None:
        return True
    try:
        wave, notes = _read(item.path, None, None, target_rate, resample, allow_truncated)
        _set_wave(item, wave, shortest, notes)
    except InvalidAudioError as err:
        fail(item, err)
        return False
    return True


@dataclass
class _Recording:
    """A recording in flight: its segments as they are edited, and how many are still out."""

    item: _Item
    segments: list[Segment | None]
    word_timestamps: bool
    token_scores: bool
    outstanding: int = 0
    encoded: bool = False
    activity: list[tuple[float, float]] | None = None  # stretches of sound, seconds (word timestamps)


@dataclass
class _Job:
    recording: _Recording
    index: int
    start_frame: int
    end_frame: int
    audio_embeds: torch.Tensor  # (A, D)
    draft_ids: torch.Tensor  # (n,)
    pooled: torch.Tensor | None  # (W, hidden), for word timestamps
    queued_at: float = dataclasses.field(default_factory=time.monotonic)


class _SegmentEditor:
    """The edit queue shared by every input: segments of long recordings and whole short clips alike are
    edited ``batch_size`` at a time in one packed editor pass; a recording's result is released when its
    last segment is done.

    Word timestamps and token scores are decided per input (``_Item.word_timestamps`` /
    ``_Item.token_scores``, the editor's settings when ``None``), so one editor serves requests that want
    different outputs. ``observer(stage, size)``, when given, hears the size of every encoder batch
    (``"encoder"``) and editor pass (``"editor"``).
    """

    def __init__(
        self,
        model: GraniteSpeechNarForCTC,
        processor: GraniteSpeechNarProcessor,
        num_editing_steps: int,
        return_drafts: bool,
        word_timestamps: bool | Literal["ctc"],
        batch_size: int,
        token_scores: bool = False,
        observer: Callable[[str, int], None] | None = None,
    ):
        self.model, self.processor = model, processor
        self.steps, self.return_drafts = num_editing_steps, return_drafts
        self.word_timestamps, self.batch_size = bool(word_timestamps), batch_size
        self.token_scores, self.observer = token_scores, observer
        # word_timestamps="ctc": times from the forced alignment alone, not moved onto the sound.
        self.refine_word_times = word_timestamps != "ctc"
        self.blank = model.config.blank_token_id
        self.window_seconds = model.config.encoder_config.pooling_window * ENCODER_FRAME_SECONDS
        vocab = model.config.text_config.vocab_size
        self.starts_word = word_start_table(processor.tokenizer, vocab)
        self.queue: list[_Job] = []

    # -- producers ------------------------------------------------------------------------------------
    def add_batch(self, items: list[_Item]) -> list[TranscriptionResult]:
        """Short inputs: one padded encoder batch (as ``generate`` runs it), one segment each."""
        clips = []
        for item in items:
            recording = self._recording(item, [None], outstanding=1, encoded=True)
            clips.append((recording, 0, 0, item.wave))
            item.wave = None  # freed once the batch is encoded
        return self._encode_clips(clips)

    def add_recording(self, item: _Item, options: LongFormOptions) -> list[TranscriptionResult]:
        """A long input: features of the whole recording, the encoder in chunks, segments as cuts settle."""
        return [result for step in self.recording_steps(item, options) for result in step]

    def recording_steps(self, item: _Item, options: LongFormOptions) -> Iterator[list[TranscriptionResult]]:
        """:meth:`add_recording` one segment at a time: each step encodes up to the next cut, queues that
        segment and yields the results it finished (a server interleaves other work between steps)."""
        model = self.model
        wave = item.wave.to(model.device)
        recording = self._recording(item, [])
        samples = item.wave if options.reencode_segments else None
        item.wave = None
        features = self.processor.feature_extractor.extract(wave, options.encoder_chunk_seconds)
        del wave
        plan = SegmentPlan(
            blank=self.blank,
            starts_word=self.starts_word.numpy(),
            max_windows=max(1, int(options.max_segment_seconds / self.window_seconds)),
            min_windows=max(1, int(options.min_segment_seconds / self.window_seconds)),
            min_pause_windows=max(1, round(options.min_pause_seconds / self.window_seconds)),
        )
        pieces = []
        keep_pooled = recording.word_timestamps or recording.token_scores
        for segment in encode_long(model, features.to(model.dtype), options, plan, keep_pooled):
            done = []
            recording.segments.append(None)
            recording.outstanding += 1
            if samples is not None:  # encoded again on its own, batch_size segments at a time
                a = segment.start_frame * SAMPLES_PER_ENCODER_FRAME
                last = segment.end_frame == features.shape[0]  # the last segment keeps the trailing samples
                b = len(samples) if last else segment.end_frame * SAMPLES_PER_ENCODER_FRAME
                pieces.append((recording, len(recording.segments) - 1, segment.start_frame, samples[a:b]))
                if len(pieces) == self.batch_size:
                    done += self._encode_clips(pieces)
                    pieces = []
                yield done
                continue
            self.queue.append(
                _Job(
                    recording,
                    len(recording.segments) - 1,
                    segment.start_frame,
                    segment.end_frame,
                    segment.audio_embeds,
                    segment.draft_ids,
                    segment.pooled,
                )
            )
            done += self._maybe_edit()
            yield done
        done = self._encode_clips(pieces) if pieces else []
        recording.encoded = True
        if recording.outstanding == 0:  # every segment was edited while encoding went on
            done.append(self._finish(recording))
        yield done

    def _recording(self, item: _Item, segments: list[Segment | None], **state: Any) -> _Recording:
        words = self.word_timestamps if item.word_timestamps is None else item.word_timestamps
        scores = self.token_scores if item.token_scores is None else item.token_scores
        recording = _Recording(item, segments, bool(words), bool(scores), **state)
        recording.activity = self._activity(item.wave) if recording.word_timestamps else None
        return recording

    def _encode_clips(
        self, clips: list[tuple[_Recording, int, int, torch.Tensor]]
    ) -> list[TranscriptionResult]:
        """Waveforms encoded as one padded batch of short clips, queued as segments: each clip is
        ``(recording, segment index, first encoder frame in the recording, samples)``."""
        model = self.model
        rate = self.processor.feature_extractor.sampling_rate  # every input is at this rate by now
        inputs = self.processor(audio=[wave for *_, wave in clips], sampling_rate=rate, device=model.device)
        if self.observer is not None:
            self.observer("encoder", len(clips))
        with torch.no_grad():
            audio = model.model.encode_audio(
                inputs["input_features"].to(model.dtype), inputs["input_features_mask"]
            )
        pooled = audio.pooled_hidden_states.split(audio.bpe_lengths.tolist())
        done = []
        for b, (recording, index, start_frame, _) in enumerate(clips):
            self.queue.append(
                _Job(
                    recording,
                    index,
                    start_frame,
                    start_frame + int(audio.frame_lengths[b]),
                    audio.audio_embeds[b, : int(audio.audio_lengths[b])],
                    audio.draft_ids[b],
                    pooled[b] if recording.word_timestamps or recording.token_scores else None,
                )
            )
            done += self._maybe_edit()
        return done

    def _activity(self, wave: torch.Tensor) -> list[tuple[float, float]] | None:
        if not self.refine_word_times:
            return None
        regions = speech_activity(wave, SAMPLES_PER_ENCODER_FRAME)
        return [(a * ENCODER_FRAME_SECONDS, b * ENCODER_FRAME_SECONDS) for a, b in regions]

    def flush(self) -> list[TranscriptionResult]:
        done = []
        while self.queue:
            done += self._edit(self.queue[: self.batch_size])
            self.queue = self.queue[self.batch_size :]
        return done

    def oldest_wait(self) -> float:
        """Seconds the oldest queued segment has waited for an editor pass (0 when none waits)."""
        return time.monotonic() - self.queue[0].queued_at if self.queue else 0.0

    def discard(self, keep: Callable[[_Item], bool]) -> None:
        """Drop the queued segments of the inputs ``keep`` rejects (their callers went away)."""
        self.queue = [job for job in self.queue if keep(job.recording.item)]

    def _maybe_edit(self) -> list[TranscriptionResult]:
        if len(self.queue) < self.batch_size:
            return []
        jobs, self.queue = self.queue[: self.batch_size], self.queue[self.batch_size :]
        return self._edit(jobs)

    # -- the editor --------------------------------------------------------------------------------------
    def _edit(self, jobs: list[_Job]) -> list[TranscriptionResult]:
        model = self.model
        audio = [job.audio_embeds for job in jobs]
        hypotheses = [job.draft_ids for job in jobs]
        confidences = None
        scored = any(job.recording.word_timestamps or job.recording.token_scores for job in jobs)
        if self.observer is not None:
            self.observer("editor", len(jobs))
        with torch.no_grad():
            for step in range(self.steps):
                out = model.model.edit(audio, None, hypotheses)
                logits = model.slot_logits(out.last_hidden_state)[0]  # (ΣS, V)
                lengths = out.seq_lengths.tolist()
                best = vocabulary_argmax(logits)
                if step == self.steps - 1 and scored:
                    probs = logits.float().softmax(-1).gather(-1, best[:, None])[:, 0]
                    hypotheses, confidences = ctc_collapse_with_scores(best, probs, lengths, self.blank)
                else:
                    hypotheses = ctc_collapse(best, lengths, self.blank)
        texts = self.processor.batch_decode(hypotheses)
        drafts = self.processor.batch_decode([j.draft_ids for j in jobs]) if self.return_drafts else None
        done = []
        for position, job in enumerate(jobs):
            recording = job.recording
            duration = recording.item.num_samples / SAMPLING_RATE
            start = job.start_frame * ENCODER_FRAME_SECONDS
            frames = num_encoder_frames(recording.item.num_samples)
            end = duration if job.end_frame >= frames else job.end_frame * ENCODER_FRAME_SECONDS
            segment = Segment(
                job.index,
                round(start, 3),
                round(end, 3),
                texts[position],
                drafts[position] if drafts is not None else None,
            )
            if recording.word_timestamps or recording.token_scores:
                tokens = hypotheses[position]
                scores = None if confidences is None else confidences[position]
                spans = self._align(tokens, job)
                if scores is None:  # no editing pass: the BPE head's probability of the token in its windows
                    scores = self._draft_scores(tokens, spans, job)
                if recording.token_scores:
                    segment.tokens = tokens.tolist()
                    segment.token_confidences = [float(c) for c in scores]
                if recording.word_timestamps:
                    segment.words = self._words(tokens, spans, scores, job, start, segment.end)
            recording.segments[job.index] = segment
            recording.outstanding -= 1
            if recording.encoded and recording.outstanding == 0:
                done.append(self._finish(recording))
        return done

    @torch.no_grad()
    def _align(self, tokens: torch.Tensor, job: _Job) -> list[tuple[int, int]]:
        """Forced alignment of the final tokens against the segment's BPE scores (see alignment.py): the
        windows ``[a, b)`` of each token."""
        if tokens.numel() == 0:
            return []
        head = self.model.model.out_bpe
        unique, targets = torch.unique(tokens, return_inverse=True)
        columns = torch.cat([unique, unique.new_tensor([self.blank])])
        pooled = job.pooled.float()
        weight, bias = linear_parameters(head)
        scores = pooled @ weight[columns].float().T + bias[columns].float()  # (W, u + 1)
        try:
            path = forced_align(scores, targets, blank=len(unique))
            spans = token_spans(path, tokens.numel())
        except ValueError:  # more tokens than windows: spread them evenly over the segment
            count, windows = tokens.numel(), pooled.shape[0]
            spans = [
                (i * windows // count, max((i + 1) * windows // count, i * windows // count + 1))
                for i in range(count)
            ]
        return spans

    @torch.no_grad()
    def _draft_scores(self, tokens: torch.Tensor, spans: list[tuple[int, int]], job: _Job) -> torch.Tensor:
        """The BPE head's probability of each token in its aligned windows (the largest there)."""
        if tokens.numel() == 0:
            return torch.zeros(0)
        head = self.model.model.out_bpe
        log_probs = torch.cat([head(rows).float().log_softmax(-1) for rows in job.pooled.split(256)])
        return torch.tensor(
            [float(log_probs[a:b, t].max().exp()) for (a, b), t in zip(spans, tokens.tolist(), strict=True)]
        )

    def _words(
        self,
        tokens: torch.Tensor,
        spans: list[tuple[int, int]],
        confidences: torch.Tensor,
        job: _Job,
        offset: float,
        end: float,
    ) -> list[Word]:
        """The final tokens grouped into words at their aligned times, moved onto the sound."""
        if tokens.numel() == 0:
            return []
        words = group_words(
            tokens.tolist(),
            spans,
            confidences.tolist(),
            self.starts_word,
            lambda ids: self.processor.decode(ids),
            self.window_seconds,
            offset,
            end,
        )
        activity = job.recording.activity
        if activity:
            inside = [(max(a, offset), min(b, end)) for a, b in activity if b > offset and a < end]
            words = refine_word_times(words, inside)
        return words

    def _finish(self, recording: _Recording) -> TranscriptionResult:
        result = recording.item.result
        segments = recording.segments
        result.segments = segments
        result.text = " ".join(s.text for s in segments if s.text)
        if self.return_drafts:
            result.draft = " ".join(s.draft for s in segments if s.draft)
        return result
