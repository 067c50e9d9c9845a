"""``granite_nar.audio.feature_extraction_granite_speech_nar``: behaviour of the log-mel front end (docs/reference_behaviour.md §2):
golden fixture, an independent numpy reference, batch invariance, the N // 320 frame rule, input formats,
bad-input errors and config round trips."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from safetensors.numpy import load_file
from transformers.audio_utils import mel_filter_bank, window_function

from granite_nar.audio.feature_extraction_granite_speech_nar import (
    GraniteSpeechNarFeatureExtractor,
    InvalidAudioError,
    htk_mel_filter_bank,
    validate_waveform,
)
from granite_nar.lengths import num_encoder_frames

# No import from ``testers``: benchmarks/bench_feature_extraction.py loads this file by path (numpy_reference).
GOLDEN = Path(__file__).resolve().parents[1] / "fixtures" / "frontend" / "golden_features.safetensors"
NUM_GOLDEN = 5


@pytest.fixture(scope="module")
def extractor() -> GraniteSpeechNarFeatureExtractor:
    return GraniteSpeechNarFeatureExtractor()


@pytest.fixture(scope="module")
def golden() -> dict[str, np.ndarray]:
    return load_file(str(GOLDEN))


def features_of(extractor, wave, **kwargs) -> np.ndarray:
    """(T, 160) features of one waveform as float64 numpy."""
    return extractor(wave, **{"sampling_rate": 16000, **kwargs})["input_features"][0].double().numpy()


# --- independent reference: numpy float64, transformers' filter bank and window ------------------


def numpy_reference(wave: np.ndarray, max_over_cut_frames: bool = False) -> np.ndarray:
    """docs/reference_behaviour.md §2.1 written directly in numpy float64; shares no code with the extractor.

    ``max_over_cut_frames=True`` takes the maximum before cutting (the AR extractor's order), to show
    that the golden fixture tells the two apart.
    """
    wave = np.asarray(wave, dtype=np.float64)
    window = window_function(400, "hann", periodic=True, frame_length=512, center=True)  # (512,)
    filters = mel_filter_bank(
        num_frequency_bins=257,
        num_mel_filters=80,
        min_frequency=0.0,
        max_frequency=8000.0,
        sampling_rate=16000,
        norm=None,
        mel_scale="htk",
    )  # (257, 80)
    padded = np.pad(wave, (256, 256), mode="reflect")
    frames = np.lib.stride_tricks.sliding_window_view(padded, 512)[::160]  # (1 + N // 160, 512)
    power = np.abs(np.fft.rfft(frames * window, axis=-1)) ** 2  # (frames, 257)
    log_mel = np.log10(np.maximum(power @ filters, 1e-10))  # (frames, 80)
    kept = 2 * (len(wave) // 320)
    peak = log_mel.max() if max_over_cut_frames else log_mel[:kept].max()
    log_mel = np.maximum(log_mel[:kept], peak - 8.0) / 4.0 + 1.0
    return log_mel.reshape(kept // 2, 160)


def test_filter_bank_matches_transformers_htk_filters():
    ours = htk_mel_filter_bank(257, 80, 16000, dtype=torch.float64).numpy()
    theirs = mel_filter_bank(257, 80, 0.0, 8000.0, 16000, norm=None, mel_scale="htk")
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-12)
    assert (ours.sum(axis=0) > 0).all(), "every mel filter covers at least one FFT bin"


# --- golden fixture ------------------------------------------------------------------------------


@pytest.mark.parametrize("i", range(NUM_GOLDEN))
def test_matches_golden_alone(extractor, golden, i):
    wave, expected = golden[f"wave.{i}"], golden[f"features.{i}"]
    assert expected.shape == (num_encoder_frames(len(wave)), 160)
    np.testing.assert_allclose(features_of(extractor, wave), expected, rtol=0, atol=1e-4)
    # float64 agrees to the fixture's float32 rounding.
    np.testing.assert_allclose(features_of(extractor, wave, dtype=torch.float64), expected, rtol=0, atol=1e-6)


def test_golden_batch_equals_alone(extractor, golden):
    waves = [golden[f"wave.{i}"] for i in range(NUM_GOLDEN)]
    out = extractor(waves, sampling_rate=16000)
    feats, mask = out["input_features"], out["input_features_mask"]
    lengths = [num_encoder_frames(len(w)) for w in waves]
    assert feats.dtype == torch.float32 and mask.dtype == torch.bool
    assert feats.shape == (NUM_GOLDEN, max(lengths), 160)
    assert mask.sum(dim=1).tolist() == lengths
    for i, (wave, length) in enumerate(zip(waves, lengths, strict=True)):
        assert mask[i, :length].all() and not mask[i, length:].any()
        alone = extractor(wave, sampling_rate=16000)["input_features"][0]
        torch.testing.assert_close(feats[i, :length], alone, rtol=0, atol=1e-6)
        assert (feats[i, length:] == 0).all()
        np.testing.assert_allclose(feats[i, :length].numpy(), golden[f"features.{i}"], rtol=0, atol=1e-4)


def test_loud_burst_in_cut_frames_is_ignored(extractor, golden):
    """wave.4 ends in a burst that only reaches cut frames: the maximum must be taken after the cut."""
    wave, expected = golden["wave.4"], golden["features.4"]
    max_first = numpy_reference(wave, max_over_cut_frames=True)
    assert np.abs(max_first - expected).max() > 0.1, "the fixture must discriminate the two orders"
    np.testing.assert_allclose(features_of(extractor, wave), expected, rtol=0, atol=1e-4)


# --- independent numpy reference -----------------------------------------------------------------


@pytest.mark.parametrize("i", range(NUM_GOLDEN))
def test_numpy_reference_agrees_with_golden(golden, i):
    """The test oracle itself is right, so the comparisons below mean something."""
    np.testing.assert_allclose(
        numpy_reference(golden[f"wave.{i}"]), golden[f"features.{i}"], rtol=0, atol=1e-6
    )


@pytest.mark.parametrize("seed, num_samples", [(0, 320), (1, 16_001), (2, 33_599), (3, 80_000)])
def test_matches_numpy_reference(extractor, seed, num_samples):
    rng = np.random.default_rng(seed)
    t = np.arange(num_samples) / 16000
    wave = 0.3 * np.sin(2 * np.pi * 440 * t) + 0.05 * rng.standard_normal(num_samples)
    expected = numpy_reference(wave)
    np.testing.assert_allclose(features_of(extractor, wave, dtype=torch.float64), expected, rtol=0, atol=1e-9)
    np.testing.assert_allclose(features_of(extractor, wave.astype(np.float32)), expected, rtol=0, atol=1e-4)


@pytest.mark.parametrize("num_samples", [320, 16_001, 33_599, 80_000 + 317])
@pytest.mark.parametrize("chunk_seconds, atol", [(0.01, 1e-6), (0.37, 0), (1.0, 0)])
def test_spectrum_in_pieces_gives_the_features_of_one_piece(extractor, num_samples, chunk_seconds, atol):
    # Long recordings compute the spectrum a chunk at a time; the frames (and the clamp's maximum) match,
    # bit for bit once a chunk holds several frames (a one-frame chunk's product rounds differently).
    wave = torch.from_numpy(noise(7, num_samples, 0.5))
    wave[num_samples // 3 :] *= 0.01  # the maximum lies in the first chunk only
    np.testing.assert_allclose(
        extractor.extract(wave, chunk_seconds=chunk_seconds).numpy(),
        extractor.extract(wave).numpy(),
        rtol=0,
        atol=atol,
    )


# --- properties ----------------------------------------------------------------------------------

lengths_st = st.integers(min_value=320, max_value=40_000)
amplitudes_st = st.floats(min_value=1e-6, max_value=1.0)
seeds_st = st.integers(min_value=0, max_value=2**32 - 1)


def noise(seed: int, num_samples: int, amplitude: float) -> np.ndarray:
    wave = np.random.default_rng(seed).uniform(-1.0, 1.0, num_samples) * amplitude
    return wave.astype(np.float32)


@settings(max_examples=40, deadline=None)
@given(num_samples=lengths_st, amplitude=amplitudes_st, seed=seeds_st)
def test_frame_rule_and_normalisation_range(extractor, num_samples, amplitude, seed):
    out = extractor(noise(seed, num_samples, amplitude), sampling_rate=16000)
    feats, mask = out["input_features"][0], out["input_features_mask"][0]
    assert feats.shape == (num_samples // 320, 160)
    assert mask.all() and mask.numel() == num_samples // 320
    assert torch.isfinite(feats).all()
    # Values are max(log, m - 8) / 4 + 1: the span from the utterance maximum is at most 8 / 4.
    assert float(feats.max() - feats.min()) <= 2.0 + 1e-5
    # The maximum is log10 of the largest kept mel power, / 4 + 1 (checked against the oracle).
    expected_max = numpy_reference(noise(seed, num_samples, amplitude)).max()
    assert abs(float(feats.max()) - expected_max) < 1e-4


@settings(max_examples=25, deadline=None)
@given(
    num_samples=lengths_st,
    amplitude=st.floats(min_value=0.03, max_value=1.0),
    gain_db=st.floats(min_value=-20.0, max_value=20.0),
    seed=seeds_st,
)
def test_gain_shifts_features_by_log10_gain_over_2(extractor, num_samples, amplitude, gain_db, seed):
    """Power scales by gain², so log10 moves by 2·log10(gain) and the features by log10(gain) / 2.

    Loud enough that no mel power reaches the 1e-10 floor, the one place where the shift is not exact.
    """
    wave = noise(seed, num_samples, amplitude).astype(np.float64)
    gain = 10.0 ** (gain_db / 20.0)
    base = features_of(extractor, wave, dtype=torch.float64)
    scaled = features_of(extractor, wave * gain, dtype=torch.float64)
    np.testing.assert_allclose(scaled - base, np.log10(gain) / 2.0, rtol=0, atol=1e-9)


@settings(max_examples=25, deadline=None)
@given(
    num_frames=st.integers(min_value=1, max_value=120),
    remainder=st.integers(min_value=96, max_value=319),
    seed=seeds_st,
)
def test_samples_reaching_only_cut_frames_never_matter(extractor, num_frames, remainder, seed):
    """With N = 320·K + r, r ≥ 96, the kept frames end at sample 320·K + 96: a burst after it is invisible."""
    num_samples = 320 * num_frames + remainder
    wave = noise(seed, num_samples, 0.01)
    loud = wave.copy()
    loud[320 * num_frames + 96 :] = 1.0  # a clipped burst, far louder than the rest
    np.testing.assert_array_equal(features_of(extractor, loud), features_of(extractor, wave))


@settings(max_examples=15, deadline=None)
@given(
    waves=st.lists(st.tuples(lengths_st, amplitudes_st, seeds_st), min_size=1, max_size=5),
)
def test_batch_equals_alone(extractor, waves):
    waves = [noise(seed, n, amplitude) for n, amplitude, seed in waves]
    out = extractor(waves, sampling_rate=16000)
    lengths = [len(w) // 320 for w in waves]
    assert out["input_features"].shape == (len(waves), max(lengths), 160)
    assert out["input_features_mask"].sum(dim=1).tolist() == lengths
    for b, (wave, length) in enumerate(zip(waves, lengths, strict=True)):
        alone = extractor(wave, sampling_rate=16000)["input_features"][0]
        torch.testing.assert_close(out["input_features"][b, :length], alone, rtol=0, atol=1e-6)
        assert (out["input_features"][b, length:] == 0).all()


def test_silence_is_the_floor(extractor):
    """All-zero audio: every mel power is floored at 1e-10, so every value is -10 / 4 + 1."""
    np.testing.assert_array_equal(
        features_of(extractor, np.zeros(3200, np.float32)), np.full((10, 160), -1.5)
    )


# --- input formats -------------------------------------------------------------------------------


def test_int16_equals_float_over_32768(extractor):
    pcm = np.random.default_rng(0).integers(-32768, 32768, 16_000, dtype=np.int16)
    as_float = pcm.astype(np.float32) / 32768
    expected = features_of(extractor, as_float)
    np.testing.assert_array_equal(features_of(extractor, pcm), expected)
    np.testing.assert_array_equal(features_of(extractor, torch.from_numpy(pcm)), expected)
    torch.testing.assert_close(validate_waveform(pcm), torch.from_numpy(as_float), rtol=0, atol=0)


def test_numpy_torch_and_list_inputs_agree(extractor):
    wave = noise(7, 5000, 0.5)
    expected = features_of(extractor, wave)
    np.testing.assert_array_equal(features_of(extractor, torch.from_numpy(wave)), expected)
    np.testing.assert_array_equal(features_of(extractor, wave.tolist()), expected)
    np.testing.assert_array_equal(features_of(extractor, wave.astype(np.float64)), expected)
    batch = extractor((wave.tolist(), torch.from_numpy(wave)), sampling_rate=16000)["input_features"]
    np.testing.assert_array_equal(batch[0].double().numpy(), expected)
    np.testing.assert_array_equal(batch[1].double().numpy(), expected)


def test_numpy_output_and_float64(extractor):
    wave = noise(3, 4000, 0.5)
    out_np = extractor(wave, sampling_rate=16000, return_tensors="np")
    assert isinstance(out_np["input_features"], np.ndarray) and out_np["input_features"].dtype == np.float32
    assert out_np["input_features_mask"].dtype == np.bool_
    np.testing.assert_array_equal(
        out_np["input_features"], extractor(wave, sampling_rate=16000)["input_features"].numpy()
    )
    assert extractor(wave, sampling_rate=16000, dtype=torch.float64)["input_features"].dtype == torch.float64
    assert extractor(wave, sampling_rate=16000)["input_features"].shape == (1, 12, 160)


# --- bad input -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "wave, message",
    [
        (np.zeros(0, np.float32), r"audio: the waveform is empty"),
        (np.zeros(319, np.float32), r"319 samples is shorter than one encoder frame; at least 320"),
        (
            np.array([0.0] * 500 + [np.nan], np.float32),
            r"1 of 501 samples are NaN or inf \(first at sample 500\)",
        ),
        (np.array([np.inf] * 400, np.float32), r"400 of 400 samples are NaN or inf"),
        (
            np.zeros((2, 16000), np.float32),
            r"expected a mono 1-D waveform, got a 2-D array of shape \(2, 16000\)",
        ),
        (np.zeros((2, 16000), np.float32), r"Downmix multi-channel audio to mono first"),
        (np.float32(0.5), r"expected a mono 1-D waveform, got a scalar"),
        (np.zeros(1000, np.complex64), r"unsupported sample dtype complex64"),
        (torch.zeros(1000, dtype=torch.complex64), r"unsupported sample dtype complex64"),
        (np.zeros(1000, bool), r"unsupported sample dtype bool"),
        (torch.zeros(1000, dtype=torch.bool), r"unsupported sample dtype bool"),
        (np.array([0.1] * 1000, dtype=object), r"unsupported sample dtype object"),
        (np.zeros(1000, np.int32), r"unsupported sample dtype int32.*int16 PCM"),
        (list(range(1000)), r"unsupported sample dtype int64"),
        ("speech.wav", r"expected a waveform .* got str; load audio files first"),
        ([], r"got an empty list"),
    ],
)
def test_bad_input_gets_a_clear_error(extractor, wave, message):
    with pytest.raises(InvalidAudioError, match=message):
        extractor(wave, sampling_rate=16000)


def test_error_names_the_failing_batch_index(extractor):
    good = noise(0, 4000, 0.1)
    with pytest.raises(ValueError, match=r"^audio\[2\]: 100 samples is shorter"):
        extractor([good, good, good[:100]], sampling_rate=16000)
    with pytest.raises(InvalidAudioError, match=r"^audio\[7\]: .*NaN or inf"):
        validate_waveform(np.full(1000, np.nan), index=7)


def test_wrong_sampling_rate_is_refused(extractor):
    with pytest.raises(ValueError, match=r"sampled at 8000 Hz, .* expects 16000 Hz; resample first"):
        extractor(noise(0, 4000, 0.1), sampling_rate=8000)


def test_missing_sampling_rate_warns_like_transformers_extractors(extractor):
    wave = noise(0, 4000, 0.1)
    with pytest.warns(UserWarning) as caught:
        assumed = extractor(wave)
    assert [str(w.message) for w in caught] == [
        "GraniteSpeechNarFeatureExtractor was called without sampling_rate, so the audio is assumed to be "
        "at 16000 Hz; pass sampling_rate=16000 to confirm it, and resample audio at other rates to 16000 Hz "
        "first (granite_nar.audio.resample_waveform), or the transcript will be wrong"
    ]
    assert caught[0].filename == __file__
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        given = extractor(wave, sampling_rate=16000)
    assert torch.equal(assumed["input_features"], given["input_features"])


def test_bad_call_options(extractor):
    with pytest.raises(ValueError, match=r"dtype must be torch.float32 or torch.float64"):
        extractor(noise(0, 4000, 0.1), sampling_rate=16000, dtype=torch.float16)
    with pytest.raises(ValueError, match=r"return_tensors must be 'pt' or 'np'"):
        extractor(noise(0, 4000, 0.1), sampling_rate=16000, return_tensors="tf")


# --- config --------------------------------------------------------------------------------------


def test_save_and_load_round_trip(extractor, tmp_path):
    custom = GraniteSpeechNarFeatureExtractor(padding_value=-1.0)
    custom.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "preprocessor_config.json").read_text())
    assert saved["feature_size"] == 80 and saved["frame_stacking"] == 2 and "n_mels" not in saved
    loaded = GraniteSpeechNarFeatureExtractor.from_pretrained(tmp_path)
    assert loaded.to_dict() == custom.to_dict()
    waves = [noise(1, 4000, 0.1), noise(2, 9000, 0.1)]
    torch.testing.assert_close(
        loaded(waves, sampling_rate=16000)["input_features"],
        custom(waves, sampling_rate=16000)["input_features"],
        rtol=0,
        atol=0,
    )
    assert (loaded(waves, sampling_rate=16000)["input_features"][0, 12:] == -1.0).all()


def test_loads_original_config_with_n_mels(extractor, tmp_path):
    """The Hub checkpoint's preprocessor_config.json (docs/reference_behaviour.md §1.5) names the bin count n_mels."""
    original = {
        "feature_extractor_type": "GraniteSpeechNarFeatureExtractor",
        "sampling_rate": 16000,
        "n_fft": 512,
        "win_length": 400,
        "hop_length": 160,
        "n_mels": 80,
        "auto_map": {
            "AutoFeatureExtractor": "feature_extraction_granite_speech_nar.GraniteSpeechNarFeatureExtractor",
            "AutoProcessor": "processing_granite_speech_nar.GraniteSpeechNarProcessor",
        },
    }
    (tmp_path / "preprocessor_config.json").write_text(json.dumps(original))
    loaded = GraniteSpeechNarFeatureExtractor.from_pretrained(tmp_path)
    assert loaded.feature_size == 80 and loaded.frame_stacking == 2
    config = loaded.to_dict()
    assert "n_mels" not in config and "auto_map" not in config
    assert config == extractor.to_dict()


def test_config_errors_name_both_values():
    with pytest.raises(ValueError, match=r"n_mels=64 and feature_size=80 disagree"):
        GraniteSpeechNarFeatureExtractor(feature_size=80, n_mels=64)
    with pytest.raises(ValueError, match=r"hop_length=100 × frame_stacking=2 must equal 320"):
        GraniteSpeechNarFeatureExtractor(hop_length=100)
    with pytest.raises(ValueError, match=r"win_length=600 must not exceed n_fft=512"):
        GraniteSpeechNarFeatureExtractor(win_length=600)
