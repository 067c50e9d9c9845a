"""Reading audio files into the 16 kHz mono float32 waveforms the feature extractor takes.

    file (wav / flac / ogg / mp3 …, any rate, any channel count; m4a / mp4 / aac through ffmpeg)
      └─ soundfile: float32 samples, (frames, channels); a truncated file is refused (see below)
           └─ downmix: average of the channels ──► (frames,)
                └─ soxr, high quality: resample to 16 kHz ──► (round(frames * 16000 / rate),)

soundfile and soxr are optional (``pip install soundfile soxr``, or the ``audio`` extra) and imported on first use, so the
model and the feature extractor work without them.

Stereo and multi-channel audio is downmixed by averaging the channels with equal weights. This keeps the
level of a centred (identical in both channels) voice unchanged; a voice in one channel only comes out 6 dB
quieter, which the feature extractor's per-utterance normalisation (docs/reference_behaviour.md §2.1) removes again.

**Truncated files.** A file whose data ends before its header says (an interrupted copy or download, a
recording that was never closed) is refused with an :class:`AudioLoadError` that says how much is missing,
rather than silently transcribed in part (a shortfall under 10 ms is ignored). ``allow_truncated=True`` accepts the audio that is present and
emits a :class:`TruncatedAudioWarning` instead. How it is detected:

* wav (RIFF, RIFX, RF64): the data chunk's size in the header against the bytes present;
* aiff: the frame count of the COMM chunk against the frames decoded;
* ogg (vorbis, opus, flac): every logical stream must end with its end-of-stream page;
* mp3 with a Xing / Info / VBRI header, flac and the other formats libsndfile reads: the frames the
  header declares against the frames decoded (libsndfile's own count);
* a decoding error part-way through (e.g. flac "lost sync") after some audio was decoded.

**m4a / mp4 / aac** (and webm, wma; anything libsndfile cannot open but whose first bytes say it is one of
those containers) are decoded with the ``ffmpeg`` executable when it is on ``PATH`` (to float32 wav at the
file's own rate and channels, which then takes the same downmix and soxr path as every other file);
without ffmpeg they are refused with a message that says what to install.
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import struct
import subprocess
import tempfile
import warnings
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from ..lengths import SAMPLING_RATE
from .waveform import InvalidAudioError, downmix, resample_waveform

__all__ = [
    "AudioLoadError",
    "AudioInfo",
    "TruncatedAudioWarning",
    "audio_info",
    "decode_audio",
    "load_audio",
]

_INSTALL_HINT = "pip install soundfile soxr (or, from a clone, the audio extra: pip install -e '.[audio]')"
_TRUNCATED_HINT = (
    "re-copy or re-download the complete file, or pass allow_truncated=True to transcribe only the audio "
    "that is present"
)
_FFMPEG_HINT = "install ffmpeg (apt-get install ffmpeg, or brew install ffmpeg on macOS) or convert the file to wav or flac"
# Magic bytes of the containers that libsndfile does not read and ffmpeg does (after any ID3v2 tag).
_ISO_BMFF_BOXES = (b"ftyp", b"moov", b"mdat", b"wide", b"free", b"skip")  # m4a, mp4, mov, 3gp
_MATROSKA_MAGIC = b"\x1a\x45\xdf\xa3"  # webm, mka, mkv
_ASF_MAGIC = b"\x30\x26\xb2\x75\x8e\x66\xcf\x11"  # wma, asf
_RIFF_IDS = (b"RIFF", b"RIFX", b"RF64", b"BW64")
_MP3_FRAMES_PER_PACKET = 1152  # an mp3 decoder may drop up to one packet at the end
# A shortfall under 10 ms (and under 64 bytes of wav data) is left alone: sloppy writers miscount their
# headers by a few bytes, and 10 ms at the end of an utterance never changes a transcript.
_SLACK_PER_SECOND = 100
_SLACK_BYTES = 64
_UNKNOWN_LENGTH = 1 << 62  # libsndfile's "length unknown" counts are huge
_OGG_TRUNCATED = (
    "the file is truncated: its Ogg stream ends without an end-of-stream page, so an unknown amount of "
    "audio after the first {seconds:.2f} s is missing"
)


class AudioLoadError(InvalidAudioError):
    """An audio file that cannot be used: missing, unreadable, not audio, empty, truncated, or at the wrong rate.

    A subclass of :class:`~granite_nar.audio.feature_extraction_granite_speech_nar.InvalidAudioError` (a ``ValueError``), so one
    ``except InvalidAudioError`` catches every per-input problem of a transcription job. The message starts
    with the file's path.
    """


class TruncatedAudioWarning(UserWarning):
    """A truncated file read with ``allow_truncated=True``: only the audio that is present is used.

    The message starts with the file's path and says how much audio is missing (when the header tells).
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


