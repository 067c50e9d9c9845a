"""One way in for every kind of audio input: files, bytes, arrays and ``{"array", "sampling_rate"}`` dicts.

    path / bytes ──► audio.io (decode, downmix, resample) ─┐
    array / tensor / list ──► to_mono ─► validate ─► resample ─┼─► validated 1-D float32 tensor at 16 kHz
    {"array" | "raw", "sampling_rate"} ──────────────────────┘

:func:`granite_nar.transcribe` and :class:`~granite_nar.GraniteSpeechNarPipeline` both call
:func:`prepare_waveform`, so an input means the same thing to both and fails with the same message.
In-memory audio is validated *before* resampling, so NaN samples or a 2-D array are reported as such
rather than as a resampler failure.
"""

from __future__ import annotations

import io
import os
from typing import Any

import torch

from ..lengths import SAMPLING_RATE
from .io import decode_audio, load_audio
from .waveform import InvalidAudioError, resample_waveform, to_mono, validate_waveform

__all__ = ["is_file_input", "prepare_waveform", "unpack_audio_dict"]


def is_file_input(value: Any) -> bool:
    """A path to an audio file (read lazily by batch jobs) rather than audio in memory."""
    return isinstance(value, (str, os.PathLike))


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
) -> torch.Tensor:
    """Any supported input → a validated mono 1-D float32 tensor at ``target_rate`` (on the CPU).

    Args:
        value: a path, the bytes of an audio file, a 1-D or ``(channels, samples)`` waveform (numpy array,
            torch tensor, list of floats; float samples or int16 PCM), or a dict with ``"array"`` (or
            ``"raw"``) and ``"sampling_rate"``.
        index: the input's position in a batch job, used in error messages (``audio[index]``).
        sampling_rate: rate of an in-memory waveform (default: ``target_rate``); a dict carries its own.
        resample: resample other rates with soxr; with ``False`` they are an error.

    Raises:
        InvalidAudioError: the input cannot be used; the message names the file or ``audio[index]``.
            :class:`~granite_nar.audio.AudioLoadError` (a subclass) for files.
    """
    if is_file_input(value):
        name = os.fspath(value)
        wave = load_audio(name, sampling_rate=target_rate, resample=resample)
        try:
            return validate_waveform(wave)
        except InvalidAudioError as err:  # "audio: ..." → "path: ..."
            raise InvalidAudioError(f"{name}: {str(err).removeprefix('audio: ')}") from None
    if isinstance(value, (bytes, bytearray)):
        wave = decode_audio(io.BytesIO(value), target_rate, resample=resample, name="audio bytes")
        return validate_waveform(wave)
    rate = sampling_rate
    if isinstance(value, dict):
        value, rate = unpack_audio_dict(value, index)
    rate = target_rate if rate is None else rate
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
