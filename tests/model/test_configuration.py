"""``granite_nar.model.configuration_granite_speech_nar``: released-checkpoint defaults, cross-field validation,
JSON round trip, original field names, a wrong ``model_type`` refused and unknown fields warned about; and the
model testers, which must give ``tiny_config()``."""

import json
import warnings

import pytest
import torch
from testers import (
    FIXTURES,
    REPO,
    GraniteSpeechNarEditorModelTester,
    GraniteSpeechNarEncoderModelTester,
    GraniteSpeechNarForCTCModelTester,
    GraniteSpeechNarProjectorModelTester,
)
from transformers import AutoConfig

from granite_nar import (
    GraniteSpeechNarConfig,
    GraniteSpeechNarEncoderConfig,
    GraniteSpeechNarForCTC,
    GraniteSpeechNarProjectorConfig,
    GraniteSpeechNarTextConfig,
    UnknownConfigFieldWarning,
)
from granite_nar.testing import tiny_config


def test_defaults_are_the_released_checkpoint():
    cfg = GraniteSpeechNarConfig()
    enc, proj, text = cfg.encoder_config, cfg.projector_config, cfg.text_config
    assert (enc.input_dim, enc.num_layers, enc.hidden_dim, enc.num_heads, enc.dim_head) == (
        160,
        16,
        1024,
        8,
        128,
    )
    assert (enc.feedforward_mult, enc.conv_kernel_size, enc.conv_expansion_factor) == (4, 15, 2)
    assert (enc.context_size, enc.max_pos_emb, enc.output_dim, enc.self_conditioning_layer) == (
        200,
        512,
        348,
        8,
    )
    assert (enc.vocabulary_size, enc.pooling_window, enc.cat_hidden_layers) == (100352, 4, [4, 8, 12])
    assert enc.export_after_self_conditioning is True
    assert (proj.hidden_size, proj.intermediate_size, proj.num_hidden_layers, proj.num_attention_heads) == (
        2048,
        4096,
        2,
        32,
    )
    assert (proj.window_size, proj.downsample_rate, proj.layer_norm_eps, proj.attention_bias) == (
        15,
        5,
        1e-6,
        True,
    )
    assert proj.encoder_hidden_size == 4096 and proj.hidden_act == "silu"
    assert (text.vocab_size, text.hidden_size, text.intermediate_size, text.num_hidden_layers) == (
        100352,
        2048,
        4096,
        40,
    )
    assert (text.num_attention_heads, text.num_key_value_heads, text.rms_norm_eps) == (16, 4, 1e-5)
    assert (
        text.embedding_multiplier,
        text.attention_multiplier,
        text.residual_multiplier,
        text.logits_scaling,
    ) == (
        12.0,
        0.0078125,
        0.22,
        8.0,
    )
    assert text.rope_parameters["rope_theta"] == 10000.0 and text.tie_word_embeddings
    assert (text.pad_token_id, text.eos_token_id) == (100256, 100257)
    assert (cfg.blank_token_id, cfg.min_edit_sequence_length, cfg.scale_projected_embeddings) == (
        100257,
        8,
        True,
    )
    assert (cfg.ce_loss_lambda, cfg.encoder_ctc_loss_lambda) == (0.0, 0.0)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (
            {"projector_config": {"window_size": 16}},
            r"window_size \(16\) must be a multiple of downsample_rate \(5\)",
        ),
        (
            {"projector_config": {"encoder_hidden_size": 3072}},
            r"encoder_hidden_size \(3072\) must equal encoder hidden_dim \(1024\) \* \(len\(cat_hidden_layers\) \+ 1\) = 4096",
        ),
        (
            {"projector_config": {"hidden_size": 1024, "num_attention_heads": 16}},
            r"hidden_size \(1024\) must equal text_config.hidden_size \(2048\)",
        ),
        (
            {"encoder_config": {"vocabulary_size": 100353}},
            r"vocabulary_size \(100353\) must equal text_config.vocab_size \(100352\)",
        ),
        ({"blank_token_id": 100352}, r"blank_token_id \(100352\) must lie inside the vocabulary"),
        (
            {"encoder_config": {"context_size": 600}},
            r"context_size \(600\) must be in 1..max_pos_emb \(512\)",
        ),
        (
            {"encoder_config": {"cat_hidden_layers": [4, 17]}},
            r"cat_hidden_layers entry 17 is outside 0..num_layers \(16\)",
        ),
    ],
)
def test_inconsistent_fields_name_both_values(kwargs, message):
    with pytest.raises(ValueError, match=message):
        GraniteSpeechNarConfig(**kwargs)


