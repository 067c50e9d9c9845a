"""Reading audio files into the 16 kHz mono float32 waveforms the feature extractor takes.

    file (wav / flac / ogg, any rate, any channel count)
      └─ soundfile: float32 samples, (frames, channels)
           └─ downmix: average of the channels ──► (frames,)
                └─ soxr, high quality: resample to 16 kHz ──► (round(frames * 16000 / rate),)

soundfile and soxr are optional (``pip install 'granite_nar[audio]'``) and imported on first use, so the
model and the feature extractor work without them.

Stereo and multi-channel audio is downmixed by averaging the channels with equal weights. This keeps the
level of a centred (identical in both channels) voice unchanged; a voice in one channel only comes out 6 dB
quieter, which the feature extractor's per-utterance normalisation (docs/reference_behaviour.md §2.1) removes again.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from ..lengths import SAMPLING_RATE
from .waveform import InvalidAudioError, downmix, resample_waveform

__all__ = [
    "AudioLoadError",
    "AudioInfo",
    "audio_info",
    "decode_audio",
    "load_audio",
]

_INSTALL_HINT = "install the audio extra: pip install 'granite_nar[audio]'"


class AudioLoadError(InvalidAudioError):
    """An audio file that cannot be used: missing, unreadable, not audio, empty, or at the wrong rate.

    A subclass of :class:`~granite_nar.audio.feature_extraction_granite_speech_nar.InvalidAudioError` (a ``ValueError``), so one
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
