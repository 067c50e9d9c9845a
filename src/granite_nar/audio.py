"""Reading audio files into the 16 kHz mono float32 waveforms the feature extractor takes.

    file (wav / flac / ogg, any rate, any channel count)
      └─ soundfile: float32 samples, (frames, channels)
           └─ downmix: average of the channels ──► (frames,)
                └─ soxr, high quality: resample to 16 kHz ──► (round(frames * 16000 / rate),)

soundfile and soxr are optional (``pip install 'granite_nar[audio]'``) and imported on first use, so the
model and the feature extractor work without them.

Stereo and multi-channel audio is downmixed by averaging the channels with equal weights. This keeps the
level of a centred (identical in both channels) voice unchanged; a voice in one channel only comes out 6 dB
quieter, which the feature extractor's per-utterance normalisation (SPEC §2.1) removes again.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .feature_extraction import InvalidAudioError
from .lengths import SAMPLING_RATE

__all__ = [
    "AudioLoadError",
    "AudioInfo",
    "MAX_CHANNELS",
    "audio_info",
    "decode_audio",
    "downmix",
    "load_audio",
    "resample_waveform",
    "to_mono",
]

# More channels than this in a (channels, samples) array is taken for a layout mistake, not real audio.
MAX_CHANNELS = 32
RESAMPLE_QUALITY = (
    "HQ"  # soxr's high-quality preset (its default): passband to 95 % of Nyquist, 144 dB stopband
)
_INSTALL_HINT = "install the audio extra: pip install 'granite_nar[audio]'"


class AudioLoadError(InvalidAudioError):
    """An audio file that cannot be used: missing, unreadable, not audio, empty, or at the wrong rate.

    A subclass of :class:`~granite_nar.feature_extraction.InvalidAudioError` (a ``ValueError``), so one
    ``except InvalidAudioError`` catches every per-input problem of a transcription job. The message starts
    with the file's path.
    """


def _import_soundfile():
    try:
        import soundfile
    except ImportError as err:  # also raised when libsndfile itself is missing
        raise ImportError(
            f"reading audio files needs the soundfile package ({err}); {_INSTALL_HINT}"
        ) from None
    return soundfile


def _import_soxr():
    try:
        import soxr
    except ImportError as err:
        raise ImportError(f"resampling needs the soxr package ({err}); {_INSTALL_HINT}") from None
    return soxr


class AudioInfo:
    """What :func:`audio_info` reads from a file's header: ``frames``, ``sampling_rate``, ``channels``."""

    __slots__ = ("path", "frames", "sampling_rate", "channels")

    def __init__(self, path: str, frames: int, sampling_rate: int, channels: int):
        self.path = path
        self.frames = frames
        self.sampling_rate = sampling_rate
        self.channels = channels

    @property
    def duration_sec(self) -> float:
        return self.frames / self.sampling_rate

    def num_samples(self, sampling_rate: int = SAMPLING_RATE) -> int:
        """Samples after resampling to ``sampling_rate`` (soxr keeps ``round(frames * ratio)``)."""
        return round(self.frames * sampling_rate / self.sampling_rate)

    def __repr__(self) -> str:
        return (
            f"AudioInfo(path={self.path!r}, frames={self.frames}, sampling_rate={self.sampling_rate}, "
            f"channels={self.channels})"
        )


def _check_path(path: str | os.PathLike) -> str:
    if not isinstance(path, (str, os.PathLike)):
        raise AudioLoadError(f"expected a path to an audio file, got {type(path).__name__}")
    name = os.fspath(path)
    file = Path(name)
    if not file.exists():
        raise AudioLoadError(f"{name}: no such file")
    if file.is_dir():
        raise AudioLoadError(f"{name}: is a directory, not an audio file")
    if not os.access(name, os.R_OK):
        raise AudioLoadError(f"{name}: permission denied")
    return name


