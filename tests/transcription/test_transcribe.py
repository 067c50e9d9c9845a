"""``granite_nar.transcription.transcribe``: batching and sorting never change a transcript; inputs of every kind;
per-input errors; loading the model and processor from folders; the random demo model.

The demo model, the speech and ``reference`` (processor + generate directly) come from ``conftest.py``."""

import numpy as np
import pytest
import soundfile as sf
import torch
from testers import DEMO_WAV

from granite_nar import GraniteSpeechNarProcessor, InvalidAudioError, load_audio, transcribe
from granite_nar.audio import AudioLoadError, TruncatedAudioWarning, resample_waveform
from granite_nar.cli import main
from granite_nar.testing.demo import is_random_demo_model, make_random_demo_model
from granite_nar.transcription import transcribe as transcribe_module
from granite_nar.transcription.transcribe import ShortAudioWarning, TranscriptionResult

MP3_MISSING = "MP3" not in sf.available_formats()


def missing_rate(index: int) -> str:
    return (
        f"audio[{index}]: an array does not say its sampling rate, and none was given; pass "
        '{"array": waveform, "sampling_rate": RATE} instead of the bare array, or sampling_rate=RATE '
        "(sampling_rate=16000 if it is already at 16000 Hz)"
    )


def test_batched_sorted_results_equal_single_runs_in_input_order(loaded, speech, monkeypatch, reference):
    model, processor = loaded
    expected = [reference(loaded, w)[0] for w in speech]
    seen = []
    encode_audio = model.model.encode_audio

    def spy(input_features, input_features_mask, **kwargs):
        seen.append(input_features_mask.sum(dim=1).tolist())
        return encode_audio(input_features, input_features_mask, **kwargs)

    monkeypatch.setattr(model.model, "encode_audio", spy)
    texts = transcribe(speech, model=model, processor=processor, batch_size=3, sampling_rate=16000)
    assert texts == expected
    assert any(texts), "the demo model should not be silent on speech"
    # Longest first, at most batch_size per call, every utterance exactly once.
    assert [len(b) for b in seen] == [3, 1]
    flat = [n for batch in seen for n in batch]
    assert flat == sorted(flat, reverse=True) and sorted(flat) == sorted(len(w) // 320 for w in speech)


def test_mixed_inputs_give_the_same_text_as_arrays(loaded, speech, tmp_path, reference):
    model, processor = loaded
    wave = speech[0]
    path = tmp_path / "a.wav"
    sf.write(path, wave, 16000, subtype="FLOAT")
    stereo_44k = tmp_path / "stereo.wav"
    sf.write(stereo_44k, np.stack([wave, wave], axis=1), 16000, subtype="FLOAT")
    pcm = np.round(wave * 32767).astype(np.int16)
    inputs = [
        str(path),
        path,
        wave,
        torch.from_numpy(wave),
        np.stack([wave, wave]),  # (channels, samples)
        {"array": wave, "sampling_rate": 16000},
        stereo_44k,
        pcm,
    ]
    texts = transcribe(inputs, model=model, processor=processor, batch_size=3, sampling_rate=16000)
    expected = reference(loaded, wave)[0]
    assert texts[:7] == [expected] * 7
    assert texts[7] == reference(loaded, pcm.astype(np.float32) / 32768)[0]


def test_resampled_inputs_match_load_audio(loaded, tmp_path, reference):
    model, processor = loaded
    wave44 = load_audio(DEMO_WAV, sampling_rate=44100)
    path = tmp_path / "44k.wav"
    sf.write(path, wave44, 44100, subtype="FLOAT")
    expected = reference(loaded, load_audio(path))[0]
    got = transcribe(
        [path, {"array": wave44, "sampling_rate": 44100}, wave44],
        model=model,
        processor=processor,
        sampling_rate=44100,
    )
    assert got == [expected] * 3


def test_drafts_and_editing_steps(loaded, speech, reference):
    model, processor = loaded
    results = transcribe(
        speech[:2],
        model=model,
        processor=processor,
        num_editing_steps=2,
        return_drafts=True,
        sampling_rate=16000,
    )
    assert all(isinstance(r, TranscriptionResult) and r.ok for r in results)
    for result, wave in zip(results, speech[:2], strict=True):
        assert (result.text, result.draft) == reference(loaded, wave, steps=2)
        assert result.duration_sec == pytest.approx(len(wave) / 16000)
        assert result.source == f"audio[{result.index}]"
    zero = transcribe(
        speech[:2],
        model=model,
        processor=processor,
        num_editing_steps=0,
        return_drafts=True,
        sampling_rate=16000,
    )
    assert [r.text for r in zero] == [r.draft for r in zero] == [r.draft for r in results]


def test_bad_inputs_are_reported_per_item_and_the_rest_is_transcribed(loaded, speech, tmp_path, reference):
    model, processor = loaded
    text_file = tmp_path / "notes.wav"
    text_file.write_text("not audio")
    empty = tmp_path / "empty.wav"
    sf.write(empty, np.zeros(0, np.float32), 16000)
    too_short_file = tmp_path / "short.wav"
    sf.write(too_short_file, np.zeros(200, np.float32), 16000)
    nan = speech[1].copy()
    nan[5] = np.nan
    inputs = [
        speech[0],
        tmp_path / "missing.wav",
        nan,
        speech[1],
        np.zeros(100, np.float32),
        text_file,
        np.zeros((3000, 2), np.float32),  # (samples, channels)
        empty,
        too_short_file,
        None,
        np.zeros(0, np.float32),
    ]
    results = transcribe(
        inputs, model=model, processor=processor, on_error="skip", batch_size=2, sampling_rate=16000
    )
    assert [r.index for r in results] == list(range(len(inputs)))
    assert results[0].text == reference(loaded, speech[0])[0]
    assert results[3].text == reference(loaded, speech[1])[0]
    expected_errors = {
        1: "missing.wav: no such file",
        2: "audio[2]: 1 of 9000 samples are NaN or inf",
        4: "audio[4]: 100 samples is shorter than one encoder frame",
        5: "notes.wav: not a readable audio file",
        6: "audio[6]: a 2-D waveform must be (channels, samples)",
        7: "empty.wav: the file holds no audio samples",
        8: "short.wav: 200 samples is shorter than one encoder frame",
        9: "audio[9]: expected a waveform",
        10: "audio[10]: the waveform is empty",
    }
    for index, message in expected_errors.items():
        assert results[index].text is None and message in results[index].error, results[index]
    assert [r.ok for r in results].count(True) == 2


def test_on_error_raise_stops_with_the_named_input(loaded, speech, tmp_path):
    model, processor = loaded
    with pytest.raises(AudioLoadError, match="missing.wav: no such file"):
        transcribe(
            [speech[0], tmp_path / "missing.wav"], model=model, processor=processor, sampling_rate=16000
        )
    with pytest.raises(InvalidAudioError, match=r"audio\[1\]: .* NaN"):
        transcribe(
            [speech[0], np.full(1000, np.nan, np.float32)],
            model=model,
            processor=processor,
            sampling_rate=16000,
        )
    with pytest.raises(InvalidAudioError, match=r"audio\[0\]: sampled at 8000 Hz.*enable resampling"):
        transcribe(speech[0], model=model, processor=processor, sampling_rate=8000, resample=False)


def test_short_audio_policy(loaded, speech):
    # 320..1599 samples: encoder frames but no audio token. Transcribed, with a warning.
    model, processor = loaded
    with pytest.warns(ShortAudioWarning, match="shorter than one audio token"):
        results = transcribe(
            [speech[0][:800], speech[0][:1600]],
            model=model,
            processor=processor,
            on_error="skip",
            sampling_rate=16000,
        )
    assert results[0].ok and isinstance(results[0].text, str) and "800 samples" in results[0].warning
    assert results[1].ok and results[1].warning is None


def test_model_from_a_folder_and_processor_from_the_model(model_dir, loaded, speech, reference):
    model, processor = loaded
    expected = reference(loaded, speech[1])[0]
    assert transcribe(speech[1], model=str(model_dir), sampling_rate=16000) == [expected]
    # processor found via model.name_or_path
    assert transcribe(speech[1], model=model, sampling_rate=16000) == [expected]
    assert is_random_demo_model(model_dir) and is_random_demo_model(model)
    bf16 = transcribe(
        speech[1], model=str(model_dir), dtype="bfloat16", return_drafts=True, sampling_rate=16000
    )
    assert isinstance(bf16[0].text, str)
    assert transcribe([], model=model) == []


def test_argument_errors(loaded):
    model, processor = loaded
    with pytest.raises(ValueError, match="on_error"):
        transcribe([], model=model, on_error="ignore")
    with pytest.raises(ValueError, match="batch_size"):
        transcribe([], model=model, batch_size=0)
    with pytest.raises(ValueError, match="unsupported dtype"):
        transcribe(
            np.zeros(1600, np.float32), model=model, processor=processor, dtype="int8", sampling_rate=16000
        )
    with pytest.raises(TypeError, match="GraniteSpeechNarForCTC"):
        transcribe(np.zeros(1600, np.float32), model=object(), sampling_rate=16000)


def test_progress_bar(loaded, speech, capsys):
    model, processor = loaded
    transcribe(speech, model=model, processor=processor, batch_size=2, progress=True, sampling_rate=16000)
    assert "transcribing" in capsys.readouterr().err
    transcribe(speech, model=model, processor=processor, batch_size=2, progress=False, sampling_rate=16000)
    assert capsys.readouterr().err == ""


def test_processor_is_loaded_from_a_processor_folder(model_dir, loaded, speech):
    processor = GraniteSpeechNarProcessor.from_pretrained(model_dir)
    assert transcribe(
        speech[3], model=loaded[0], processor=str(model_dir), sampling_rate=16000
    ) == transcribe(speech[3], model=loaded[0], processor=processor, sampling_rate=16000)


def test_demo_model_is_reproducible_and_reuses_a_tokenizer(model_dir, loaded, speech, tmp_path, reference):
    from safetensors.torch import load_file

    again = make_random_demo_model(tmp_path / "again", tokenizer_dir=model_dir)  # same seed, same tokenizer
    first, second = load_file(model_dir / "model.safetensors"), load_file(again / "model.safetensors")
    assert first.keys() == second.keys() and all(torch.equal(first[k], second[k]) for k in first)
    assert (again / "tokenizer.json").read_text() == (model_dir / "tokenizer.json").read_text()
    assert "RANDOM" in (again / "README.md").read_text()
    assert transcribe(speech[1], model=str(again), sampling_rate=16000) == [reference(loaded, speech[1])[0]]


def test_arrays_without_a_sampling_rate_are_refused_naming_the_input(loaded, speech):
    # A 22.05 kHz recording given as a bare array used to be taken for 16 kHz: a wrong transcript, no warning.
    model, processor = loaded
    wave22 = resample_waveform(speech[0], 16000, 22050)
    as_dict = {"array": wave22, "sampling_rate": 22050}
    with pytest.raises(InvalidAudioError) as info:
        transcribe([as_dict, wave22], model=model, processor=processor)
    assert str(info.value) == missing_rate(1)
    bare = [wave22, torch.from_numpy(wave22), wave22.tolist(), np.stack([wave22, wave22])]
    results = transcribe([as_dict, *bare], model=model, processor=processor, on_error="skip")
    assert results[0].ok and results[0].text is not None
    assert [r.error for r in results[1:]] == [missing_rate(i) for i in range(1, 5)]
    # Given the rate, a bare array means exactly what the dict means.
    assert (
        transcribe(bare[:2], model=model, processor=processor, sampling_rate=22050) == [results[0].text] * 2
    )


@pytest.mark.parametrize(
    "fmt",
    ["WAV", pytest.param("MP3", marks=pytest.mark.skipif(MP3_MISSING, reason="libsndfile without mp3"))],
)
def test_a_truncated_file_is_an_error_record_unless_allowed(loaded, speech, tmp_path, reference, fmt):
    model, processor = loaded
    whole = tmp_path / f"speech.{fmt.lower()}"
    sf.write(whole, speech[0], 16000, format=fmt)  # 2.5 s
    data = whole.read_bytes()
    short = tmp_path / f"short.{fmt.lower()}"
    short.write_bytes(data[: len(data) // 2])
    good = tmp_path / "good.wav"
    sf.write(good, speech[1], 16000, subtype="FLOAT")

    results = transcribe([short, good], model=model, processor=processor, on_error="skip")
    assert results[0].text is None
    assert results[0].error.startswith(f"{short}: the file is truncated: its header declares ")
    assert results[0].error.endswith(
        "; re-copy or re-download the complete file, or pass allow_truncated=True "
        "to transcribe only the audio that is present"
    )
    assert results[1].ok and results[1].text == reference(loaded, speech[1])[0]
    with pytest.raises(AudioLoadError, match=f"^{short}: the file is truncated"):
        transcribe(short, model=model, processor=processor)

    with pytest.warns(TruncatedAudioWarning, match=f"^{short}: the file is truncated") as caught:
        allowed = transcribe(
            [short, good], model=model, processor=processor, allow_truncated=True, on_error="skip"
        )
    assert caught[0].filename == __file__  # points at the transcribe() call
    with pytest.warns(TruncatedAudioWarning):
        part = load_audio(short, allow_truncated=True)
    assert allowed[0].ok and allowed[0].text == reference(loaded, part)[0]
    assert allowed[0].duration_sec == pytest.approx(len(part) / 16000) and allowed[0].duration_sec < 1.5
    assert allowed[0].warning.startswith(f"{short}: the file is truncated")
    assert "using only the" in allowed[0].warning and "(allow_truncated=True)" in allowed[0].warning
    assert allowed[1].warning is None and allowed[1].text == results[1].text


def test_the_cli_reports_a_truncated_file_with_exit_status_1(model_dir, speech, tmp_path, capsys):
    whole = tmp_path / "speech.wav"
    sf.write(whole, speech[0], 16000)
    short = tmp_path / "t.wav"
    short.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    assert main(["transcribe", str(short), "-m", str(model_dir)]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert f"granite-nar: error: {short}: the file is truncated: its header declares" in err


def test_transcripts_never_carry_double_or_edge_spaces(loaded, speech, monkeypatch):
    # The lone word-boundary piece "▁" decodes to an extra space in the tokenizer; transcripts are clean.
    model, processor = loaded
    tokenizer = processor.tokenizer
    lone = tokenizer.convert_tokens_to_ids("▁")
    ids = tokenizer("the red cat", add_special_tokens=False)["input_ids"]
    row = torch.tensor([lone, *ids[:1], lone, *ids[1:], lone])
    assert tokenizer.decode(row.tolist()) != "the red cat"

    encode_audio = model.model.encode_audio

    def encode_with_draft(*args, **kwargs):
        out = encode_audio(*args, **kwargs)
        out.draft_ids = [row] * len(out.draft_ids)
        return out

    monkeypatch.setattr(model.model, "encode_audio", encode_with_draft)
    monkeypatch.setattr(transcribe_module, "ctc_collapse", lambda ids, lengths, blank: [row] * len(lengths))
    results = transcribe(
        speech[:2], model=model, processor=processor, return_drafts=True, sampling_rate=16000
    )
    assert [(r.text, r.draft) for r in results] == [("the red cat", "the red cat")] * 2
