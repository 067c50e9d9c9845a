"""The original (remote-code) checkpoint layout and its mapping to the native layout (docs/reference_behaviour.md §6).

The Hub checkpoint ``ibm-granite/granite-speech-4.1-2b-nar`` stores its weights under the remote
code's module names and its config under the remote code's field names. This module is the one place
that knows those names: the rename tables (tensors, config fields, feature-extractor fields), the
functions that apply them to a config dict or a state dict, and the checks that make dropping tensors
safe. It works on plain dicts and tensors and imports no model code; reading folders and building a
model is :mod:`granite_nar.checkpoints.loading`.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import torch

__all__ = [
    "STATE_DICT_RENAMES",
    "DROPPED_IDENTITY_NORMS",
    "is_original_config",
    "convert_config_dict",
    "convert_state_dict",
    "OriginalLayoutError",
    "CheckpointFileError",
    "read_config",
    "convert_preprocessor_config",
    "native_feature_extractor_kwargs",
]


class OriginalLayoutError(ValueError):
    """The original checkpoint cannot be mapped onto the native layout faithfully."""


class CheckpointFileError(OSError):
    """A file of a checkpoint folder is missing, truncated or unreadable (the message names it)."""


# Tensor renames, applied in order, first match wins (docs/reference_behaviour.md §6.4).
STATE_DICT_RENAMES: list[tuple[str, str]] = [
    (r"^language_model\.model\.", "model.language_model."),
    (r"^language_model\.lm_head\.", "lm_head."),
    (r"^encoder\.out_bpe\.", "model.out_bpe."),
    (r"^encoder\.", "model.encoder."),
    (r"^projector\.layer_projector\.", "model.projector.proj."),
    (r"^projector\.out_linear\.", "model.projector.qformer.linear."),
    (r"^projector\.query$", "model.projector.qformer.queries"),
    (r"^projector\.window_positions$", "model.projector.qformer.pos_emb"),
    (
        r"^projector\.qformer\.layers\.(\d+)\.cross_attention\.",
        r"model.projector.qformer.layers.\1.cross_attn.",
    ),
    (r"^projector\.qformer\.layers\.(\d+)\.mlp\.", r"model.projector.qformer.layers.\1.mlp."),
]

# Projector LayerNorm affines: the native LayerNorms are parameter-free, so these are dropped, but only
# after checking that they are exactly the identity (weight 1, bias 0).
DROPPED_IDENTITY_NORMS = re.compile(
    r"^projector\.(layer_norms\.\d+|out_norm|qformer\.layers\.\d+\.(attn_norm|mlp_norm))\.(weight|bias)$"
)

# The original config.json's model_type (the same name as the native one).
ORIGINAL_MODEL_TYPE = "granite_speech_nar"

# Config fields: original name -> native name (None: dropped after the check in convert_config_dict).
ENCODER_FIELDS = {
    "input_dim": "input_dim",
    "num_layers": "num_layers",
    "hidden_dim": "hidden_dim",
    "feedforward_mult": "feedforward_mult",
    "num_heads": "num_heads",
    "dim_head": "dim_head",
    "output_dim": "output_dim",
    "context_size": "context_size",
    "max_pos_emb": "max_pos_emb",
    "dropout": "dropout",
    "pred_dropout": "pred_dropout",
    "conv_kernel_size": "conv_kernel_size",
    "conv_expansion_factor": "conv_expansion_factor",
    "self_conditioning_layer": "self_conditioning_layer",
    "bpe_output_dim": "vocabulary_size",
    "bpe_pooling_window": "pooling_window",
    "blank_token_id": None,  # must equal the top-level blank_token_id
}
PROJECTOR_FIELDS = {
    "encoder_dim": None,  # must equal encoder hidden_dim
    "llm_dim": None,  # must equal hidden_size (the Q-Former output linear is hidden -> hidden)
    "num_encoder_layers": None,  # must equal len(encoder_layer_indices)
    "downsample_rate": "downsample_rate",
    "hidden_size": "hidden_size",
    "num_heads": "num_attention_heads",
    "num_layers": "num_hidden_layers",
    "dropout_prob": None,  # training only; the native projector has no dropout
    "block_size": "window_size",
    "mlp_ratio": None,  # -> intermediate_size = hidden_size * mlp_ratio
    "layernorm_eps": "layer_norm_eps",
    "attn_bias": "attention_bias",
    "mlp_bias": None,  # must be true: the native MLP always has biases
}
TOP_FIELDS = {
    "encoder_config": None,
    "projector_config": None,
    "text_config": None,
    "encoder_layer_indices": None,  # -> encoder cat_hidden_layers
    "blank_token_id": "blank_token_id",
    "min_edit_sequence_length": "min_edit_sequence_length",
    "scale_projected_embeddings": "scale_projected_embeddings",
    "ce_loss_lambda": "ce_loss_lambda",
    "encoder_ctc_loss_lambda": "encoder_ctc_loss_lambda",
    "tie_word_embeddings": "tie_word_embeddings",
    "initializer_range": "initializer_range",
    "audio_token_id": None,  # unused by the model
    "ctc_tokenizer_config": None,  # decodes the 348-class character head only; not used for transcripts
    "model_type": None,
    "architectures": None,
    "auto_map": None,
}
# Bookkeeping keys any transformers config may carry; never meaningful for the mapping.
GENERIC_FIELDS = {
    "transformers_version",
    "torch_dtype",
    "dtype",
    "_name_or_path",
    "_commit_hash",
    "use_cache",
    "return_dict",
    "output_hidden_states",
    "output_attentions",
    "id2label",
    "label2id",
    "is_encoder_decoder",
    "chunk_size_feed_forward",
    "problem_type",
}


def is_original_config(config: dict) -> bool:
    """Whether a ``config.json`` dict is in the remote-code layout (docs/reference_behaviour.md §6.3)."""
    text = config.get("text_config") or config.get("llm_config") or {}
    return (
        "encoder_layer_indices" in config
        or "auto_map" in config
        or "llm_config" in config
        or "bpe_output_dim" in (config.get("encoder_config") or {})
        or text.get("model_type") == "granite"
    )


def _map_fields(section: str, values: dict, table: dict) -> tuple[dict, dict]:
    native, dropped = {}, {}
    for key, value in values.items():
        if key in GENERIC_FIELDS:
            continue
        if key not in table:
            raise OriginalLayoutError(
                f"unknown field {section}.{key} in the original config; refusing to guess what it means."
            )
        target = table[key]
        if target is None:
            dropped[key] = value
        else:
            native[target] = value
    return native, dropped


def convert_config_dict(original: dict) -> dict:
    """Original ``config.json`` dict → native :class:`GraniteSpeechNarConfig` kwargs (docs/reference_behaviour.md §6.3, §6.4)."""
    model_type = original.get("model_type", ORIGINAL_MODEL_TYPE)
    if model_type != ORIGINAL_MODEL_TYPE:
        raise OriginalLayoutError(
            f"model_type is {model_type!r}, not {ORIGINAL_MODEL_TYPE!r}: this config.json describes another "
            "model. Point at a Granite Speech NAR checkpoint (e.g. ibm-granite/granite-speech-4.1-2b-nar)."
        )
    if "llm_config" in original:
        raise OriginalLayoutError(
            "this is the early 7d20732d snapshot layout (llm_config, 100353-class BPE head with the blank at "
            "index 0); use Hub revision 99a4df9 or later of ibm-granite/granite-speech-4.1-2b-nar."
        )
    top, top_dropped = _map_fields("", original, TOP_FIELDS)
    encoder, enc_dropped = _map_fields("encoder_config", original.get("encoder_config") or {}, ENCODER_FIELDS)
    projector, proj_dropped = _map_fields(
        "projector_config", original.get("projector_config") or {}, PROJECTOR_FIELDS
    )
    text = dict(original.get("text_config") or {})
    if text.pop("model_type", "granite") != "granite":
        raise OriginalLayoutError("text_config.model_type must be 'granite' in the original layout.")
    for key in ("architectures", "auto_map", "transformers_version", "_name_or_path", "torch_dtype", "dtype"):
        text.pop(key, None)
    if "rope_theta" in text:  # flat rope_theta (older snapshots) -> rope_parameters
        text.setdefault("rope_parameters", {"rope_type": "default", "rope_theta": text.pop("rope_theta")})
    text.pop("rope_scaling", None)

    hidden_dim = encoder.get("hidden_dim", 1024)
    num_layers = encoder.get("num_layers", 16)
    indices = list(top_dropped.get("encoder_layer_indices", [4, 8, 12, -1]))
    if not indices or indices[-1] not in (-1, num_layers):
        raise OriginalLayoutError(
            f"encoder_layer_indices {indices} must end with the last layer (-1 or {num_layers})."
        )
    encoder["cat_hidden_layers"] = [i if i >= 0 else num_layers + 1 + i for i in indices[:-1]]

    blank = top.get("blank_token_id", 100257)
    if "blank_token_id" in enc_dropped and enc_dropped["blank_token_id"] != blank:
        raise OriginalLayoutError(
            f"encoder_config.blank_token_id ({enc_dropped['blank_token_id']}) differs from blank_token_id "
            f"({blank}); the native layout has one blank."
        )
    vocab = text.get("vocab_size", 100352)
    if encoder.get("vocabulary_size", vocab) == vocab + 1:
        raise OriginalLayoutError(
            f"bpe_output_dim is vocab_size + 1 ({vocab + 1}): the early snapshot's head with the blank at index "
            "0; use Hub revision 99a4df9 or later of ibm-granite/granite-speech-4.1-2b-nar."
        )

    hidden = projector.get("hidden_size", 2048)
    checks = {
        "encoder_dim": (proj_dropped.get("encoder_dim", hidden_dim), hidden_dim, "encoder_config.hidden_dim"),
        "llm_dim": (proj_dropped.get("llm_dim", hidden), hidden, "projector_config.hidden_size"),
        "num_encoder_layers": (
            proj_dropped.get("num_encoder_layers", len(indices)),
            len(indices),
            "len(encoder_layer_indices)",
        ),
        "mlp_bias": (proj_dropped.get("mlp_bias", True), True, "the native layout (always biased)"),
    }
    for name, (value, expected, what) in checks.items():
        if value != expected:
            raise OriginalLayoutError(f"projector_config.{name} ({value}) must equal {what} ({expected}).")
    projector["intermediate_size"] = int(hidden * proj_dropped.get("mlp_ratio", 2))
    return {**top, "encoder_config": encoder, "projector_config": projector, "text_config": text}


def rename_key(key: str) -> str | None:
    """Native name of an original tensor name; ``None`` for a dropped identity-norm affine."""
    if DROPPED_IDENTITY_NORMS.match(key):
        return None
    for pattern, replacement in STATE_DICT_RENAMES:
        if re.match(pattern, key):
            return re.sub(pattern, replacement, key, count=1)
    raise OriginalLayoutError(f"unexpected tensor {key!r} in the original checkpoint.")


def convert_state_dict(original: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename an original state dict to native names, dropping only what is provably redundant.

    * projector LayerNorm affines are dropped after checking they are exactly identity;
    * ``language_model.lm_head.weight`` is dropped after checking it equals the embeddings (tied head).
    """
    native: dict[str, torch.Tensor] = {}
    for key, tensor in original.items():
        target = rename_key(key)
        if target is None:
            identity = torch.ones_like(tensor) if key.endswith("weight") else torch.zeros_like(tensor)
            if not torch.equal(tensor, identity):
                raise OriginalLayoutError(
                    f"{key} is not an identity LayerNorm {'weight (all 1)' if key.endswith('weight') else 'bias (all 0)'}"
                    "; the native projector's LayerNorms have no affine parameters, so it cannot be dropped."
                )
            continue
        native[target] = tensor
    head = native.pop("lm_head.weight", None)
    if head is not None:
        embed = native.get("model.language_model.embed_tokens.weight")
        if embed is None or not torch.equal(head, embed):
            raise OriginalLayoutError(
                "language_model.lm_head.weight differs from the token embeddings; the native model ties them."
            )
    return native


