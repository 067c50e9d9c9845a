"""``granite_nar.audio.processing_granite_speech_nar``: GraniteSpeechNarProcessor, the model's length contract,
CTC labels, decoding, saving and Auto loading."""

import json
import shutil
import warnings

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from testers import FIXTURES, REPO, GraniteSpeechNarForCTCModelTester
from transformers import AutoFeatureExtractor, AutoProcessor

import granite_nar  # noqa: F401  (registers the Auto classes)
from granite_nar import (
    GraniteSpeechNarFeatureExtractor,
    GraniteSpeechNarForCTC,
    GraniteSpeechNarProcessor,
    InvalidAudioError,
)
from granite_nar.lengths import num_audio_tokens, num_bpe_windows, num_encoder_frames
from granite_nar.testing import tiny_config
from granite_nar.testing.synthetic_speech import generate_sentences, grammar_vocabulary, train_tokenizer

ORIGINAL = FIXTURES / "reference_tiny" / "original"
TINY_SYNTH = REPO / "examples" / "models" / "tiny-synth"
# 320 = one encoder frame; 1599 has 4 frames but no audio token; 16321 is not a whole number of frames.
LENGTHS = [16321, 320, 1599, 1600, 8000, 4817]


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    texts = generate_sentences(300, seed=0) + grammar_vocabulary()
    return train_tokenizer(texts, tmp_path_factory.mktemp("tokenizer"), vocab_size=160)


@pytest.fixture(scope="module")
def processor(tokenizer):
    return GraniteSpeechNarProcessor(GraniteSpeechNarFeatureExtractor(), tokenizer)


def waves(lengths, seed=0):
    rng = np.random.default_rng(seed)
    return [(0.1 * rng.standard_normal(n)).astype(np.float32) for n in lengths]


def test_features_and_mask_follow_the_length_helpers(processor):
    batch = processor(waves(LENGTHS), sampling_rate=16000)
    frames = [num_encoder_frames(n) for n in LENGTHS]
    assert batch["input_features"].shape == (len(LENGTHS), max(frames), 160)
    assert batch["input_features_mask"].dtype == torch.bool
    assert batch["input_features_mask"].sum(dim=1).tolist() == frames
    # Exactly the feature extractor's output: the processor adds nothing to the audio path.
    alone = processor.feature_extractor(waves(LENGTHS), sampling_rate=16000)
    assert torch.equal(batch["input_features"], alone["input_features"])


def test_processor_output_drives_the_model_as_each_utterance_alone(processor):
    # The contract between processor and model: the mask the processor writes is the length the model
    # uses, so a padded batch gives every utterance exactly what it gets alone.
    model = GraniteSpeechNarForCTCModelTester().create_model(seed=0)
    audio = waves(LENGTHS, seed=1)
    batch = processor(audio, sampling_rate=16000)
    encoded = model.model.encode_audio(
        batch["input_features"], batch["input_features_mask"], output_bpe_logits=True
    )
    frames = [num_encoder_frames(n) for n in LENGTHS]
    assert encoded.audio_lengths.tolist() == [num_audio_tokens(t, 5) for t in frames]
    assert encoded.bpe_lengths.tolist() == [num_bpe_windows(t, 4) for t in frames]

    batched = model.generate(**batch, num_editing_steps=2, return_dict_in_generate=True)
    for b, wave in enumerate(audio):
        alone = model.generate(
            **processor(wave, sampling_rate=16000), num_editing_steps=2, return_dict_in_generate=True
        )
        assert batched.draft_ids[b].tolist() == alone.draft_ids[0].tolist()
        assert batched.sequences[b].tolist() == alone.sequences[0].tolist()
        torch.testing.assert_close(batched.logits[b], alone.logits[0], atol=2e-5, rtol=1e-5)


@settings(max_examples=25, deadline=None)
@given(length=st.integers(320, 40000), amplitude=st.floats(1e-4, 1.0))
def test_frame_count_property(processor, length, amplitude):
    wave = (amplitude * np.sin(np.arange(length) * 0.05)).astype(np.float32)
    mask = processor(wave, sampling_rate=16000)["input_features_mask"]
    assert mask.shape == (1, num_encoder_frames(length)) and bool(mask.all())


