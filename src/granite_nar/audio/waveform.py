"""Waveforms in memory: checking them, downmixing and resampling them.

The lowest layer of the audio front end: the file reader (:mod:`granite_nar.audio.io`), the input
preparation (:mod:`granite_nar.audio.inputs`) and the feature extractor all build on it.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from ..lengths import SAMPLES_PER_ENCODER_FRAME, SAMPLING_RATE

__all__ = [
    "InvalidAudioError",
    "MAX_CHANNELS",
    "downmix",
    "resample_waveform",
    "to_mono",
    "validate_waveform",
]

INT16_SCALE = 32768.0  # int16 PCM full scale: x / 2**15 maps [-32768, 32767] into [-1, 1)
# More channels than this in a (channels, samples) array is taken for a layout mistake, not real audio.
MAX_CHANNELS = 32
RESAMPLE_QUALITY = (
    "HQ"  # soxr's high-quality preset (its default): passband to 95 % of Nyquist, 144 dB stopband
)


class InvalidAudioError(ValueError):
    """A waveform the feature extractor cannot use (empty, too short, not mono, NaN/inf, wrong dtype).

    A ``ValueError``, so generic handlers still catch it; batch jobs can catch this class alone and
    read the failing input's index from the message.
    """


def _where(index: int | None) -> str:
    return "audio" if index is None else f"audio[{index}]"


def _dtype_message(where: str, dtype_name: str) -> str:
    return (
        f"{where}: unsupported sample dtype {dtype_name}; expected floating-point samples (nominally in "
        "[-1, 1]) or int16 PCM. Convert other integer PCM to float first (e.g. int32 / 2**31)"
    )


def validate_waveform(
    wave: Any,
    index: int | None = None,
    *,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Check one waveform and return it as a 1-D float tensor (float32 unless ``dtype`` says otherwise).

    Accepted: a 1-D ``numpy.ndarray`` or ``torch.Tensor`` of floats (any precision) or of int16 PCM
    (scaled by 1/32768), or a Python list/tuple of floats. The tensor keeps the device of a tensor input.

    Raises :class:`InvalidAudioError` (a ``ValueError``) naming the problem, and ``audio[index]`` when
    ``index`` is given: not an array; not 1-D (multi-channel audio must be downmixed first); a complex,
    bool, object or non-int16 integer dtype; no samples; fewer than 320 samples (one 20 ms encoder
    frame); NaN or inf samples.
    """
    if dtype not in (torch.float32, torch.float64):
        raise ValueError(f"dtype must be torch.float32 or torch.float64, got {dtype}")
    where = _where(index)
    if isinstance(wave, (np.generic, int, float)):
        wave = np.asarray(wave)  # a lone number: refused below as a scalar
    if isinstance(wave, (list, tuple)):
        try:
            wave = np.asarray(wave)
        except ValueError as err:  # ragged nested lists
            raise InvalidAudioError(
                f"{where}: could not read the list as one waveform ({err}); pass a flat list of floats"
            ) from None
    if isinstance(wave, np.ndarray):
        # astype copies: the tensor never shares (possibly read-only or strided) numpy memory.
        if wave.dtype.kind == "f":
            wave = torch.from_numpy(wave.astype(np.float64 if dtype == torch.float64 else np.float32))
        elif wave.dtype == np.int16:
            wave = torch.from_numpy(wave.astype(np.int16, copy=True))
        else:  # complex, bool, object, strings, other integers
            raise InvalidAudioError(_dtype_message(where, str(wave.dtype)))
    elif not isinstance(wave, torch.Tensor):
        raise InvalidAudioError(
            f"{where}: expected a waveform (1-D numpy array, torch tensor or list of floats), got "
            f"{type(wave).__name__}; load audio files first (see granite_nar.audio)"
        )

    if wave.dtype == torch.int16:
        wave = wave.to(dtype) / INT16_SCALE
    elif wave.dtype.is_complex or wave.dtype == torch.bool or not wave.dtype.is_floating_point:
        raise InvalidAudioError(_dtype_message(where, str(wave.dtype).removeprefix("torch.")))
    else:
        wave = wave.to(dtype)

    if wave.ndim != 1:
        if wave.ndim == 0:
            raise InvalidAudioError(f"{where}: expected a mono 1-D waveform, got a scalar")
        raise InvalidAudioError(
            f"{where}: expected a mono 1-D waveform, got a {wave.ndim}-D array of shape {tuple(wave.shape)}. "
            "Downmix multi-channel audio to mono first: average over the channel axis (axis 0 for "
            "(channels, samples), axis 1 for (samples, channels) as soundfile returns), e.g. with the "
            "helpers in granite_nar.audio. Pass a batch as a list of 1-D waveforms."
        )
    num_samples = wave.shape[0]
    if num_samples == 0:
        raise InvalidAudioError(f"{where}: the waveform is empty (0 samples)")
    if num_samples < SAMPLES_PER_ENCODER_FRAME:
        raise InvalidAudioError(
            f"{where}: {num_samples} samples is shorter than one encoder frame; at least "
            f"{SAMPLES_PER_ENCODER_FRAME} samples (20 ms at 16 kHz) are needed"
        )
    finite = torch.isfinite(wave)
    if not bool(finite.all()):
        bad = (~finite).nonzero().flatten()
        raise InvalidAudioError(
            f"{where}: {bad.numel()} of {num_samples} samples are NaN or inf (first at sample {int(bad[0])})"
        )
    return wave