def _reason(name: str, err: Exception | str) -> str:
    """libsndfile's own words ("Format not recognised", "Unspecified internal error"), without the path."""
    text = str(err).strip()
    reason = text.splitlines()[-1] if text else type(err).__name__
    reason = reason.removeprefix(f"Error opening {name!r}: ")
    return re.sub(r"^Error opening <[^>]*>: ", "", reason)  # a file object (bytes in memory)


def _unreadable(name: str, err: Exception | str) -> AudioLoadError:
    return AudioLoadError(
        f"{name}: not a readable audio file (wav, flac or ogg expected): {_reason(name, err)}"
    )


def audio_info(path: str | os.PathLike) -> AudioInfo:
    """Length, rate and channel count of an audio file, from its header (no samples are decoded).

    m4a / mp4 / aac files (see the module docstring) are measured with ``ffprobe`` when it is on ``PATH``,
    else by decoding them with ``ffmpeg``.

    Raises:
        AudioLoadError: missing, unreadable or non-audio file; an m4a / mp4 / aac file without ffmpeg.
        ImportError: soundfile is not installed.
    """
    name = _check_path(path)
    soundfile = _import_soundfile()
    try:
        info = soundfile.info(name)
    except (RuntimeError, TypeError, ValueError) as err:  # soundfile.LibsndfileError is a RuntimeError
        return _ffmpeg_info(name, _not_opened(soundfile, name, name, None, err))
    return AudioInfo(name, int(info.frames), int(info.samplerate), int(info.channels))


def load_audio(
    path: str | os.PathLike,
    sampling_rate: int = SAMPLING_RATE,
    resample: bool = True,
    allow_truncated: bool = False,
) -> np.ndarray:
    """Read an audio file as a mono float32 waveform at ``sampling_rate``.

    Any format libsndfile reads (wav, flac, ogg/vorbis, ogg/opus with libsndfile >= 1.0.29, mp3 with
    libsndfile >= 1.1, aiff …), and m4a / mp4 / aac through ``ffmpeg`` when it is installed; integer PCM
    comes back scaled to [-1, 1). Several channels are averaged (see the module docstring); a different
    rate is resampled with soxr (high quality) unless ``resample=False``.

    A file whose data ends before its header says is an error unless ``allow_truncated=True``, which
    returns the audio that is present and emits a :class:`TruncatedAudioWarning`.

    Raises:
        AudioLoadError: the file is missing, a directory, unreadable, not audio, holds no samples, is
            truncated, needs ffmpeg that is not installed, or (with ``resample=False``) has another sample
            rate. The message starts with the path.
        ImportError: soundfile (or, when resampling is needed, soxr) is not installed.
    """
    name = _check_path(path)
    return decode_audio(name, sampling_rate, resample=resample, name=name, allow_truncated=allow_truncated)


