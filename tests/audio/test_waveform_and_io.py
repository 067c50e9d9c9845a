"""``granite_nar.audio.io`` and ``granite_nar.audio.waveform``: reading audio files (formats, downmixing,
resampling, and a clear error for every kind of bad file) and the in-memory waveform helpers."""

import sys

import numpy as np
import pytest
import soundfile as sf
import soxr
import torch

from granite_nar.audio import (
    AudioLoadError,
    audio_info,
    decode_audio,
    downmix,
    load_audio,
    resample_waveform,
    to_mono,
)
from granite_nar.audio.feature_extraction_granite_speech_nar import InvalidAudioError

RATE = 16000


def tone(freq: float, seconds: float, rate: int, amplitude: float = 0.5) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def peak_frequency(wave: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(wave * np.hanning(len(wave))))
    return float(np.fft.rfftfreq(len(wave), 1 / rate)[spectrum.argmax()])


def test_mono_16k_pcm16_reads_back_exactly(tmp_path):
    pcm = (np.random.default_rng(0).standard_normal(5000) * 3000).astype(np.int16)
    path = tmp_path / "mono.wav"
    sf.write(path, pcm, RATE, subtype="PCM_16")
    wave = load_audio(path)
    assert wave.dtype == np.float32 and wave.ndim == 1
    np.testing.assert_array_equal(wave, pcm.astype(np.float32) / 32768.0)


def test_stereo_44k_is_averaged_then_resampled_with_soxr(tmp_path):
    left, right = tone(440.0, 1.0, 44100), tone(1000.0, 1.0, 44100, amplitude=0.25)
    path = tmp_path / "stereo44k.wav"
    sf.write(path, np.stack([left, right], axis=1), 44100, subtype="FLOAT")
    wave = load_audio(path)
    expected = soxr.resample((left + right) / 2, 44100, RATE, quality="HQ")
    np.testing.assert_allclose(wave, expected, atol=1e-6)
    assert len(wave) == audio_info(path).num_samples(RATE) == 16000
    assert abs(peak_frequency(wave, RATE) - 440.0) < 2.0  # pitch survives the rate change


@pytest.mark.parametrize("suffix,fmt,subtype", [(".flac", "FLAC", "PCM_16"), (".ogg", "OGG", "VORBIS")])
def test_compressed_formats(tmp_path, suffix, fmt, subtype):
    wave = tone(300.0, 0.5, RATE)
    path = tmp_path / f"tone{suffix}"
    sf.write(path, wave, RATE, format=fmt, subtype=subtype)
    loaded = load_audio(path)
    assert abs(len(loaded) - len(wave)) <= 1 if fmt == "OGG" else len(loaded) == len(wave)
    assert abs(peak_frequency(loaded, RATE) - 300.0) < 3.0


@pytest.mark.parametrize("frames", [1, 7, 441, 12345, 44100, 100001])
def test_header_length_predicts_resampled_length(tmp_path, frames):
    # transcribe() sorts files by this prediction before reading them.
    path = tmp_path / "x.wav"
    sf.write(path, np.full(frames, 0.1, dtype=np.float32), 44100, subtype="FLOAT")
    predicted = audio_info(path).num_samples(RATE)
    if predicted == 0:
        with pytest.raises(AudioLoadError, match="is no audio at 16000 Hz"):
            load_audio(path)
    else:
        assert len(load_audio(path)) == predicted


def test_wrong_rate_without_resampling_is_refused(tmp_path):
    path = tmp_path / "44k.wav"
    sf.write(path, tone(440.0, 0.2, 44100), 44100)
    with pytest.raises(AudioLoadError, match=r"44k\.wav: sampled at 44100 Hz, but 16000 Hz is needed"):
        load_audio(path, resample=False)
    assert len(load_audio(path, sampling_rate=44100, resample=False)) == int(0.2 * 44100)