def downmix(array: Any, channels_axis: int) -> Any:
    """Average the channels of a 2-D waveform: ``(channels, samples)`` with ``channels_axis=0``,
    ``(samples, channels)`` (what soundfile returns) with ``channels_axis=1``.

    Works on numpy arrays (returns float32) and torch tensors (returns a float tensor on the same device;
    float64 stays float64). int16 PCM is scaled to [-1, 1) first, as the feature extractor would. A 1-D
    waveform is returned unchanged.
    """
    if channels_axis not in (0, 1, -1, -2):
        raise ValueError(f"channels_axis must be 0 or 1 for a 2-D array, got {channels_axis}")
    if isinstance(array, torch.Tensor):
        if array.ndim == 1:
            return array
        if array.ndim != 2:
            raise InvalidAudioError(f"downmix expects a 2-D waveform, got shape {tuple(array.shape)}")
        if array.dtype == torch.int16:
            array = array.float() / INT16_SCALE
        elif not array.dtype.is_floating_point:
            raise InvalidAudioError(f"downmix: unsupported sample dtype {array.dtype}")
        return array.mean(dim=channels_axis)
    array = np.asarray(array)
    if array.ndim == 1:
        return array
    if array.ndim != 2:
        raise InvalidAudioError(f"downmix expects a 2-D waveform, got shape {array.shape}")
    if array.dtype == np.int16:
        array = array.astype(np.float32) / INT16_SCALE
    elif array.dtype.kind != "f":
        raise InvalidAudioError(f"downmix: unsupported sample dtype {array.dtype}")
    return array.mean(axis=channels_axis, dtype=np.float64).astype(np.float32)


def to_mono(wave: Any, index: int | None = None) -> Any:
    """A 1-D waveform as is; a 2-D ``(channels, samples)`` waveform downmixed with :func:`downmix`.

    A 2-D array is accepted only in the ``(channels, samples)`` layout (at most :data:`MAX_CHANNELS`
    channels, fewer channels than samples). Anything else, in particular ``(samples, channels)``, raises
    :class:`InvalidAudioError` saying how to fix it, rather than silently averaging the wrong axis.
    Non-array inputs are returned unchanged (the feature extractor's validation reports them).
    """
    shape = tuple(wave.shape) if isinstance(wave, (np.ndarray, torch.Tensor)) else None
    if shape is None or len(shape) != 2:
        return wave
    where = "audio" if index is None else f"audio[{index}]"
    channels, samples = shape
    if channels <= MAX_CHANNELS and channels < samples:
        return downmix(wave, channels_axis=0)
    if samples <= MAX_CHANNELS and samples < channels:
        hint = (
            "it looks like (samples, channels); transpose it or call "
            "granite_nar.audio.downmix(wave, channels_axis=1)"
        )
    else:
        hint = "pass one 1-D waveform per utterance"
    raise InvalidAudioError(
        f"{where}: a 2-D waveform must be (channels, samples) with at most {MAX_CHANNELS} channels; "
        f"got shape {shape}: {hint}"
    )


def resample_waveform(wave: np.ndarray, orig_rate: int, target_rate: int = SAMPLING_RATE) -> np.ndarray:
    """Resample a 1-D float waveform with soxr's high-quality preset; returns float32."""
    wave = np.asarray(wave, dtype=np.float32)
    if orig_rate == target_rate:
        return wave
    if orig_rate <= 0 or target_rate <= 0:
        raise ValueError(f"sample rates must be positive, got {orig_rate} -> {target_rate}")
    soxr = import_soxr()
    return np.ascontiguousarray(soxr.resample(wave, orig_rate, target_rate, quality=RESAMPLE_QUALITY))


def import_soxr():
    """soxr, or an ImportError that says how to install it."""
    try:
        import soxr
    except ImportError as err:
        raise ImportError(
            f"resampling needs the soxr package ({err}); pip install soxr (or, from a clone, the audio extra: pip install -e '.[audio]')"
        ) from None
    return soxr