def decode_audio(
    source: Any,
    sampling_rate: int = SAMPLING_RATE,
    resample: bool = True,
    name: str = "audio",
    allow_truncated: bool = False,
) -> np.ndarray:
    """:func:`load_audio` for a path or an open binary file object (e.g. ``io.BytesIO(file_bytes)``).

    ``name`` starts the error messages. The completeness check needs to read the bytes back, so a
    non-seekable stream is decoded without it.
    """
    soundfile = _import_soundfile()
    start = None if isinstance(source, (str, os.PathLike)) else _tell(source)
    data, rate, problem = _decode(soundfile, source, name, start)  # (frames, channels)
    if problem is not None and data.shape[0] == 0:
        raise AudioLoadError(f"{name}: {problem}; no audio is left: re-copy or re-download the complete file")
    if data.shape[0] == 0:
        raise AudioLoadError(f"{name}: the file holds no audio samples")
    if problem is not None:
        if not allow_truncated:
            raise AudioLoadError(f"{name}: {problem}; {_TRUNCATED_HINT}")
        warnings.warn(
            f"{name}: {problem}; using only the {data.shape[0] / rate:.2f} s that are present "
            "(allow_truncated=True)",
            TruncatedAudioWarning,
            stacklevel=3,
        )
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


# --- decoding and the completeness check ---------------------------------------------------------------


def _tell(source: Any) -> int | None:
    try:
        return source.tell()
    except (AttributeError, OSError, ValueError):
        return None


def _decode(soundfile, source: Any, name: str, start: int | None) -> tuple[np.ndarray, int, str | None]:
    """``(samples (frames, channels) float32, rate, problem)``; ``problem`` says how the file is truncated."""
    try:
        sound = soundfile.SoundFile(source)
    except (RuntimeError, TypeError, ValueError) as err:  # soundfile.LibsndfileError is a RuntimeError
        label = _not_opened(soundfile, name, source, start, err)
        return _decode_with_ffmpeg(soundfile, source, start, name, label)
    with sound:
        declared, rate, kind = int(sound.frames), int(sound.samplerate), sound.format
        try:
            data = sound.read(dtype="float32", always_2d=True)
            failure = None
        except (RuntimeError, ValueError) as err:  # e.g. flac "lost sync" at a cut
            failure = _reason(name, err)
            data = _read_until_error(sound)
    decoded = data.shape[0]
    if failure is not None:
        if decoded == 0:
            raise _unreadable(name, failure)
        if 0 < declared < _UNKNOWN_LENGTH:
            missing = declared - decoded
            if missing <= rate // _SLACK_PER_SECOND:
                return data, rate, None  # every declared frame was decoded; only trailing bytes are bad
            return (
                data,
                rate,
                (
                    f"the file is truncated or damaged: decoding stopped ({failure}) after {decoded} of the "
                    f"{declared} frames its header declares, so {missing / rate:.2f} s "
                    f"({100 * missing / declared:.0f} %) of audio is missing"
                ),
            )
        return data, rate, f"the file is damaged: decoding stopped ({failure}) after {decoded / rate:.2f} s"
    return data, rate, _truncation(source, start, kind, declared, decoded, rate)


def _not_opened(soundfile, name: str, source: Any, start: int | None, err: Exception) -> str:
    """A file libsndfile cannot open: the name of its format when ffmpeg should decode it; otherwise raises
    the :class:`AudioLoadError` that says why (an Ogg file cut before its first audio page, or unreadable)."""
    head = _read_head(source, start)
    if head.startswith(b"OggS") and _with_bytes(source, start, _ogg_unterminated):
        raise AudioLoadError(  # cut so early that libsndfile finds no audio page at all
            f"{name}: the file is truncated: its Ogg stream ends before its first audio page, so no audio is "
            "left; re-copy or re-download the complete file"
        )
    label = _ffmpeg_format(head, mp3="MP3" not in soundfile.available_formats())
    if label is None:
        raise _unreadable(name, err) from None
    return label


def _read_until_error(sound) -> np.ndarray:
    """The frames a file object decodes from its start before an error, ``(frames, channels)``."""
    blocks = []
    try:
        sound.seek(0)
        while True:
            block = sound.read(1024, dtype="float32", always_2d=True)
            if block.shape[0] == 0:
                break
            blocks.append(block)
    except (RuntimeError, ValueError):
        pass
    if not blocks:
        return np.zeros((0, sound.channels), dtype=np.float32)
    return np.concatenate(blocks)


class _Bytes:
    """Random access to the bytes of a file (or of a file object from ``start`` on)."""

    def __init__(self, handle: BinaryIO, start: int):
        self.handle, self.start = handle, start
        self.size = handle.seek(0, os.SEEK_END) - start

    def read(self, offset: int, count: int) -> bytes:
        self.handle.seek(self.start + offset)
        return self.handle.read(count)


