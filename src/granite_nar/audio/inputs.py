"""One way in for every kind of audio input: files, bytes, arrays and ``{"array", "sampling_rate"}`` dicts.

    path / bytes ──► audio.io (decode, downmix, resample) ─┐
    array / tensor / list ──► to_mono ─► validate ─► resample ─┼─► validated 1-D float32 tensor at 16 kHz
    {"array" | "raw", "sampling_rate"} ──────────────────────┘

:func:`granite_nar.transcribe` and :class:`~granite_nar.GraniteSpeechNarPipeline` both call
:func:`prepare_waveform`, so an input means the same thing to both and fails with the same message.
In-memory audio is validated *before* resampling, so NaN samples or a 2-D array are reported as such
rather than as a resampler failure.

A bare array (numpy, torch or list) does not say its sampling rate, and a wrong guess gives a wrong
transcript without any error, so it is refused unless the rate is given: as a ``{"array",
"sampling_rate"}`` dict or with ``sampling_rate=``.
"""

from __future__ import annotations

import io
import os
from typing import Any

import numpy as np
import torch

from ..lengths import SAMPLING_RATE
from .io import decode_audio, load_audio
from .waveform import InvalidAudioError, resample_waveform, to_mono, validate_waveform

__all__ = ["is_array_input", "is_file_input", "missing_rate_error", "prepare_waveform", "unpack_audio_dict"]


def is_file_input(value: Any) -> bool:
    """A path to an audio file (read lazily by batch jobs) rather than audio in memory."""
    return isinstance(value, (str, os.PathLike))


def is_array_input(value: Any) -> bool:
    """A bare waveform in memory (numpy array, torch tensor, list or tuple): it carries no sampling rate."""
    return isinstance(value, (np.ndarray, torch.Tensor, list, tuple))


def missing_rate_error(index: int | None = None, target_rate: int = SAMPLING_RATE) -> InvalidAudioError:
    """The refusal of a bare array given without a sampling rate, naming ``audio[index]``."""
    where = "audio" if index is None else f"audio[{index}]"
    return InvalidAudioError(
        f"{where}: an array does not say its sampling rate, and none was given; pass "
        '{"array": waveform, "sampling_rate": RATE} instead of the bare array, or sampling_rate=RATE '
        f"(sampling_rate={target_rate} if it is already at {target_rate} Hz)"
    )


def unpack_audio_dict(value: dict, index: int | None = None) -> tuple[Any, int]:
    """``{"array" | "raw": waveform, "sampling_rate": rate}`` (what ``datasets`` yields) → ``(waveform, rate)``."""
    array = value.get("array", value.get("raw"))
    rate = value.get("sampling_rate")
    if array is None or rate is None:
        where = "audio" if index is None else f"audio[{index}]"
        raise InvalidAudioError(
            f"{where}: a dict input needs 'array' (or 'raw') and 'sampling_rate', got keys {sorted(value)}"
        )
    return array, int(rate)


def prepare_waveform(
    value: Any,
    index: int | None = None,
    sampling_rate: int | None = None,
    target_rate: int = SAMPLING_RATE,
    resample: bool = True,
    allow_truncated: bool = False,
) -> torch.Tensor:
    """Any supported input → a validated mono 1-D float32 tensor at ``target_rate`` (on the CPU).

    Args:
        value: a path, the bytes of an audio file, a 1-D or ``(channels, samples)`` waveform (numpy array,
            torch tensor, list of floats; float samples or int16 PCM), or a dict with ``"array"`` (or
            ``"raw"``) and ``"sampling_rate"``.
        index: the input's position in a batch job, used in error messages (``audio[index]``).
        sampling_rate: rate of a bare in-memory waveform, required for one (a dict carries its own).
        resample: resample other rates with soxr; with ``False`` they are an error.
        allow_truncated: accept a truncated file (or file bytes) with a
            :class:`~granite_nar.audio.TruncatedAudioWarning` instead of refusing it.

    Raises:
        InvalidAudioError: the input cannot be used, or is a bare array without ``sampling_rate``; the
            message names the file or ``audio[index]``. :class:`~granite_nar.audio.AudioLoadError` (a
            subclass) for files, including truncated ones.
    """
    if is_file_input(value):
        name = os.fspath(value)
        wave = load_audio(name, sampling_rate=target_rate, resample=resample, allow_truncated=allow_truncated)
        try:
            return validate_waveform(wave)
        except InvalidAudioError as err:  # "audio: ..." → "path: ..."
            raise InvalidAudioError(f"{name}: {str(err).removeprefix('audio: ')}") from None
    if isinstance(value, (bytes, bytearray)):
        name = "audio bytes" if index is None else f"audio[{index}] (file bytes)"
        wave = decode_audio(
            io.BytesIO(value), target_rate, resample=resample, name=name, allow_truncated=allow_truncated
        )
        return validate_waveform(wave, index)
    rate = sampling_rate
    if isinstance(value, dict):
        value, rate = unpack_audio_dict(value, index)
    elif rate is None and is_array_input(value):
        raise missing_rate_error(index, target_rate)
    rate = target_rate if rate is None else rate  # anything else is refused by validate_waveform below
    wave = to_mono(value, index)
    if rate != target_rate:
        where = "audio" if index is None else f"audio[{index}]"
        if not resample:
            raise InvalidAudioError(
                f"{where}: sampled at {rate} Hz, but {target_rate} Hz is needed; enable resampling"
            )
        checked = validate_waveform(wave, index)
        wave = resample_waveform(checked.cpu().numpy(), rate, target_rate)
    return validate_waveform(wave, index).cpu()
