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

import os
import sys
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from numbers import Number
from typing import Any, Literal

import numpy as np
import torch

from ..audio.inputs import is_file_input, prepare_waveform
from ..audio.io import AudioLoadError, TruncatedAudioWarning, audio_info
from ..audio.processing_granite_speech_nar import GraniteSpeechNarProcessor
from ..audio.waveform import InvalidAudioError
from ..lengths import SAMPLING_RATE, min_samples_for_audio_token
from ..model.modeling_granite_speech_nar import GraniteSpeechNarForCTC
from .results import Segment, TranscriptionResult, Word

__all__ = [
    "Segment",
    "ShortAudioWarning",
    "TranscriptionResult",
    "Word",
    "load_model",
    "resolve_dtype",
    "transcribe",
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
) -> tuple[GraniteSpeechNarForCTC, GraniteSpeechNarProcessor]:
    """The model (in eval mode, on ``device``, in ``dtype``) and its processor.

    ``model`` is a model object, a local folder (native or original remote-code layout) or a Hub id (read
    from the local cache when ``HF_HUB_OFFLINE=1``). Nothing from the checkpoint is executed. Without
    ``processor`` it is loaded from the same place as the model. ``device=None`` keeps a model object where
    it is and puts a loaded one on CUDA when available, else on the CPU. A model object is moved in place.
    """
    dtype = resolve_dtype(dtype)
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
    return model.eval(), processor


def transcribe(
    audio_or_paths: Any,
    model: str | os.PathLike | GraniteSpeechNarForCTC,
    processor: str | os.PathLike | GraniteSpeechNarProcessor | None = None,
    batch_size: int = 8,
    num_editing_steps: int = 1,
    device: str | torch.device | None = None,
    dtype: str | torch.dtype | None = None,
    return_drafts: bool = False,
    progress: bool | None = None,
    on_error: Literal["raise", "skip"] = "raise",
    sampling_rate: int | None = None,
    resample: bool = True,
    allow_truncated: bool = False,
) -> list[str] | list[TranscriptionResult]:
    """Transcribe audio files and/or waveforms.

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
        batch_size: utterances per ``generate`` call.
        num_editing_steps: editing passes over the CTC draft (0 returns the draft itself).
        device, dtype: where and in which precision to run (``"cuda"``, ``"bfloat16"`` …); see
            :func:`load_model` for the defaults. Features are computed on the same device.
        return_drafts: also decode the encoder's CTC draft of each input.
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

    Returns:
        One entry per input, in input order (a list even for a single input): the transcripts as strings,
        or :class:`TranscriptionResult` objects when ``return_drafts=True`` or ``on_error="skip"``.

    Raises:
        InvalidAudioError: (with ``on_error="raise"``) a bad input; :class:`~granite_nar.audio.AudioLoadError`,
            a subclass, for files (missing, unreadable, truncated …). The message names the file or
            ``audio[index]`` and says what to do.

    Audio of 320 to 1599 samples (20-100 ms) is transcribed with a :class:`ShortAudioWarning` (the
    result's ``warning``): it has encoder frames but no audio token for the editor. Under 320 samples
    (one encoder frame) is an error.
    """
    if on_error not in ("raise", "skip"):
        raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if num_editing_steps < 0:
        raise ValueError(f"num_editing_steps must be >= 0, got {num_editing_steps}")
    inputs = _as_input_list(audio_or_paths)
    want_results = return_drafts or on_error == "skip"
    if not inputs:
        return []
    model, processor = load_model(model, processor, device=device, dtype=dtype)
    model_device, model_dtype = model.device, model.dtype
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
    pending = sorted((it for it in items if it.result.ok), key=lambda it: -it.num_samples)  # stable
    show = progress if progress is not None else (len(pending) > batch_size and sys.stderr.isatty())
    from tqdm.auto import tqdm

    with tqdm(total=len(inputs), unit="utt", disable=not show, desc="transcribing") as bar:
        bar.update(len(inputs) - len(pending))  # inputs that already failed
        for start in range(0, len(pending), batch_size):
            batch = pending[start : start + batch_size]
            ready = [it for it in batch if _load(it, target_rate, resample, allow_truncated, shortest, fail)]
            if ready:
                _run_batch(
                    ready, model, processor, model_device, model_dtype, num_editing_steps, return_drafts
                )
            bar.update(len(batch))

    results = [it.result for it in items]
    return results if want_results else [r.text for r in results]


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
    item: _Item, target_rate: int, resample: bool, allow_truncated: bool, shortest: int, fail: Callable
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


def _run_batch(
    batch: list[_Item],
    model: GraniteSpeechNarForCTC,
    processor: GraniteSpeechNarProcessor,
    device: torch.device,
    dtype: torch.dtype,
    num_editing_steps: int,
    return_drafts: bool,
) -> None:
    rate = processor.feature_extractor.sampling_rate  # prepare_waveform has resampled every input to it
    inputs = processor(audio=[it.wave for it in batch], sampling_rate=rate, device=device)
    features = inputs["input_features"].to(dtype)  # (B, T, 160)
    out = model.generate(
        features,
        inputs["input_features_mask"],
        num_editing_steps=num_editing_steps,
        return_dict_in_generate=True,
    )
    texts = processor.batch_decode(out.sequences)
    drafts = processor.batch_decode(out.draft_ids) if return_drafts else [None] * len(batch)
    for item, text, draft in zip(batch, texts, drafts, strict=True):
        item.result.text, item.result.draft = text, draft
        item.wave = None  # free the samples as soon as the batch is done
