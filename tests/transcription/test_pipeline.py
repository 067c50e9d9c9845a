"""``granite_nar.transcription.pipeline``: the transformers ``automatic-speech-recognition`` pipeline class gives
the same text as ``generate``, for every kind of input.

The demo model, the speech and ``reference`` (processor + generate directly) come from ``conftest.py``."""

import json
from types import SimpleNamespace

import numpy as np
import pytest
import soundfile as sf
import torch
from testers import DEMO_WAV, REPO
from transformers import pipeline
from transformers.pipelines.automatic_speech_recognition import AutomaticSpeechRecognitionPipeline

from granite_nar import InvalidAudioError
from granite_nar.audio import AudioLoadError, TruncatedAudioWarning
from granite_nar.transcription.pipeline import GraniteSpeechNarPipeline

TINY_SYNTH = REPO / "examples" / "models" / "tiny-synth"


def asr_pipeline(model, **kwargs):
    return pipeline("automatic-speech-recognition", model=str(model), device="cpu", **kwargs)


def test_transformers_pipeline(model_dir, loaded, speech, tmp_path, reference):
    asr = pipeline(
        "automatic-speech-recognition",
        model=str(model_dir),
        pipeline_class=GraniteSpeechNarPipeline,
        device="cpu",
    )
    assert isinstance(asr.model, type(loaded[0]))
    path = tmp_path / "a.wav"
    sf.write(path, speech[0], 16000, subtype="FLOAT")
    expected = [reference(loaded, w)[0] for w in speech]
    assert asr(str(path)) == {"text": expected[0]}
    outputs = asr(
        [str(path), speech[1], {"array": speech[2], "sampling_rate": 16000}, speech[3]],
        batch_size=2,
        sampling_rate=16000,
    )
    assert [o["text"] for o in outputs] == expected
    with_draft = asr(speech[1], return_drafts=True, num_editing_steps=0, sampling_rate=16000)
    assert with_draft["text"] == with_draft["draft"] == reference(loaded, speech[1], steps=0)[1]
    assert asr(path.read_bytes())["text"] == expected[0]
    with pytest.raises(TypeError, match="chunk_length_s"):
        asr(speech[0], chunk_length_s=30, sampling_rate=16000)
    # Timestamps, as transformers' speech pipeline gives them: the same text, with times.
    words = asr(str(path), return_timestamps="word")
    assert words["text"] == expected[0]
    assert " ".join(c["text"] for c in words["chunks"]) == expected[0]
    times = [t for c in words["chunks"] for t in c["timestamp"]]
    assert times == sorted(times) and times[-1] <= len(speech[0]) / 16000 + 1e-3
    segments = asr(str(path), return_timestamps=True)
    assert segments["chunks"] == [{"text": expected[0], "timestamp": (0.0, round(len(speech[0]) / 16000, 3))}]
    # A recording longer than one segment is cut into segments; each part is transcribed.
    long = np.concatenate([speech[0], np.zeros(8000, np.float32), speech[1]])
    cut = asr(
        long, sampling_rate=16000, max_segment_seconds=len(speech[0]) / 16000 + 0.2, return_timestamps=True
    )
    assert len(cut["chunks"]) == 2 and cut["text"] == " ".join(c["text"] for c in cut["chunks"])


def test_the_plain_pipeline_call_builds_this_pipeline(model_dir, speech, tmp_path):
    # pipeline("automatic-speech-recognition", model=...) used to build transformers' frame-level CTC pipeline,
    # which returned "<|end_of_text|> the<|end_of_text|> red ..." from this model without any error.
    plain = asr_pipeline(model_dir)
    explicit = asr_pipeline(model_dir, pipeline_class=GraniteSpeechNarPipeline)
    assert type(plain) is GraniteSpeechNarPipeline
    path = tmp_path / "a.wav"
    sf.write(path, speech[0], 16000, subtype="FLOAT")
    inputs = [str(path), {"array": speech[1], "sampling_rate": 16000}, speech[2], speech[3]]
    got = plain(inputs, batch_size=2, sampling_rate=16000, return_drafts=True)
    assert got == explicit(inputs, batch_size=2, sampling_rate=16000, return_drafts=True)
    assert all(isinstance(o["text"], str) and "<|" not in o["text"] for o in got)