def read_config(folder: str | Path) -> dict:
    """A checkpoint folder's ``config.json`` as a dict (:class:`CheckpointFileError` naming it if unreadable)."""
    path = Path(folder) / "config.json"
    if not path.is_file():
        raise CheckpointFileError(
            f"no config.json in {folder}: not a model folder. Pass the folder that holds the checkpoint's "
            "config.json and model.safetensors, or re-download the checkpoint."
        )
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as err:
        raise CheckpointFileError(
            f"{path} is not valid JSON ({err}); re-download the checkpoint or fix the file."
        ) from None
    if not isinstance(config, dict):
        raise CheckpointFileError(
            f"{path} holds a JSON {type(config).__name__}, not an object of config fields; re-download the "
            "checkpoint or fix the file."
        )
    return config


# Fields of the original preprocessor_config.json (docs/reference_behaviour.md §1.5) plus FeatureExtractionMixin bookkeeping.
_PREPROCESSOR_FIELDS = {
    "feature_extractor_type",
    "processor_class",
    "auto_map",
    "sampling_rate",
    "n_fft",
    "win_length",
    "hop_length",
    "n_mels",
    "feature_size",
    "frame_stacking",
    "padding_value",
    "padding_side",
    "return_attention_mask",
}


def native_feature_extractor_kwargs(original: dict) -> dict:
    """Feature-extractor fields in original names → native names (docs/reference_behaviour.md §1.5, §6.4).

    ``n_mels`` → ``feature_size``; ``auto_map`` (remote code) dropped. Any other field passes unchanged.
    """
    native = {k: v for k, v in original.items() if k not in ("auto_map", "n_mels")}
    if "n_mels" in original:
        if native.setdefault("feature_size", original["n_mels"]) != original["n_mels"]:
            raise OriginalLayoutError(
                f"n_mels={original['n_mels']} and feature_size={native['feature_size']} disagree; give only one"
            )
    return native


def convert_preprocessor_config(original: dict) -> dict:
    """Original ``preprocessor_config.json`` → native field names (docs/reference_behaviour.md §1.5, §6.4).

    ``n_mels`` → ``feature_size``; ``frame_stacking`` (2) made explicit; ``auto_map`` (remote code) dropped;
    ``feature_extractor_type`` set to the native class. Unknown fields raise.
    """
    unknown = sorted(set(original) - _PREPROCESSOR_FIELDS)
    if unknown:
        raise OriginalLayoutError(
            f"unknown field(s) {unknown} in preprocessor_config.json; refusing to guess."
        )
    native = native_feature_extractor_kwargs(original)
    native.pop("feature_extractor_type", None)
    native.setdefault("frame_stacking", 2)
    native["feature_extractor_type"] = "GraniteSpeechNarFeatureExtractor"
    return native
