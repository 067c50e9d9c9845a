"""``granite_nar.audio.io``: a file whose data ends before its header says (an interrupted copy or download)
is refused with how much is missing, or, with ``allow_truncated=True``, read in part with a warning.

Every file is written here with soundfile and cut with plain byte slicing."""

import io
import struct
import warnings

import numpy as np
import pytest
import soundfile as sf
import torch

from granite_nar.audio import (
    AudioLoadError,
    TruncatedAudioWarning,
    audio_info,
    decode_audio,
    load_audio,
    prepare_waveform,
)

RATE = 16000
MP3_MISSING = "MP3" not in sf.available_formats()
MP3_REASON = "the installed libsndfile cannot write mp3 (soundfile.available_formats() has no MP3)"


def tone(seconds: float = 1.0, rate: int = RATE) -> np.ndarray:
    """A tone with some noise, so that lossy codecs spread it over many packets and pages."""
    t = np.arange(int(seconds * rate)) / rate
    noise = np.random.default_rng(0).uniform(-0.2, 0.2, len(t))
    return (0.5 * np.sin(2 * np.pi * 440.0 * t) + noise).astype(np.float32)


def write(path, fmt: str, subtype: str, seconds: float = 3.0):
    sf.write(path, tone(seconds), RATE, format=fmt, subtype=subtype)
    return path


def cut(path, fraction: float = 0.5):
    """A copy of ``path`` holding only its first ``fraction`` of bytes."""
    data = path.read_bytes()
    short = path.with_name(f"cut-{path.name}")
    short.write_bytes(data[: int(len(data) * fraction)])
    return short


def loads_without_warning(path) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("error", TruncatedAudioWarning)
        return load_audio(path)


FORMATS = [
    pytest.param("wav", "WAV", "PCM_16", id="wav-pcm16"),
    pytest.param("wav", "WAV", "FLOAT", id="wav-float"),
    pytest.param("wav", "WAVEX", "PCM_24", id="wavex"),
    pytest.param("wav", "RF64", "PCM_16", id="rf64"),
    pytest.param("aiff", "AIFF", "PCM_16", id="aiff"),
    pytest.param("flac", "FLAC", "PCM_16", id="flac"),
    pytest.param("ogg", "OGG", "VORBIS", id="ogg-vorbis"),
    pytest.param(
        "mp3",
        "MP3",
        "MPEG_LAYER_III",
        id="mp3",
        marks=pytest.mark.skipif(MP3_MISSING, reason=MP3_REASON),
    ),
]


@pytest.mark.parametrize("suffix, fmt, subtype", FORMATS)
def test_a_truncated_file_is_refused_and_the_whole_file_is_not(tmp_path, suffix, fmt, subtype):
    whole = write(tmp_path / f"speech.{suffix}", fmt, subtype)
    full = loads_without_warning(whole)  # the complete file is not taken for a truncated one
    assert abs(len(full) - 3 * RATE) <= 1152  # lossy codecs may pad a little
    short = cut(whole)
    with pytest.raises(AudioLoadError) as info:
        load_audio(short)
    message = str(info.value)
    assert message.startswith(f"{short}: the file is truncated"), message
    assert "re-copy or re-download the complete file, or pass allow_truncated=True" in message
    assert "\n" not in message
    # Accepted on request: the audio that is there, with a warning that names the file.
    with pytest.warns(TruncatedAudioWarning, match=f"^{short}: the file is truncated") as caught:
        part = load_audio(short, allow_truncated=True)
    assert "allow_truncated=True" in str(caught[0].message)
    assert 0 < len(part) < 0.75 * len(full)