def _with_bytes(source: Any, start: int | None, check) -> Any:
    """``check(_Bytes)`` on a path or a seekable file object (whose position is restored); ``None`` when the
    bytes cannot be read back (a pipe)."""
    try:
        if isinstance(source, (str, os.PathLike)):
            with open(source, "rb") as handle:
                return check(_Bytes(handle, 0))
        if start is None:
            return None
        try:
            return check(_Bytes(source, start))
        finally:
            source.seek(start)
    except (OSError, ValueError, struct.error):
        return None


def _read_head(source: Any, start: int | None, count: int = 64) -> bytes:
    return _with_bytes(source, start, lambda data: data.read(0, count)) or b""


def _truncation(
    source: Any, start: int | None, kind: str, declared: int, decoded: int, rate: int
) -> str | None:
    """How the file ends before its header says, or ``None`` (complete, or no way to tell)."""
    if kind == "OGG":
        if _with_bytes(source, start, _ogg_unterminated):
            return _OGG_TRUNCATED.format(seconds=decoded / rate)
        return None
    wav = _with_bytes(source, start, _wav_data_sizes)
    if wav is not None:
        declared_bytes, present_bytes, byte_rate = wav
        missing = declared_bytes - present_bytes
        if missing < max(byte_rate // _SLACK_PER_SECOND, _SLACK_BYTES):
            return None  # a miscounted header (some writers count the chunk header in), not a cut
        seconds = (
            f" ({present_bytes / byte_rate:.2f} s of {declared_bytes / byte_rate:.2f} s), so "
            f"{missing / byte_rate:.2f} s ({100 * missing / declared_bytes:.0f} %) of audio is missing"
            if byte_rate
            else f", so {100 * missing / declared_bytes:.0f} % of the audio is missing"
        )
        return (
            f"the file is truncated: its header declares {declared_bytes} bytes of audio data but only "
            f"{present_bytes} are present{seconds}"
        )
    tolerance = rate // _SLACK_PER_SECOND
    if kind == "AIFF":
        declared = _with_bytes(source, start, _aiff_frames) or declared
    elif kind == "MP3":
        if not _with_bytes(source, start, _mp3_counts_frames):
            return None  # libsndfile estimated the length from the file size: nothing to compare
        tolerance = max(tolerance, _MP3_FRAMES_PER_PACKET)
    if declared >= _UNKNOWN_LENGTH or decoded + tolerance >= declared:
        return None
    missing = declared - decoded
    return (
        f"the file is truncated: its header declares {declared} frames ({declared / rate:.2f} s) but only "
        f"{decoded} ({decoded / rate:.2f} s) could be decoded, so {missing / rate:.2f} s "
        f"({100 * missing / declared:.0f} %) of audio is missing"
    )


def _wav_data_sizes(data: _Bytes) -> tuple[int, int, int] | None:
    """``(declared, present, bytes per second)`` of a wav file whose data chunk is cut short, else ``None``.

    A size of 0 or 0xFFFFFFFF (without an RF64 ``ds64`` chunk) is a length left open by a streaming
    writer, not a claim, and is not judged.
    """
    head = data.read(0, 12)
    if len(head) < 12 or head[:4] not in _RIFF_IDS or head[8:12] != b"WAVE":
        return None
    order = ">" if head[:4] == b"RIFX" else "<"
    pos, byte_rate, ds64_size = 12, 0, None
    while pos + 8 <= data.size:
        chunk, size = struct.unpack(order + "4sI", data.read(pos, 8))
        if chunk == b"ds64":
            body = data.read(pos + 8, 16)
            ds64_size = struct.unpack("<Q", body[8:16])[0] if len(body) == 16 else None
        elif chunk == b"fmt ":
            body = data.read(pos + 8, 12)
            byte_rate = struct.unpack(order + "I", body[8:12])[0] if len(body) == 12 else 0
        elif chunk == b"data":
            declared = ds64_size if size == 0xFFFFFFFF and ds64_size is not None else size
            present = data.size - pos - 8
            if declared in (0, 0xFFFFFFFF) or present >= declared:
                return None
            return declared, present, byte_rate
        pos += 8 + size + (size & 1)
    return None


def _aiff_frames(data: _Bytes) -> int | None:
    """The frame count of an aiff file's COMM chunk."""
    head = data.read(0, 12)
    if len(head) < 12 or head[:4] != b"FORM" or head[8:12] not in (b"AIFF", b"AIFC"):
        return None
    pos = 12
    while pos + 8 <= data.size:
        chunk, size = struct.unpack(">4sI", data.read(pos, 8))
        if chunk == b"COMM":
            body = data.read(pos + 8, 6)
            return struct.unpack(">hI", body)[1] if len(body) == 6 else None
        pos += 8 + size + (size & 1)
    return None


def _ogg_unterminated(data: _Bytes) -> bool:
    """Whether an Ogg file stops inside a page or before a logical stream's end-of-stream page.

    Walks the page headers from the start (27 bytes and a segment table each; the bodies are skipped).
    Bytes that are not a page boundary end the walk without a verdict.
    """
    pos, open_streams = 0, set()
    while pos < data.size:
        header = data.read(pos, 27)
        if len(header) < 27:
            return pos > 0  # cut inside a page header
        if header[:4] != b"OggS" or header[4] != 0:
            return False  # not a page: trailing bytes of another kind, no verdict
        flags, serial, segments = header[5], struct.unpack("<I", header[14:18])[0], header[26]
        table = data.read(pos + 27, segments)
        end = pos + 27 + segments + sum(table)
        if len(table) < segments or end > data.size:
            return True  # the last page is cut off
        if flags & 0x04:
            open_streams.discard(serial)
        else:
            open_streams.add(serial)
        pos = end
    return bool(open_streams)


def _id3v2_size(head: bytes) -> int:
    """Bytes taken by an ID3v2 tag at the start of the file (0 if there is none)."""
    if len(head) < 10 or head[:3] != b"ID3":
        return 0
    size = (head[6] & 0x7F) << 21 | (head[7] & 0x7F) << 14 | (head[8] & 0x7F) << 7 | (head[9] & 0x7F)
    return 10 + size + (10 if head[5] & 0x10 else 0)


def _mp3_counts_frames(data: _Bytes) -> bool:
    """Whether an mp3 file has a Xing / Info / VBRI header, i.e. an exact frame count (libsndfile otherwise
    estimates the length from the file size)."""
    first = data.read(_id3v2_size(data.read(0, 10)), 48)
    return any(tag in first for tag in (b"Xing", b"Info", b"VBRI"))


# --- ffmpeg: m4a, mp4, aac and other containers libsndfile does not read ------------------------------


def _ffmpeg_format(head: bytes, mp3: bool = False) -> str | None:
    """The name of a format that needs ffmpeg, from a file's first bytes, or ``None``; mp3 counts only
    with ``mp3=True`` (a libsndfile older than 1.1, which does not read it)."""
    if len(head) >= 8 and head[4:8] in _ISO_BMFF_BOXES:
        return "m4a/mp4"
    if head.startswith(_MATROSKA_MAGIC):
        return "webm/matroska"
    if head.startswith(_ASF_MAGIC):
        return "wma/asf"
    if head.startswith(b"ADIF"):
        return "aac"
    frame = head[_id3v2_size(head) :] if _id3v2_size(head) < len(head) else b""
    if len(frame) >= 2 and frame[0] == 0xFF and (frame[1] & 0xF6) == 0xF0:  # ADTS: sync, layer 00
        return "aac"
    if mp3 and len(frame) >= 2 and frame[0] == 0xFF and (frame[1] & 0xE0) == 0xE0 and frame[1] & 0x06:
        return "mp3"
    return None


def _ffmpeg(name: str, label: str) -> str:
    """Path of the ffmpeg executable, or an AudioLoadError that says what to install."""
    executable = shutil.which("ffmpeg")
    if executable is None:
        raise AudioLoadError(
            f"{name}: {label} audio can only be read with ffmpeg, which is not installed (no ffmpeg on "
            f"PATH); {_FFMPEG_HINT}"
        )
    return executable


def _ffmpeg_messages(stderr: bytes, path: str) -> str:
    """ffmpeg's error lines, without the ``[decoder @ 0x…]`` prefixes and the input path, in one line."""
    lines = []
    for line in stderr.decode("utf-8", "replace").splitlines():
        line = line.strip()
        if line.startswith("[") and "] " in line:
            line = line.split("] ", 1)[1]
        line = line.replace(f"{path}: ", "").replace(path, "the file").strip()
        if line and line not in lines:
            lines.append(line)
    return "; ".join(lines)[:400]


def _run_ffmpeg(
    command: list[str], source: Any, start: int | None
) -> tuple[subprocess.CompletedProcess, str]:
    """Run ffmpeg / ffprobe with ``{input}`` replaced by the file (a file object goes through a temporary
    file, since mp4 needs seeking). Returns the finished process and the input as ffmpeg saw it."""
    if isinstance(source, (str, os.PathLike)):
        path = "file:" + os.path.abspath(os.fspath(source))  # never read as a protocol or an option
        return subprocess.run([path if a == "{input}" else a for a in command], capture_output=True), path
    handle = tempfile.NamedTemporaryFile(prefix="granite_nar_", suffix=".audio", delete=False)
    try:
        with handle:
            source.seek(start or 0)
            shutil.copyfileobj(source, handle)
        source.seek(start or 0)
        path = "file:" + handle.name
        return subprocess.run([path if a == "{input}" else a for a in command], capture_output=True), path
    finally:
        os.unlink(handle.name)


def _decode_with_ffmpeg(
    soundfile, source: Any, start: int | None, name: str, label: str
) -> tuple[np.ndarray, int, str | None]:
    """Decode with ffmpeg to float32 wav at the file's own rate and channels, then read that with soundfile."""
    command = [_ffmpeg(name, label), "-nostdin", "-hide_banner", "-loglevel", "error", "-i", "{input}"]
    command += ["-map", "0:a:0", "-f", "wav", "-c:a", "pcm_f32le", "pipe:1"]
    process, path = _run_ffmpeg(command, source, start)
    messages = _ffmpeg_messages(process.stderr, path)
    if process.returncode != 0 or not process.stdout:
        raise AudioLoadError(
            f"{name}: ffmpeg could not decode this {label} file ({messages or 'no audio stream'}); if it is "
            "an interrupted copy or download, re-copy the complete file, otherwise convert it to wav or flac"
        )
    data, rate = soundfile.read(io.BytesIO(process.stdout), dtype="float32", always_2d=True)
    problem = None
    if messages:  # ffmpeg finished but reported errors: a cut or damaged stream
        problem = (
            f"the file is truncated or damaged: ffmpeg reported errors while decoding it ({messages}) and "
            f"decoded {data.shape[0] / rate:.2f} s"
        )
    return data, int(rate), problem


def _ffmpeg_info(name: str, label: str) -> AudioInfo:
    """:class:`AudioInfo` of a file that needs ffmpeg: from ffprobe when it is installed, else by decoding."""
    _ffmpeg(name, label)  # refuse at once when ffmpeg is missing
    probe = shutil.which("ffprobe")
    if probe is not None:
        command = [probe, "-v", "error", "-select_streams", "a:0", "-of", "json", "-show_entries"]
        command += ["stream=sample_rate,channels,duration:format=duration", "{input}"]
        process, _ = _run_ffmpeg(command, name, None)
        try:
            found = json.loads(process.stdout or b"{}")
            stream = found["streams"][0]
            rate, channels = int(stream["sample_rate"]), int(stream["channels"])
            duration = float(stream.get("duration") or found["format"]["duration"])
            return AudioInfo(name, round(duration * rate), rate, channels)
        except (KeyError, IndexError, TypeError, ValueError):
            pass  # no usable header: measure by decoding
    data, rate, _ = _decode_with_ffmpeg(_import_soundfile(), name, None, name, label)
    return AudioInfo(name, data.shape[0], rate, data.shape[1])
