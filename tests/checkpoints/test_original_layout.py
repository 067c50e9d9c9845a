"""``granite_nar.checkpoints.original_layout``: the original (remote-code) names and their mapping onto the
native layout: config fields, the full-size tensor names (checked on the ``meta`` device, docs/reference_behaviour.md §6.2) and the
feature-extractor fields. Plain dicts and names: no checkpoint is read here."""

from __future__ import annotations

import json

import pytest
import torch
from testers import FIXTURES, GraniteSpeechNarForCTCModelTester

from granite_nar import GraniteSpeechNarConfig, GraniteSpeechNarForCTC
from granite_nar.checkpoints.original_layout import (
    OriginalLayoutError,
    convert_config_dict,
    convert_preprocessor_config,
    rename_key,
)
from granite_nar.testing.synthetic_checkpoint import original_config_dict, original_tensor_names

REF = FIXTURES / "reference_tiny"
model_tester = GraniteSpeechNarForCTCModelTester()


# --------------------------------------------------------------------------------------------------------
# Config fields


def test_original_config_round_trip():
    config = model_tester.get_config()
    back = GraniteSpeechNarConfig(**convert_config_dict(original_config_dict(config)))
    for key in ("encoder_config", "projector_config", "text_config"):
        assert getattr(back, key).to_dict() == getattr(config, key).to_dict(), key
    assert back.blank_token_id == config.blank_token_id
    assert back.min_edit_sequence_length == config.min_edit_sequence_length


def test_original_config_with_unknown_field_is_refused():
    original = json.loads((FIXTURES / "reference_tiny/original/config.json").read_text())
    original["encoder_config"]["mystery"] = 1
    with pytest.raises(OriginalLayoutError, match=r"unknown field encoder_config.mystery"):
        convert_config_dict(original)
    original = json.loads((FIXTURES / "reference_tiny/original/config.json").read_text())
    original["llm_config"] = original.pop("text_config")
    with pytest.raises(OriginalLayoutError, match="99a4df9"):
        convert_config_dict(original)


# --------------------------------------------------------------------------------------------------------
# Full-size name mapping (meta device, no weights)


def _spec_original_names() -> dict[str, tuple[int, ...]]:
    """The 946 names and shapes of docs/reference_behaviour.md §6.2, written out from that listing, independently
    of the code."""
    names: dict[str, tuple[int, ...]] = {
        "encoder.input_linear.weight": (1024, 160),
        "encoder.input_linear.bias": (1024,),
    }
    for i in range(16):
        p = f"encoder.layers.{i}."
        for ff in ("ff1", "ff2"):
            names |= {
                f"{p}{ff}.pre_norm.weight": (1024,),
                f"{p}{ff}.pre_norm.bias": (1024,),
                f"{p}{ff}.up_proj.weight": (4096, 1024),
                f"{p}{ff}.up_proj.bias": (4096,),
                f"{p}{ff}.down_proj.weight": (1024, 4096),
                f"{p}{ff}.down_proj.bias": (1024,),
            }
        names |= {
            f"{p}attn.pre_norm.weight": (1024,),
            f"{p}attn.pre_norm.bias": (1024,),
            f"{p}attn.to_q.weight": (1024, 1024),
            f"{p}attn.to_kv.weight": (2048, 1024),
            f"{p}attn.to_out.weight": (1024, 1024),
            f"{p}attn.to_out.bias": (1024,),
            f"{p}attn.rel_pos_emb.weight": (1025, 128),
            f"{p}conv.norm.weight": (1024,),
            f"{p}conv.norm.bias": (1024,),
            f"{p}conv.up_conv.weight": (4096, 1024, 1),
            f"{p}conv.up_conv.bias": (4096,),
            f"{p}conv.depth_conv.conv.weight": (2048, 1, 15),
            f"{p}conv.batch_norm.num_batches_tracked": (),
            f"{p}conv.down_conv.weight": (1024, 2048, 1),
            f"{p}conv.down_conv.bias": (1024,),
            f"{p}post_norm.weight": (1024,),
            f"{p}post_norm.bias": (1024,),
        }
        names |= {
            f"{p}conv.batch_norm.{k}": (2048,) for k in ("weight", "bias", "running_mean", "running_var")
        }
    names |= {
        "encoder.out.weight": (348, 1024),
        "encoder.out.bias": (348,),
        "encoder.out_mid.weight": (1024, 348),
        "encoder.out_mid.bias": (1024,),
        "encoder.out_bpe.weight": (100352, 1024),
        "encoder.out_bpe.bias": (100352,),
    }
    names |= {f"projector.layer_norms.{i}.{k}": (1024,) for i in range(4) for k in ("weight", "bias")}
    names |= {"projector.layer_projector.weight": (2048, 4096), "projector.layer_projector.bias": (2048,)}
    for j in range(2):
        p = f"projector.qformer.layers.{j}."
        names |= {f"{p}{n}.{k}": (2048,) for n in ("attn_norm", "mlp_norm") for k in ("weight", "bias")}
        for proj in "qkvo":
            names |= {
                f"{p}cross_attention.{proj}_proj.weight": (2048, 2048),
                f"{p}cross_attention.{proj}_proj.bias": (2048,),
            }
        names |= {
            f"{p}mlp.fc1.weight": (4096, 2048),
            f"{p}mlp.fc1.bias": (4096,),
            f"{p}mlp.fc2.weight": (2048, 4096),
            f"{p}mlp.fc2.bias": (2048,),
        }
    names |= {
        "projector.query": (1, 3, 2048),
        "projector.window_positions": (1, 15, 2048),
        "projector.out_norm.weight": (2048,),
        "projector.out_norm.bias": (2048,),
        "projector.out_linear.weight": (2048, 2048),
        "projector.out_linear.bias": (2048,),
    }
    names["language_model.model.embed_tokens.weight"] = (100352, 2048)
    for k in range(40):
        p = f"language_model.model.layers.{k}."
        names |= {
            f"{p}input_layernorm.weight": (2048,),
            f"{p}self_attn.q_proj.weight": (2048, 2048),
            f"{p}self_attn.k_proj.weight": (512, 2048),
            f"{p}self_attn.v_proj.weight": (512, 2048),
            f"{p}self_attn.o_proj.weight": (2048, 2048),
            f"{p}post_attention_layernorm.weight": (2048,),
            f"{p}mlp.gate_proj.weight": (4096, 2048),
            f"{p}mlp.up_proj.weight": (4096, 2048),
            f"{p}mlp.down_proj.weight": (2048, 4096),
        }
    names["language_model.model.norm.weight"] = (2048,)
    return names