def _unreadable(name: str, err: Exception) -> AudioLoadError:
    # libsndfile's own words ("Format not recognised", "Unspecified internal error") after the path.
    reason = str(err).strip().splitlines()[-1] if str(err).strip() else type(err).__name__
    reason = reason.removeprefix(f"Error opening {name!r}: ")
    return AudioLoadError(f"{name}: not a readable audio file (wav, flac or ogg expected): {reason}")


def audio_info(path: str | os.PathLike) -> AudioInfo:
    """Length, rate and channel count of an audio file, from its header (no samples are decoded).

    Raises:
        AudioLoadError: missing, unreadable or non-audio file.
        ImportError: soundfile is not installed.
    """
    name = _check_path(path)
    soundfile = _import_soundfile()
    try:
        info = soundfile.info(name)
    except (RuntimeError, TypeError, ValueError) as err:  # soundfile.LibsndfileError is a RuntimeError
        raise _unreadable(name, err) from None
    return AudioInfo(name, int(info.frames), int(info.samplerate), int(info.channels))


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
            array = array.float() / 32768.0
        elif not array.dtype.is_floating_point:
            raise InvalidAudioError(f"downmix: unsupported sample dtype {array.dtype}")
        return array.mean(dim=channels_axis)
    array = np.asarray(array)
    if array.ndim == 1:
        return array
    if array.ndim != 2:
        raise InvalidAudioError(f"downmix expects a 2-D waveform, got shape {array.shape}")
    if array.dtype == np.int16:
        array = array.astype(np.float32) / 32768.0
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
    soxr = _import_soxr()
    return np.ascontiguousarray(soxr.resample(wave, orig_rate, target_rate, quality=RESAMPLE_QUALITY))


def load_audio(
    path: str | os.PathLike, sampling_rate: int = SAMPLING_RATE, resample: bool = True
) -> np.ndarray:
    """Read an audio file as a mono float32 waveform at ``sampling_rate``.

    Any format libsndfile reads (wav, flac, ogg/vorbis, ogg/opus with libsndfile >= 1.0.29, aiff …); integer
    PCM comes back scaled to [-1, 1). Several channels are averaged (see the module docstring); a different
    rate is resampled with soxr (high quality) unless ``resample=False``.

    Raises:
        AudioLoadError: the file is missing, a directory, unreadable, not audio, holds no samples, or (with
            ``resample=False``) has another sample rate. The message starts with the path.
        ImportError: soundfile (or, when resampling is needed, soxr) is not installed.
    """
    name = _check_path(path)
    return decode_audio(name, sampling_rate, resample=resample, name=name)


def decode_audio(
    source: Any, sampling_rate: int = SAMPLING_RATE, resample: bool = True, name: str = "audio"
) -> np.ndarray:
    """:func:`load_audio` for a path or an open binary file object (e.g. ``io.BytesIO(file_bytes)``).

    ``name`` starts the error messages.
    """
    soundfile = _import_soundfile()
    try:
        data, rate = soundfile.read(source, dtype="float32", always_2d=True)  # (frames, channels)
    except (RuntimeError, TypeError, ValueError) as err:  # soundfile.LibsndfileError is a RuntimeError
        raise _unreadable(name, err) from None
    if data.shape[0] == 0:
        raise AudioLoadError(f"{name}: the file holds no audio samples")
    wave = data[:, 0] if data.shape[1] == 1 else downmix(data, channels_axis=1)  # (frames,)
    if rate != sampling_rate:
        if not resample:
            raise AudioLoadError(
                f"{name}: sampled at {rate} Hz, but {sampling_rate} Hz is needed; "
                "resample it (resample=True, the default) or convert the file"
            )
        wave = resample_waveform(wave, rate, sampling_rate)
        if wave.shape[0] == 0:
            raise AudioLoadError(
                f"{name}: {data.shape[0]} samples at {rate} Hz is no audio at {sampling_rate} Hz"
            )
    return np.ascontiguousarray(wave, dtype=np.float32)