def test_the_plain_pipeline_call_transcribes_the_demo_with_the_bundled_model():
    plain = asr_pipeline(TINY_SYNTH)
    explicit = asr_pipeline(TINY_SYNTH, pipeline_class=GraniteSpeechNarPipeline)
    expected = {"text": "the red cat sees two small dogs"}
    assert plain(str(DEMO_WAV)) == explicit(str(DEMO_WAV)) == expected


def tiny_wav2vec2(folder):
    """A random wav2vec2 CTC model with its feature extractor and tokenizer: a model that is not ours."""
    from transformers import Wav2Vec2Config, Wav2Vec2CTCTokenizer, Wav2Vec2FeatureExtractor, Wav2Vec2ForCTC

    vocab = {token: i for i, token in enumerate(["<pad>", "<s>", "</s>", "<unk>", "|", *"abcdefghij"])}
    (folder / "vocab.json").write_text(json.dumps(vocab))
    Wav2Vec2CTCTokenizer(str(folder / "vocab.json")).save_pretrained(folder)
    Wav2Vec2FeatureExtractor(
        feature_size=1, sampling_rate=16000, return_attention_mask=False
    ).save_pretrained(folder)
    config = Wav2Vec2Config(
        vocab_size=len(vocab),
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=16,
        conv_dim=(16, 16),
        conv_stride=(5, 4),
        conv_kernel=(10, 4),
        num_feat_extract_layers=2,
        num_conv_pos_embeddings=8,
        num_conv_pos_embedding_groups=2,
        pad_token_id=0,
    )
    torch.manual_seed(0)
    Wav2Vec2ForCTC(config).save_pretrained(folder)
    return folder


def test_other_models_still_get_the_stock_pipeline(tmp_path, speech):
    folder = tiny_wav2vec2(tmp_path)
    plain = asr_pipeline(folder)
    stock = asr_pipeline(folder, pipeline_class=AutomaticSpeechRecognitionPipeline)
    assert type(plain) is AutomaticSpeechRecognitionPipeline and plain.type == "ctc"
    audio = {"raw": speech[0], "sampling_rate": 16000}
    assert plain(dict(audio)) == stock(dict(audio))


def test_arrays_without_a_sampling_rate_are_refused_naming_the_input(model_dir, speech, tmp_path):
    asr = asr_pipeline(model_dir, pipeline_class=GraniteSpeechNarPipeline)
    path = tmp_path / "a.wav"
    sf.write(path, speech[0], 16000, subtype="FLOAT")
    message = (
        "audio[1]: an array does not say its sampling rate, and none was given; pass "
        '{"array": waveform, "sampling_rate": RATE} instead of the bare array, or sampling_rate=RATE '
        "(sampling_rate=16000 if it is already at 16000 Hz)"
    )
    with pytest.raises(InvalidAudioError) as info:
        asr([str(path), speech[1]])
    assert str(info.value) == message
    with pytest.raises(InvalidAudioError, match=r"^audio\[0\]: an array does not say its sampling rate"):
        asr(speech[1])
    with pytest.raises(InvalidAudioError, match=r"^audio\[0\]: an array does not say its sampling rate"):
        asr(list(speech[1:3]), batch_size=2)
    assert asr(speech[1], sampling_rate=16000) == asr({"array": speech[1], "sampling_rate": 16000})


def test_truncated_files_and_clean_text(model_dir, speech, tmp_path, monkeypatch):
    asr = asr_pipeline(model_dir, pipeline_class=GraniteSpeechNarPipeline)
    whole = tmp_path / "a.wav"
    sf.write(whole, speech[0], 16000)
    short = tmp_path / "short.wav"
    short.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    with pytest.raises(AudioLoadError, match=f"^{short}: the file is truncated"):
        asr(str(short))
    with pytest.warns(TruncatedAudioWarning, match="allow_truncated=True"):
        assert isinstance(asr(str(short), allow_truncated=True)["text"], str)
    # A lone "▁" piece in the model's output does not leave double or edge spaces.
    tokenizer = asr.tokenizer
    lone = tokenizer.convert_tokens_to_ids("▁")
    ids = tokenizer("the red cat", add_special_tokens=False)["input_ids"]
    row = torch.tensor([lone, *ids[:1], lone, *ids[1:], lone])

    def generate(input_features, input_features_mask, **kwargs):
        return SimpleNamespace(sequences=[row] * len(input_features), draft_ids=[row] * len(input_features))

    monkeypatch.setattr(asr.model, "generate", generate)
    assert asr(np.asarray(speech[0]), sampling_rate=16000, return_drafts=True) == {
        "text": "the red cat",
        "draft": "the red cat",
    }
