"""``granite_nar.audio.io``: m4a / mp4 / aac (formats libsndfile does not read) are decoded with the ffmpeg
executable when it is on PATH, and refused with what to install when it is not.

The refusal is tested always (PATH is emptied); decoding only where ffmpeg is installed."""

import shutil
import subprocess

import numpy as np
import pytest
import soundfile as sf

from granite_nar.audio import AudioLoadError, TruncatedAudioWarning, audio_info, load_audio

RATE = 16000
HAS_FFMPEG = shutil.which("ffmpeg") is not None
needs_ffmpeg = pytest.mark.skipif(
    not HAS_FFMPEG, reason="no ffmpeg executable on PATH (apt-get install ffmpeg)"
)

# The first bytes of each container: enough for libsndfile to refuse the file and for granite_nar to
# recognise what it is.
HEADERS = {
    "m4a": b"\x00\x00\x00\x20ftypM4A \x00\x00\x02\x00M4A isomiso2\x00\x00\x00\x08free",
    "mp4": b"\x00\x00\x00\x20ftypisom\x00\x00\x02\x00isomiso2avc1mp41\x00\x00\x00\x08free",
    "aac": b"\xff\xf1\x50\x80\x02\x1f\xfc\x21\x00\x49\x90\x02\x19\x00\x23\x80",  # an ADTS frame header
}


def tone(seconds: float, rate: int, freq: float = 440.0) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (0.5 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def peak_frequency(wave: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(wave * np.hanning(len(wave))))
    return float(np.fft.rfftfreq(len(wave), 1 / rate)[spectrum.argmax()])


@pytest.fixture
def no_ffmpeg(monkeypatch, tmp_path):
    """A PATH on which there is no ffmpeg (nor ffprobe)."""
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    assert shutil.which("ffmpeg") is None


@pytest.mark.parametrize("suffix", sorted(HEADERS))
def test_without_ffmpeg_the_refusal_says_what_to_install(tmp_path, no_ffmpeg, suffix):
    path = tmp_path / f"voice.{suffix}"
    path.write_bytes(HEADERS[suffix] + bytes(2000))
    label = "aac" if suffix == "aac" else "m4a/mp4"
    expected = (
        f"{path}: {label} audio can only be read with ffmpeg, which is not installed (no ffmpeg on PATH); "
        "install ffmpeg (apt-get install ffmpeg, or brew install ffmpeg on macOS) or convert the file to "
        "wav or flac"
    )
    for read in (load_audio, audio_info):  # transcribe() reads the header first: refused there already
        with pytest.raises(AudioLoadError) as info:
            read(path)
        assert str(info.value) == expected


def test_a_text_file_named_m4a_is_not_sent_to_ffmpeg(tmp_path, no_ffmpeg):
    path = tmp_path / "notes.m4a"
    path.write_text("not audio at all\n")
    with pytest.raises(AudioLoadError, match=r"notes\.m4a: not a readable audio file") as info:
        load_audio(path)
    assert "ffmpeg" not in str(info.value)


def encode(source, target, *options):
    subprocess.run(
        ["ffmpeg", "-nostdin", "-v", "error", "-y", "-i", str(source), *options, str(target)], check=True
    )
    return target


@needs_ffmpeg
@pytest.mark.parametrize("suffix, options", [("m4a", ["-c:a", "aac"]), ("mp4", ["-c:a", "aac"]), ("aac", [])])
def test_with_ffmpeg_m4a_mp4_and_aac_are_decoded(tmp_path, suffix, options):
    wav = tmp_path / "tone.wav"
    sf.write(wav, np.stack([tone(1.0, 44100), tone(1.0, 44100)], axis=1), 44100)  # stereo, 44.1 kHz
    path = encode(wav, tmp_path / f"tone.{suffix}", *options)
    wave = load_audio(path)  # ffmpeg decodes; the downmix and the soxr resampling are granite_nar's own
    assert wave.dtype == np.float32 and wave.ndim == 1
    assert abs(len(wave) - RATE) <= 2048  # an aac encoder adds up to two frames of priming
    assert abs(peak_frequency(wave, RATE) - 440.0) < 3.0
    assert 0.3 < np.abs(wave).max() < 0.7  # the channels are averaged, not summed
    info = audio_info(path)
    assert (info.sampling_rate, info.channels) == (44100, 2)
    assert abs(info.num_samples(RATE) - RATE) <= 2048
    with pytest.raises(AudioLoadError, match="sampled at 44100 Hz, but 16000 Hz is needed"):
        load_audio(path, resample=False)


@needs_ffmpeg
def test_with_ffmpeg_a_truncated_m4a_is_reported(tmp_path):
    wav = tmp_path / "tone.wav"
    sf.write(wav, tone(2.0, RATE), RATE)
    streamable = encode(wav, tmp_path / "fast.m4a", "-c:a", "aac", "-movflags", "+faststart")
    data = streamable.read_bytes()
    short = tmp_path / "short.m4a"
    short.write_bytes(data[: len(data) // 2])
    with pytest.raises(AudioLoadError, match=rf"^{short}: the file is truncated or damaged: ffmpeg reported"):
        load_audio(short)
    with pytest.warns(TruncatedAudioWarning, match="allow_truncated=True"):
        part = load_audio(short, allow_truncated=True)
    assert 0 < len(part) < 1.5 * RATE
    # The index at the end (ffmpeg's default layout) is lost with the cut: nothing can be decoded.
    default = encode(wav, tmp_path / "plain.m4a", "-c:a", "aac")
    data = default.read_bytes()
    cut = tmp_path / "cut.m4a"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(
        AudioLoadError, match=r"ffmpeg could not decode this m4a/mp4 file \(moov atom not found"
    ):
        load_audio(cut, allow_truncated=True)