def test_labels_are_plain_token_ids_right_padded(processor, tokenizer):
    texts = ["the red cat sees two small dogs", "a dog", "where is my hat"]
    out = processor(text=texts)
    assert set(out) == {"labels", "label_lengths"}
    for b, text in enumerate(texts):
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        n = int(out["label_lengths"][b])
        assert out["labels"][b, :n].tolist() == ids
        assert (out["labels"][b, n:] == -100).all()
        assert tokenizer.eos_token_id not in ids and tokenizer.pad_token_id not in ids
    assert processor.batch_decode([out["labels"][b, : out["label_lengths"][b]] for b in range(3)]) == texts


def test_labels_feed_the_loss_whatever_the_padding(processor, tokenizer):
    torch.manual_seed(0)
    config = tiny_config(
        len(tokenizer), blank_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id
    )
    model = GraniteSpeechNarForCTC(config).eval()
    batch = processor(
        waves([9000, 12000], seed=2), text=["a dog", "the cat sees two small dogs"], sampling_rate=16000
    )
    loss = model(**batch).loss
    refilled = batch["labels"].clone()
    refilled[refilled < 0] = 7  # any filler past label_lengths gives the same loss
    same = model(batch["input_features"], batch["input_features_mask"], refilled, batch["label_lengths"]).loss
    assert torch.isfinite(loss)
    torch.testing.assert_close(loss, same)


def test_text_with_the_blank_token_is_refused(processor):
    with pytest.raises(ValueError, match=r"text\[1\] encodes to the CTC blank id"):
        processor(text=["a cat", "a <|end_of_text|> cat"])


def test_input_errors(processor):
    with pytest.raises(ValueError, match="pass audio, text or both"):
        processor()
    with pytest.raises(ValueError, match="2 waveform.*1 transcript"):
        processor(waves([1600, 1600]), text="a cat", sampling_rate=16000)
    with pytest.raises(TypeError, match="string or a list of strings"):
        processor(text=[1, 2])
    with pytest.raises(ValueError, match="expects 16000 Hz"):
        processor(waves([1600])[0], sampling_rate=8000)
    with pytest.raises(InvalidAudioError, match=r"audio\[1\].*shorter than one encoder frame"):
        processor(waves([1600, 100]), sampling_rate=16000)


def test_decoding_skips_special_tokens_by_default(processor, tokenizer):
    ids = tokenizer("two small dogs", add_special_tokens=False)["input_ids"]
    special = [tokenizer.pad_token_id, tokenizer.eos_token_id]
    rows = [torch.tensor(ids + special), torch.tensor(special[:1] + ids[:1])]  # unequal lengths
    assert processor.batch_decode(rows) == ["two small dogs", tokenizer.decode(ids[:1])]
    assert processor.decode(np.array(ids + special)) == "two small dogs"
    assert "<|end_of_text|>" in processor.decode(ids + special, skip_special_tokens=False)


def test_decoding_removes_the_extra_space_of_a_lone_word_boundary_piece():
    # The model may emit the lone "▁" piece between words; the tokenizer decodes it to a second space.
    processor = GraniteSpeechNarProcessor.from_pretrained(TINY_SYNTH)
    tokenizer = processor.tokenizer
    lone = tokenizer.convert_tokens_to_ids("▁")
    assert tokenizer.convert_ids_to_tokens(lone) == "▁"
    ids = tokenizer("she horses little cup", add_special_tokens=False)["input_ids"]
    at = tokenizer.convert_ids_to_tokens(ids).index("▁little")
    between = ids[:at] + [lone] + ids[at:]
    assert tokenizer.decode(between) == "she horses  little cup"  # what the user saw
    assert processor.decode(between) == "she horses little cup"
    at_the_ends = [lone] + between + [lone, lone, tokenizer.eos_token_id]
    assert processor.decode(torch.tensor(at_the_ends)) == "she horses little cup"
    assert (
        processor.batch_decode([torch.tensor(between), np.array(at_the_ends), ids])
        == ["she horses little cup"] * 3
    )


def test_audio_without_a_sampling_rate_warns_once_naming_the_assumed_rate(processor):
    wave = waves([3200])[0]
    with pytest.warns(UserWarning) as caught:
        assumed = processor(wave)
    about_rate = [w for w in caught if "sampling_rate" in str(w.message)]
    assert len(about_rate) == 1, "the processor warns; the feature extractor behind it must not repeat it"
    assert str(about_rate[0].message) == (
        "GraniteSpeechNarProcessor was called without sampling_rate, so the audio is assumed to be at "
        "16000 Hz; pass sampling_rate=16000 to confirm it, and resample audio at other rates to 16000 Hz "
        "first (granite_nar.audio.resample_waveform), or the transcript will be wrong"
    )
    assert about_rate[0].filename == __file__  # points at the caller's line
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        given = processor(wave, sampling_rate=16000)
        processor(text="a cat")  # no audio, nothing to warn about
    assert torch.equal(assumed["input_features"], given["input_features"])