def test_json_round_trip(tmp_path):
    cfg = GraniteSpeechNarForCTCModelTester(ce_loss_lambda=0.25, min_edit_sequence_length=3).get_config()
    cfg.save_pretrained(tmp_path)
    loaded = GraniteSpeechNarConfig.from_pretrained(tmp_path)
    for key in ("encoder_config", "projector_config", "text_config"):
        assert type(getattr(loaded, key)) is type(getattr(cfg, key))
        assert getattr(loaded, key).to_dict() == getattr(cfg, key).to_dict()
    assert (loaded.ce_loss_lambda, loaded.min_edit_sequence_length) == (0.25, 3)
    assert isinstance(loaded.text_config, GraniteSpeechNarTextConfig)
    assert json.loads((tmp_path / "config.json").read_text())["model_type"] == "granite_speech_nar"


def test_sub_configs_stand_alone():
    assert GraniteSpeechNarEncoderConfig(num_layers=6).self_conditioning_layer == 3
    assert GraniteSpeechNarProjectorConfig().num_queries == 3
    with pytest.raises(ValueError, match="num_key_value_heads"):
        GraniteSpeechNarProjectorConfig(num_key_value_heads=8)


def test_original_config_fields_are_mapped():
    original = json.loads((FIXTURES / "reference_tiny/original/config.json").read_text())
    cfg = GraniteSpeechNarConfig.from_dict(original)
    assert cfg.encoder_config.vocabulary_size == original["encoder_config"]["bpe_output_dim"]
    assert cfg.encoder_config.pooling_window == original["encoder_config"]["bpe_pooling_window"]
    assert cfg.encoder_config.cat_hidden_layers == [1, 2, 3]  # encoder_layer_indices [1, 2, 3, -1]
    assert cfg.projector_config.window_size == original["projector_config"]["block_size"]
    assert cfg.projector_config.intermediate_size == 48 * 2  # hidden_size * mlp_ratio
    assert cfg.projector_config.num_attention_heads == original["projector_config"]["num_heads"]
    assert cfg.text_config.model_type == "granite_speech_nar_text"
    assert cfg.min_edit_sequence_length == 8


# -- the model testers --------------------------------------------------------------------------------------

THREE_LAYERS = {"num_layers": 3, "cat_hidden_layers": [1, 2], "self_conditioning_layer": 2}
UNIT_MULTIPLIERS = dict(
    attention_multiplier=1.0, residual_multiplier=1.0, embedding_multiplier=1.0, logits_scaling=1.0
)


@pytest.mark.parametrize(
    ("tester_kwargs", "tiny_kwargs"),
    [
        ({}, {}),
        ({"encoder_kwargs": THREE_LAYERS}, {"encoder": THREE_LAYERS}),
        (
            {"text_kwargs": UNIT_MULTIPLIERS, "scale_projected_embeddings": False},
            {"text": UNIT_MULTIPLIERS, "scale_projected_embeddings": False},
        ),
        (
            {
                "projector_kwargs": {"num_hidden_layers": 2},
                "ce_loss_lambda": 0.5,
                "min_edit_sequence_length": 1,
            },
            {"projector": {"num_hidden_layers": 2}, "ce_loss_lambda": 0.5, "min_edit_sequence_length": 1},
        ),
        (
            {"vocab_size": 97, "blank_token_id": 96, "pad_token_id": 0},
            {"vocab_size": 97, "blank_token_id": 96, "pad_token_id": 0},
        ),
    ],
    ids=["defaults", "encoder", "text_and_top_level", "projector", "vocabulary"],
)
def test_model_tester_composes_tiny_config(tester_kwargs, tiny_kwargs):
    """The full-model tester, composed from the sub-testers, gives ``tiny_config()`` field for field."""
    config = GraniteSpeechNarForCTCModelTester(**tester_kwargs).get_config()
    expected = tiny_config(**tiny_kwargs)
    assert config.to_dict() == expected.to_dict()
    for key in ("encoder_config", "projector_config", "text_config"):
        assert type(getattr(config, key)) is type(getattr(expected, key))


def test_sub_model_testers_give_the_tiny_sub_configs():
    tiny = tiny_config()
    assert GraniteSpeechNarEncoderModelTester().get_config().to_dict() == tiny.encoder_config.to_dict()
    assert GraniteSpeechNarProjectorModelTester().get_config().to_dict() == tiny.projector_config.to_dict()
    assert GraniteSpeechNarEditorModelTester().get_config().to_dict() == tiny.text_config.to_dict()


# -- configs read from a dict or a folder: wrong model_type refused, unknown fields warned about -------------

SUB_CONFIGS = {
    "encoder_config": GraniteSpeechNarEncoderConfig,
    "projector_config": GraniteSpeechNarProjectorConfig,
    "text_config": GraniteSpeechNarTextConfig,
}