def test_full_size_original_names_map_one_to_one_onto_native_names():
    spec = _spec_original_names()
    by_part = {
        part: sum(n.startswith(part) for n in spec) for part in ("encoder.", "projector.", "language_model.")
    }
    assert len(spec) == 946 and by_part == {"encoder.": 536, "projector.": 48, "language_model.": 362}

    generated = original_tensor_names(GraniteSpeechNarConfig())  # from the native model on meta
    assert {name: shape for name, (_, shape) in generated.items()} == spec

    with torch.device("meta"):
        model = GraniteSpeechNarForCTC(GraniteSpeechNarConfig())
    native = {k: tuple(v.shape) for k, v in model.state_dict().items() if k != "lm_head.weight"}
    mapped = {name: rename_key(name) for name in spec}
    dropped = sorted(name for name, target in mapped.items() if target is None)
    # 4 per-layer norms + out_norm + 2 Q-Former layers x (attn_norm, mlp_norm), each weight and bias.
    assert len(dropped) == (4 + 1 + 2 * 2) * 2 == 18
    assert all(".layer_norms." in n or ".out_norm." in n or "_norm." in n for n in dropped)
    kept = {name: target for name, target in mapped.items() if target is not None}
    assert len(set(kept.values())) == len(kept) == 946 - 18 == 928  # one-to-one
    assert set(kept.values()) == set(native)
    assert all(spec[name] == native[target] for name, target in kept.items())
    assert sum(".batch_norm." in n for n in native) == 16 * 5  # BatchNorm statistics travel as tensors too

    spot = {
        "encoder.out_bpe.weight": "model.out_bpe.weight",
        "encoder.layers.15.conv.depth_conv.conv.weight": "model.encoder.layers.15.conv.depth_conv.conv.weight",
        "projector.layer_projector.bias": "model.projector.proj.bias",
        "projector.out_linear.weight": "model.projector.qformer.linear.weight",
        "projector.query": "model.projector.qformer.queries",
        "projector.window_positions": "model.projector.qformer.pos_emb",
        "projector.qformer.layers.1.cross_attention.o_proj.bias": "model.projector.qformer.layers.1.cross_attn.o_proj.bias",
        "projector.qformer.layers.0.mlp.fc2.weight": "model.projector.qformer.layers.0.mlp.fc2.weight",
        "language_model.model.layers.39.mlp.down_proj.weight": "model.language_model.layers.39.mlp.down_proj.weight",
        "language_model.model.embed_tokens.weight": "model.language_model.embed_tokens.weight",
        "language_model.lm_head.weight": "lm_head.weight",
    }
    assert {name: rename_key(name) for name in spot} == spot


# --------------------------------------------------------------------------------------------------------
# Processor files


def test_preprocessor_config_conversion():
    original = json.loads((REF / "original" / "preprocessor_config.json").read_text())
    native = convert_preprocessor_config(original)
    assert native["feature_size"] == 80 and native["frame_stacking"] == 2
    assert "n_mels" not in native and "auto_map" not in native
    with pytest.raises(OriginalLayoutError, match=r"unknown field\(s\) \['dither'\]"):
        convert_preprocessor_config({**original, "dither": 1.0})
    with pytest.raises(OriginalLayoutError, match="n_mels=80 and feature_size=128"):
        convert_preprocessor_config({**original, "feature_size": 128})