def test_bad_files_get_specific_errors(tmp_path):
    text = tmp_path / "notes.wav"
    text.write_text("this is not audio\n")
    corrupt = tmp_path / "corrupt.wav"
    good = tmp_path / "good.wav"
    sf.write(good, tone(440.0, 0.5, RATE), RATE, subtype="PCM_16")
    corrupt.write_bytes(good.read_bytes()[:30])  # RIFF header cut before the data chunk
    empty = tmp_path / "empty.wav"
    sf.write(empty, np.zeros(0, dtype=np.float32), RATE)

    cases = {
        tmp_path / "missing.wav": "no such file",
        tmp_path: "is a directory",
        text: "not a readable audio file",
        corrupt: "not a readable audio file",
        empty: "holds no audio samples",
    }
    for path, message in cases.items():
        with pytest.raises(AudioLoadError, match=message) as info:
            load_audio(path)
        assert str(info.value).startswith(str(path)), "the message must start with the file"
        assert "\n" not in str(info.value)
    with pytest.raises(AudioLoadError, match="expected a path"):
        load_audio(123)


def test_error_hierarchy():
    # One `except InvalidAudioError` catches every per-input problem; ValueError catches it too.
    assert issubclass(AudioLoadError, InvalidAudioError)
    assert issubclass(AudioLoadError, ValueError)


def test_decode_from_bytes(tmp_path):
    path = tmp_path / "a.wav"
    sf.write(path, tone(440.0, 0.3, 22050), 22050)
    import io

    from_bytes = decode_audio(io.BytesIO(path.read_bytes()), name="upload")
    np.testing.assert_array_equal(from_bytes, load_audio(path))
    with pytest.raises(AudioLoadError, match="^upload: not a readable audio file"):
        decode_audio(io.BytesIO(b"garbage"), name="upload")


def test_downmix_layouts_agree():
    rng = np.random.default_rng(1)
    cs = rng.standard_normal((2, 1000)).astype(np.float32)  # (channels, samples)
    expected = (cs[0] + cs[1]) / 2
    np.testing.assert_allclose(downmix(cs, channels_axis=0), expected, rtol=1e-6)
    np.testing.assert_allclose(downmix(cs.T, channels_axis=1), expected, rtol=1e-6)
    torch_mono = downmix(torch.from_numpy(cs), channels_axis=0)
    np.testing.assert_allclose(torch_mono.numpy(), expected, rtol=1e-6)
    pcm = np.array([[32767, -32768], [0, 16384]], dtype=np.int16)  # int16 is scaled like the extractor does
    np.testing.assert_allclose(downmix(pcm, channels_axis=0), [32767 / 65536, -16384 / 65536])
    assert downmix(expected, channels_axis=0) is expected  # already mono
    with pytest.raises(InvalidAudioError, match="2-D"):
        downmix(np.zeros((2, 2, 2), np.float32), channels_axis=0)
    with pytest.raises(ValueError, match="channels_axis"):
        downmix(cs, channels_axis=2)


def test_to_mono_accepts_only_channels_first():
    stereo = np.random.default_rng(2).standard_normal((2, 800)).astype(np.float32)
    np.testing.assert_allclose(to_mono(stereo), stereo.mean(axis=0), rtol=1e-6)
    with pytest.raises(InvalidAudioError, match=r"audio\[3\].*\(800, 2\).*transpose"):
        to_mono(stereo.T, index=3)
    with pytest.raises(InvalidAudioError, match="at most 32 channels"):
        to_mono(np.zeros((40, 40), np.float32))
    one = np.zeros(500, np.float32)
    assert to_mono(one) is one


def test_resample_waveform_keeps_identity_at_same_rate():
    wave = tone(200.0, 0.1, RATE)
    np.testing.assert_array_equal(resample_waveform(wave, RATE, RATE), wave)
    with pytest.raises(ValueError, match="positive"):
        resample_waveform(wave, 0, RATE)


def test_missing_soundfile_points_to_the_extra(tmp_path, monkeypatch):
    path = tmp_path / "a.wav"
    sf.write(path, tone(440.0, 0.1, RATE), RATE)
    monkeypatch.setitem(sys.modules, "soundfile", None)  # import soundfile -> ImportError
    with pytest.raises(ImportError, match=r"pip install soundfile soxr .*pip install -e '\.\[audio\]'"):
        load_audio(path)
