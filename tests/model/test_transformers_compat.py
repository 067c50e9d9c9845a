"""transformers habits: from_pretrained arguments on both checkpoint layouts, outputs, forward arguments,
vocabulary resizing, the encoder as a model of its own, gradient-checkpointing options, and the feature
extractor's standard call arguments."""

from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import AutoModelForCTC

from granite_nar import GraniteSpeechNarFeatureExtractor, GraniteSpeechNarForCTC, GraniteSpeechNarModel
from granite_nar.checkpoints.conversion import convert_checkpoint
from granite_nar.checkpoints.original_layout import OriginalLayoutError
from granite_nar.model.modeling_encoder import GraniteSpeechNarEncoder
from granite_nar.testing import tiny_config
from granite_nar.testing.synthetic_checkpoint import write_synthetic_original_checkpoint


@pytest.fixture(scope="module")
def layouts(tmp_path_factory):
    """The same random bf16 checkpoint in the original layout and converted to the native one."""
    root = tmp_path_factory.mktemp("layouts")
    original = write_synthetic_original_checkpoint(root / "original", dtype=torch.bfloat16, seed=3)
    convert_checkpoint(original, root / "native")
    return {"original": original, "native": root / "native"}


def features(lengths=(40, 29), seed=0):
    g = torch.Generator().manual_seed(seed)
    feats = torch.randn(len(lengths), max(lengths), 160, generator=g)
    mask = torch.arange(max(lengths))[None, :] < torch.tensor(lengths)[:, None]
    return feats, mask


def same_weights(a, b) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


# -- 1. from_pretrained arguments mean the same on the original layout as on the native one ---------------


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"device_map": "auto"},
        {"device_map": "sequential"},
        {"device_map": "cpu"},
        {"device_map": {"": "cpu"}},
        {"dtype": torch.float32},
        {"dtype": "float32"},
        {"dtype": "auto"},
        {"min_edit_sequence_length": 3},
        {"attn_implementation": "eager"},
    ],
    ids=lambda kw: ",".join(f"{k}={v}" for k, v in kw.items()) or "defaults",
)
def test_original_and_native_folders_take_the_same_arguments(layouts, kwargs):
    original, info_o = GraniteSpeechNarForCTC.from_pretrained(
        layouts["original"], output_loading_info=True, **kwargs
    )
    native, info_n = GraniteSpeechNarForCTC.from_pretrained(
        layouts["native"], output_loading_info=True, **kwargs
    )
    assert info_o == info_n and not any(info_o.values())
    assert (original.dtype, original.device) == (native.dtype, native.device)
    assert getattr(original, "hf_device_map", None) == getattr(native, "hf_device_map", None)
    # Everything but ``architectures``, which only save_pretrained writes (the original lists the remote class).
    assert {**original.config.to_dict(), "architectures": None, "_name_or_path": None} == {
        **native.config.to_dict(),
        "architectures": None,
        "_name_or_path": None,
    }
    assert original.name_or_path == str(layouts["original"])
    assert original.config.min_edit_sequence_length == kwargs.get("min_edit_sequence_length", 8)
    assert same_weights(original, native)
    assert original.lm_head.weight is original.model.language_model.embed_tokens.weight


def test_auto_class_and_config_argument_on_the_original_layout(layouts):
    config = GraniteSpeechNarForCTC.config_class.from_pretrained(layouts["original"])
    config.min_edit_sequence_length = 5
    model = AutoModelForCTC.from_pretrained(layouts["original"], device_map="auto", config=config)
    assert isinstance(model, GraniteSpeechNarForCTC) and model.config.min_edit_sequence_length == 5
    base = GraniteSpeechNarModel.from_pretrained(layouts["original"], dtype=torch.float32)
    full = GraniteSpeechNarForCTC.from_pretrained(layouts["native"], dtype=torch.float32)
    assert same_weights(base, full.model)


def test_the_original_layout_stays_strict(layouts, tmp_path):
    """A tensor the model does not have is named, never dropped silently."""
    from safetensors.torch import load_file, save_file

    broken = tmp_path / "broken"
    broken.mkdir()
    for path in Path(layouts["original"]).iterdir():
        (broken / path.name).write_bytes(path.read_bytes())
    tensors = load_file(broken / "model.safetensors")
    tensors["encoder.extra.weight"] = torch.zeros(2)
    save_file(tensors, broken / "model.safetensors")
    with pytest.raises(OriginalLayoutError, match="encoder.extra.weight"):
        GraniteSpeechNarForCTC.from_pretrained(broken)


# -- 2. a model split or offloaded by device_map runs --------------------------------------------------------