def test_wav_message_says_how_much_is_missing_and_the_part_is_exact(tmp_path):
    whole = write(tmp_path / "a.wav", "WAV", "PCM_16", seconds=2.0)
    data = whole.read_bytes()
    declared = 2 * 2 * RATE  # 2 s of 16-bit mono
    header = len(data) - declared
    short = tmp_path / "short.wav"
    short.write_bytes(data[: header + declared // 4])  # 0.5 s of the 2 s
    with pytest.raises(AudioLoadError) as info:
        load_audio(short)
    assert str(info.value) == (
        f"{short}: the file is truncated: its header declares {declared} bytes of audio data but only "
        f"{declared // 4} are present (0.50 s of 2.00 s), so 1.50 s (75 %) of audio is missing; re-copy or "
        "re-download the complete file, or pass allow_truncated=True to transcribe only the audio that is "
        "present"
    )
    with pytest.warns(TruncatedAudioWarning, match=r"using only the 0\.50 s that are present"):
        part = load_audio(short, allow_truncated=True)
    np.testing.assert_array_equal(part, load_audio(whole)[: RATE // 2])


def test_generic_formats_compare_declared_and_decoded_frames(tmp_path):
    short = cut(write(tmp_path / "a.aiff", "AIFF", "PCM_16", seconds=1.0))
    with pytest.raises(AudioLoadError, match=r"declares 16000 frames \(1\.00 s\) but only \d+ \(0\.\d\d s\)"):
        load_audio(short)


def test_ogg_without_its_end_of_stream_page_is_truncated(tmp_path):
    short = cut(write(tmp_path / "a.ogg", "OGG", "VORBIS"))
    with pytest.raises(AudioLoadError, match="Ogg stream ends without an end-of-stream page, so an unknown"):
        load_audio(short)
    # Cut inside the codec headers: libsndfile cannot even open it, and it is still called truncated.
    early = cut(tmp_path / "a.ogg", fraction=0.02)
    with pytest.raises(AudioLoadError, match=r"truncated: its Ogg stream .* no audio is left") as info:
        load_audio(early, allow_truncated=True)
    assert str(info.value).startswith(str(early))


@pytest.mark.skipif(MP3_MISSING, reason=MP3_REASON)
def test_mp3_message_gives_the_declared_and_decoded_lengths(tmp_path):
    short = cut(write(tmp_path / "a.mp3", "MP3", "MPEG_LAYER_III", seconds=2.0))
    with pytest.raises(
        AudioLoadError, match=r"declares 32000 frames \(2\.00 s\) but only \d+ \(\d\.\d\d s\)"
    ):
        load_audio(short)


def test_file_bytes_and_prepare_waveform_get_the_same_check(tmp_path):
    short = cut(write(tmp_path / "a.wav", "WAV", "PCM_16", seconds=1.0))
    with pytest.raises(AudioLoadError, match=r"^upload: the file is truncated"):
        decode_audio(io.BytesIO(short.read_bytes()), name="upload")
    with pytest.raises(AudioLoadError, match=rf"^{short}: the file is truncated"):
        prepare_waveform(short)
    with pytest.raises(AudioLoadError, match=r"^audio\[3\] \(file bytes\): the file is truncated"):
        prepare_waveform(short.read_bytes(), index=3)
    with pytest.warns(TruncatedAudioWarning):
        wave = prepare_waveform(short, allow_truncated=True)
    assert isinstance(wave, torch.Tensor) and 0 < wave.shape[0] < RATE
    # The header alone (what transcribe() sorts by) still opens: the check is made when the samples are read.
    assert audio_info(short).sampling_rate == RATE


def test_streaming_placeholder_sizes_are_not_taken_for_truncation(tmp_path):
    # ffmpeg writing to a pipe, and other streaming writers, leave 0xFFFFFFFF in the size fields.
    data = bytearray(write(tmp_path / "a.wav", "WAV", "PCM_16", seconds=1.0).read_bytes())
    data[4:8] = struct.pack("<I", 0xFFFFFFFF)
    at = data.index(b"data")
    data[at + 4 : at + 8] = struct.pack("<I", 0xFFFFFFFF)
    streamed = tmp_path / "streamed.wav"
    streamed.write_bytes(bytes(data))
    assert len(loads_without_warning(streamed)) == RATE
    # Extra bytes after the data (another chunk) are not a problem either.
    longer = tmp_path / "longer.wav"
    longer.write_bytes((tmp_path / "a.wav").read_bytes() + b"LIST\x04\x00\x00\x00abcd")
    assert len(loads_without_warning(longer)) == RATE


def test_a_file_cut_inside_the_first_frame_is_refused_even_when_allowed(tmp_path):
    whole = write(tmp_path / "a.wav", "WAV", "PCM_16", seconds=1.0)
    header = len(whole.read_bytes()) - 2 * RATE
    short = tmp_path / "header-only.wav"
    short.write_bytes(whole.read_bytes()[: header + 1])  # half of one sample
    with pytest.raises(AudioLoadError, match="the file is truncated: .* no audio is left"):
        load_audio(short, allow_truncated=True)


def test_a_few_miscounted_header_bytes_are_tolerated_but_a_20_ms_cut_is_not(tmp_path):
    whole = write(tmp_path / "a.wav", "WAV", "PCM_16", seconds=1.0)
    data = bytearray(whole.read_bytes())
    at = data.index(b"data")
    data[at + 4 : at + 8] = struct.pack("<I", 2 * RATE + 36)  # a writer that counted the header in
    sloppy = tmp_path / "sloppy.wav"
    sloppy.write_bytes(bytes(data))
    assert len(loads_without_warning(sloppy)) == RATE
    cut_20ms = tmp_path / "cut.wav"
    cut_20ms.write_bytes(whole.read_bytes()[: -2 * 320])
    with pytest.raises(
        AudioLoadError, match=r"\(0\.98 s of 1\.00 s\), so 0\.02 s \(2 %\) of audio is missing"
    ):
        load_audio(cut_20ms)