def test_numpy_outputs(processor):
    out = processor(waves([3200]), text="a cat", sampling_rate=16000, return_tensors="np")
    assert isinstance(out["input_features"], np.ndarray) and out["input_features"].shape == (1, 10, 160)
    assert isinstance(out["labels"], np.ndarray) and out["labels"].dtype == np.int64


def test_save_and_load_round_trip(processor, tmp_path):
    custom = GraniteSpeechNarProcessor(
        processor.feature_extractor, processor.tokenizer, blank_token="<|pad|>"
    )
    custom.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "processor_config.json").read_text())
    assert config["processor_class"] == "GraniteSpeechNarProcessor"
    for loader in (GraniteSpeechNarProcessor.from_pretrained, AutoProcessor.from_pretrained):
        loaded = loader(tmp_path)
        assert type(loaded) is GraniteSpeechNarProcessor
        assert loaded.blank_token == "<|pad|>" and loaded.blank_token_id == processor.tokenizer.pad_token_id
        audio = waves([5000, 3000], seed=3)
        assert torch.equal(
            loaded(audio, sampling_rate=16000)["input_features"],
            processor(audio, sampling_rate=16000)["input_features"],
        )
        text = "the old man feeds the birds"
        assert loaded(text=text)["labels"].tolist() == processor(text=text)["labels"].tolist()
    assert type(AutoFeatureExtractor.from_pretrained(tmp_path)) is GraniteSpeechNarFeatureExtractor


@pytest.fixture
def no_remote_code(monkeypatch):
    """Fail loudly if anything tries to import code from a checkpoint folder."""

    def refuse(*args, **kwargs):
        raise AssertionError("remote code was requested")

    import transformers.models.auto.feature_extraction_auto as fe_auto
    import transformers.models.auto.processing_auto as proc_auto

    monkeypatch.setattr(proc_auto, "get_class_from_dynamic_module", refuse)
    monkeypatch.setattr(fe_auto, "get_class_from_dynamic_module", refuse)


def test_auto_classes_load_the_original_layout_without_remote_code(no_remote_code):
    # preprocessor_config.json: feature_extractor_type, n_mels and an auto_map pointing at remote code.
    processor = AutoProcessor.from_pretrained(ORIGINAL)
    assert type(processor) is GraniteSpeechNarProcessor
    assert processor.feature_extractor.feature_size == 80
    assert processor.blank_token_id == 96  # <|end_of_text|>, the checkpoint's blank_token_id
    extractor = AutoFeatureExtractor.from_pretrained(ORIGINAL)
    assert type(extractor) is GraniteSpeechNarFeatureExtractor
    wave = waves([16000])[0]
    assert torch.equal(
        processor(wave, sampling_rate=16000)["input_features"],
        GraniteSpeechNarFeatureExtractor()(wave, sampling_rate=16000)["input_features"],
    )


def test_a_preprocessor_config_naming_the_processor_is_enough(tmp_path, no_remote_code):
    # No config.json: AutoProcessor must find the class from the name in preprocessor_config.json alone.
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(ORIGINAL / name, tmp_path / name)
    config = json.loads((ORIGINAL / "preprocessor_config.json").read_text())
    config.pop("auto_map")
    config["processor_class"] = "GraniteSpeechNarProcessor"
    (tmp_path / "preprocessor_config.json").write_text(json.dumps(config))
    assert type(AutoProcessor.from_pretrained(tmp_path)) is GraniteSpeechNarProcessor


@pytest.mark.parametrize(
    "removed, message",
    [
        (
            ("tokenizer.json", "tokenizer_config.json"),
            r"no tokenizer files .*tokenizer\.json.*save_pretrained",
        ),
        (
            ("processor_config.json",),
            r"no processor_config\.json or preprocessor_config\.json.*save_pretrained",
        ),
    ],
    ids=["tokenizer", "processor_config"],
)
def test_a_folder_missing_processor_files_names_them(tmp_path, removed, message):
    """transformers' own messages blame a missing sentencepiece/tiktoken or point at huggingface.co."""
    folder = tmp_path / "model"
    shutil.copytree(REPO / "examples" / "models" / "tiny-synth", folder)
    for name in removed:
        (folder / name).unlink()
    with pytest.raises(FileNotFoundError, match=message) as info:
        GraniteSpeechNarProcessor.from_pretrained(folder)
    assert str(folder) in str(info.value)