def test_offloaded_editor_runs_and_gives_the_same_transcripts(tmp_path):
    torch.manual_seed(0)
    model = GraniteSpeechNarForCTC(tiny_config()).eval()
    model.save_pretrained(tmp_path / "m")
    feats, mask = features()
    expected = [t.tolist() for t in model.generate(feats, mask)]
    device_map = {
        "model.encoder": "cpu",
        "model.projector": "cpu",
        "model.out_bpe": "cpu",
        "model.language_model": "disk",
        "lm_head": "disk",
    }
    offloaded = GraniteSpeechNarForCTC.from_pretrained(
        tmp_path / "m", device_map=device_map, offload_folder=str(tmp_path / "offload")
    ).eval()
    assert offloaded.model.language_model.embed_tokens.weight.device.type == "meta"
    assert [t.tolist() for t in offloaded.generate(feats, mask)] == expected


# -- 3. return_dict and output_hidden_states follow the arguments, then the config ----------------------------


@pytest.fixture
def model():
    torch.manual_seed(0)
    return GraniteSpeechNarForCTC(tiny_config()).eval()


def test_return_dict_false_gives_the_output_as_a_tuple(model):
    feats, mask = features()
    as_dict = model(feats, mask)
    as_tuple = model(feats, mask, return_dict=False)
    assert isinstance(as_tuple, tuple)
    assert torch.equal(as_tuple[0], as_dict.logits)  # no loss: logits come first
    model.config.return_dict = False
    assert isinstance(model(feats, mask), tuple) and isinstance(model.model(feats, mask), tuple)
    assert not isinstance(model(feats, mask, return_dict=True), tuple)


def test_config_output_hidden_states_is_the_default(model):
    feats, mask = features()
    assert model(feats, mask).hidden_states is None
    model.config.output_hidden_states = True
    states = model(feats, mask).hidden_states
    assert len(states) == model.config.text_config.num_hidden_layers + 1
    assert model(feats, mask, output_hidden_states=False).hidden_states is None


# -- 4. forward arguments: conventional names accepted, the rest refused ---------------------------------------


def test_attention_mask_is_the_feature_mask(model):
    feats, mask = features()
    feats[~mask] = 100.0  # garbage that would change the transcript if it were taken for speech
    by_name = model(feats, input_features_mask=mask).logits
    conventional = model(feats, attention_mask=mask).logits
    assert torch.equal(by_name, conventional)
    assert not torch.equal(model(feats).logits, by_name)  # without a mask the padding counts as speech
    ids = model.generate(feats, attention_mask=mask)
    assert [t.tolist() for t in ids] == [t.tolist() for t in model.generate(feats, mask)]
    with pytest.raises(ValueError, match="disagree"):
        model(feats, input_features_mask=mask, attention_mask=torch.ones_like(mask))


def test_unsupported_and_unknown_arguments_are_refused(model):
    feats, mask = features()
    with pytest.raises(ValueError, match="output_attentions"):
        model(feats, mask, output_attentions=True)
    with pytest.raises(ValueError, match="output_attentions"):
        model.model.encoder(feats, mask, output_attentions=True)
    with pytest.raises(TypeError, match="feature_mask"):
        model(feats, feature_mask=mask)
    with pytest.raises(TypeError, match="input_mask"):
        model.model(feats, input_mask=mask)
    assert model(feats, mask, output_attentions=False).logits is not None


# -- 5. resize_token_embeddings keeps the two vocabularies equal ------------------------------------------------


def test_resize_token_embeddings_resizes_the_bpe_head_and_reloads(model, tmp_path):
    feats, mask = features()
    before = model.generate(feats, mask, num_editing_steps=0)
    model.resize_token_embeddings(70)
    cfg = model.config
    assert cfg.text_config.vocab_size == cfg.encoder_config.vocabulary_size == 70
    assert model.model.out_bpe.weight.shape[0] == model.lm_head.weight.shape[0] == 70
    assert model.lm_head.weight is model.model.language_model.embed_tokens.weight
    # Old rows are kept: the drafts of the old vocabulary come out unchanged.
    assert [t.tolist() for t in model.generate(feats, mask, num_editing_steps=0)] == [
        t.tolist() for t in before
    ]
    model.save_pretrained(tmp_path / "resized")
    again = GraniteSpeechNarForCTC.from_pretrained(tmp_path / "resized").eval()
    assert [t.tolist() for t in again.generate(feats, mask)] == [
        t.tolist() for t in model.generate(feats, mask)
    ]
    with pytest.raises(ValueError, match="blank"):
        model.resize_token_embeddings(cfg.blank_token_id)


# -- 6. the encoder is a model of its own ------------------------------------------------------------------------