def _saved(tmp_path, edit=None):
    """A native config.json (as save_pretrained writes it), optionally edited, in ``tmp_path``."""
    tiny_config().save_pretrained(tmp_path)
    if edit is not None:
        config = json.loads((tmp_path / "config.json").read_text())
        edit(config)
        (tmp_path / "config.json").write_text(json.dumps(config))
    return tmp_path


@pytest.mark.parametrize("load", ["from_dict", "from_pretrained", "model"])
def test_another_models_config_is_refused(load, tmp_path):
    folder = _saved(tmp_path, lambda c: c.__setitem__("model_type", "wav2vec2"))
    with pytest.raises(ValueError) as info:
        if load == "from_dict":
            GraniteSpeechNarConfig.from_dict(json.loads((folder / "config.json").read_text()))
        elif load == "from_pretrained":
            GraniteSpeechNarConfig.from_pretrained(folder)
        else:
            GraniteSpeechNarForCTC.from_pretrained(folder)
    message = str(info.value)
    assert "model_type is 'wav2vec2', expected 'granite_speech_nar'" in message
    assert "point at a Granite Speech NAR checkpoint" in message
    if load != "from_dict":
        assert message.startswith(f"{folder / 'config.json'}: ")


@pytest.mark.parametrize("key", sorted(SUB_CONFIGS))
def test_wrong_sub_config_model_type_is_refused(key, tmp_path):
    folder = _saved(tmp_path, lambda c: c[key].__setitem__("model_type", "bert"))
    with pytest.raises(ValueError) as info:
        GraniteSpeechNarConfig.from_pretrained(folder)
    expected = SUB_CONFIGS[key].model_type
    assert str(info.value).startswith(
        f"{folder / 'config.json'}: {key}.model_type is 'bert', expected {expected!r}"
    )
    with pytest.raises(ValueError, match=rf"{key}\.model_type is 'bert', expected '{expected}'"):
        GraniteSpeechNarConfig(**{key: {"model_type": "bert"}})  # a dict given in Python, too


@pytest.mark.parametrize("cls", [GraniteSpeechNarConfig, *SUB_CONFIGS.values()])
def test_sub_config_classes_refuse_another_model_type(cls):
    with pytest.raises(ValueError, match=rf"model_type is 'wav2vec2', expected '{cls.model_type}'"):
        cls.from_dict({"model_type": "wav2vec2"})


def test_unknown_fields_warn_naming_each_field_and_still_load(tmp_path):
    def edit(config):
        config["use_magic"] = True
        config["encoder_config"]["num_experts"] = 4
        config["text_config"]["sliding_window"] = 128

    folder = _saved(tmp_path, edit)
    with pytest.warns(UnknownConfigFieldWarning) as record:
        config = GraniteSpeechNarConfig.from_pretrained(folder)
    assert len(record) == 1
    message = str(record[0].message)
    assert message.startswith(f"{folder / 'config.json'}: unknown config fields ")
    for name in ("'use_magic'", "'encoder_config.num_experts'", "'text_config.sliding_window'"):
        assert name in message
    assert "upgrade granite_nar" in message and "remove them from the file" in message
    assert config.use_magic is True  # kept as an attribute, as transformers does
    with pytest.warns(
        UnknownConfigFieldWarning,
        match=r"^config dict: unknown config field 'gate' for 'granite_speech_nar_projector'.*kept as an attribute",
    ):
        GraniteSpeechNarProjectorConfig.from_dict({"gate": 1})


def test_saved_configs_load_without_warnings(tmp_path):
    """Everything transformers and granite_nar write (bookkeeping keys, dtype, architectures, the demo marker,
    output_hidden_states, an attention backend) loads back without a warning."""
    config = tiny_config()
    config.output_hidden_states = True
    config.granite_nar_random_demo = True
    model = GraniteSpeechNarForCTC(config).to(torch.bfloat16)
    model.save_pretrained(tmp_path / "model")
    folders = [
        tmp_path / "model",
        REPO / "examples" / "models" / "tiny-synth",
        FIXTURES / "reference_tiny/original",
    ]
    with warnings.catch_warnings():
        warnings.simplefilter("error", UnknownConfigFieldWarning)
        for folder in folders:
            GraniteSpeechNarConfig.from_pretrained(folder)
            AutoConfig.from_pretrained(folder)
        loaded = GraniteSpeechNarForCTC.from_pretrained(tmp_path / "model", attn_implementation="eager")
        loaded.save_pretrained(tmp_path / "again")
        GraniteSpeechNarForCTC.from_pretrained(tmp_path / "again")
        for cls in SUB_CONFIGS.values():
            assert type(cls.from_pretrained(tmp_path / "again")) is cls
    assert loaded.config.granite_nar_random_demo is True and loaded.config.output_hidden_states is True