def test_encoder_saves_loads_and_selects_its_attention_backend(model, tmp_path):
    encoder = model.model.encoder
    assert isinstance(encoder, GraniteSpeechNarEncoder)
    encoder.save_pretrained(tmp_path / "encoder")
    loaded = GraniteSpeechNarEncoder.from_pretrained(tmp_path / "encoder").eval()
    assert loaded.num_parameters() == encoder.num_parameters() > 0
    assert same_weights(loaded, encoder)
    feats, mask = features()
    assert torch.equal(loaded(feats, mask).last_hidden_state, encoder(feats, mask).last_hidden_state)
    eager = GraniteSpeechNarEncoder.from_pretrained(tmp_path / "encoder", attn_implementation="eager").eval()
    assert eager.config._attn_implementation == "eager"
    torch.testing.assert_close(
        eager(feats, mask).last_hidden_state, encoder(feats, mask).last_hidden_state, atol=1e-5, rtol=1e-5
    )


def test_attn_implementation_reaches_every_sub_config(tmp_path, model):
    model.save_pretrained(tmp_path / "m")
    eager = GraniteSpeechNarForCTC.from_pretrained(tmp_path / "m", attn_implementation="eager")
    cfg = eager.config
    assert {"encoder_config", "projector_config", "text_config"} <= set(cfg.sub_configs)
    assert cfg.encoder_config._attn_implementation == cfg.text_config._attn_implementation == "eager"
    assert cfg.projector_config._attn_implementation == "eager"
    eager.set_attn_implementation("sdpa")
    assert cfg.encoder_config._attn_implementation == cfg.text_config._attn_implementation == "sdpa"
    feats, mask = features()
    sdpa = GraniteSpeechNarForCTC.from_pretrained(tmp_path / "m", attn_implementation="sdpa").eval()
    eager = GraniteSpeechNarForCTC.from_pretrained(tmp_path / "m", attn_implementation="eager").eval()
    torch.testing.assert_close(eager(feats, mask).logits, sdpa(feats, mask).logits, atol=1e-5, rtol=1e-5)


# -- 7. gradient_checkpointing_kwargs reach the encoder ----------------------------------------------------------


@pytest.mark.parametrize("use_reentrant", [True, False])
def test_gradient_checkpointing_kwargs_reach_the_encoder(use_reentrant):
    torch.manual_seed(0)
    model = GraniteSpeechNarForCTC(tiny_config()).train()
    feats, mask = features()
    labels = torch.tensor([[3, 4, 5], [6, 7, -100]])

    def grads():
        model.zero_grad()
        model(feats, mask, labels=labels).loss.backward()
        return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

    plain = grads()
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": use_reentrant})
    layers = model.model.encoder.layers
    assert all(layer.gradient_checkpointing for layer in layers)
    assert all(
        layer._gradient_checkpointing_func.keywords["use_reentrant"] is use_reentrant for layer in layers
    )
    checkpointed = grads()
    assert plain.keys() == checkpointed.keys()
    for name, grad in plain.items():
        torch.testing.assert_close(checkpointed[name], grad, atol=1e-6, rtol=1e-5, msg=name)


# -- 8. the feature extractor's standard call arguments -----------------------------------------------------------


@pytest.fixture(scope="module")
def waves():
    g = np.random.default_rng(0)
    return [
        0.1 * g.standard_normal(16000).astype(np.float32),
        0.1 * g.standard_normal(8000).astype(np.float32),
    ]


def test_feature_extractor_padding_and_truncation(waves):
    fe = GraniteSpeechNarFeatureExtractor()
    longest = fe(waves, padding=True)
    assert longest["input_features"].shape[1] == 50 and longest["input_features_mask"].sum(1).tolist() == [
        50,
        25,
    ]
    padded = fe(waves, padding="max_length", max_length=64)
    assert padded["input_features"].shape[1] == 64
    assert torch.equal(padded["input_features"][:, :50], longest["input_features"])
    assert padded["input_features_mask"].sum(1).tolist() == [50, 25]
    assert fe(waves, pad_to_multiple_of=16)["input_features"].shape[1] == 64
    cut = fe(waves, truncation=True, max_length=30)
    assert cut["input_features"].shape[1] == 30 and cut["input_features_mask"].sum(1).tolist() == [30, 25]
    alone = fe([waves[0][: 30 * 320]])  # truncation cuts the waveform: the features of the shorter clip
    assert torch.equal(cut["input_features"][0], alone["input_features"][0])
    assert list(fe(waves, return_attention_mask=False)) == ["input_features"]
    assert list(fe(waves[:1], padding=False)) == ["input_features", "input_features_mask"]


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"padding": False}, "padding=False cannot batch"),
        ({"padding": "max_length"}, "needs max_length"),
        ({"truncation": True}, "needs max_length"),
        ({"padding": "max_length", "max_length": 10}, "more than max_length"),
        ({"padding": "everything"}, "padding must be"),
        ({"pad_to_multiple_of": 0}, "pad_to_multiple_of"),
    ],
)
def test_feature_extractor_refuses_what_it_cannot_honour(waves, kwargs, message):
    with pytest.raises(ValueError, match=message):
        GraniteSpeechNarFeatureExtractor()(waves, **kwargs)
