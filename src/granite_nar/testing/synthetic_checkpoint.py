"""Synthetic checkpoints in the original (remote-code) layout, for tests, docs and measurements.

Any :class:`~granite_nar.GraniteSpeechNarConfig`, the full-size one included, is written tensor by
tensor under the original tensor and config names (docs/conversion.md), with random weights and, for the
tiny config, a small word-level tokenizer. The converter and the direct loader are tested on these
folders; nothing in the runtime package imports this module.
"""

from __future__ import annotations

import json
import math
import re
import struct
from pathlib import Path

import torch

from ..checkpoints.original_layout import DROPPED_IDENTITY_NORMS, rename_key
from ..model.configuration_granite_speech_nar import GraniteSpeechNarConfig
from . import tiny_config

__all__ = [
    "NATIVE_TO_ORIGINAL",
    "original_name",
    "original_tensor_names",
    "original_config_dict",
    "write_synthetic_original_checkpoint",
]

# The inverse of original_layout.STATE_DICT_RENAMES (native name -> original name), first match wins.
# Only used to *write* original-layout checkpoints (tests, docs, measurements); every name it produces is
# checked to map back onto the native name it came from.
NATIVE_TO_ORIGINAL: list[tuple[str, str]] = [
    (r"^model\.language_model\.", "language_model.model."),
    (r"^model\.out_bpe\.", "encoder.out_bpe."),
    (r"^model\.encoder\.", "encoder."),
    (r"^model\.projector\.proj\.", "projector.layer_projector."),
    (r"^model\.projector\.qformer\.linear\.", "projector.out_linear."),
    (r"^model\.projector\.qformer\.queries$", "projector.query"),
    (r"^model\.projector\.qformer\.pos_emb$", "projector.window_positions"),
    (
        r"^model\.projector\.qformer\.layers\.(\d+)\.cross_attn\.",
        r"projector.qformer.layers.\1.cross_attention.",
    ),
    (r"^model\.projector\.qformer\.layers\.(\d+)\.mlp\.", r"projector.qformer.layers.\1.mlp."),
]


_SAFETENSORS_DTYPES = {
    torch.float32: "F32",
    torch.float16: "F16",
    torch.bfloat16: "BF16",
    torch.float64: "F64",
    torch.int64: "I64",
}


def original_name(native: str) -> str:
    """Original tensor name of a native one (the inverse of :func:`granite_nar.checkpoints.original_layout.rename_key`)."""
    for pattern, replacement in NATIVE_TO_ORIGINAL:
        if re.match(pattern, native):
            original = re.sub(pattern, replacement, native, count=1)
            if rename_key(original) != native:  # the two tables must stay exact inverses
                raise AssertionError(f"{native} -> {original} -> {rename_key(original)}")
            return original
    raise KeyError(f"no original name for native tensor {native!r}")


def original_tensor_names(
    config: GraniteSpeechNarConfig | None = None,
) -> dict[str, tuple[str | None, tuple]]:
    """Every tensor of the original checkpoint for ``config``: ``{original name: (native name, shape)}``.

    The native name is ``None`` for the projector LayerNorm affines that the native layout drops. Built from
    the native model on the ``meta`` device, so the full-size config costs no memory.
    """
    from ..model.modeling_granite_speech_nar import GraniteSpeechNarForCTC

    config = config if config is not None else GraniteSpeechNarConfig()
    with torch.device("meta"):
        model = GraniteSpeechNarForCTC(config)
    names: dict[str, tuple[str | None, tuple]] = {}
    for native, tensor in model.state_dict().items():
        if native == "lm_head.weight":  # tied to the embeddings, not stored (reference_behaviour.md §6.2)
            continue
        names[original_name(native)] = (native, tuple(tensor.shape))
        if native == "model.projector.proj.bias":  # the affines of the LayerNorms around the projector
            enc, proj = config.encoder_config, config.projector_config
            for i in range(enc.num_exported_layers):
                for kind in ("weight", "bias"):
                    names[f"projector.layer_norms.{i}.{kind}"] = (None, (enc.hidden_dim,))
            for j in range(proj.num_hidden_layers):
                for norm in ("attn_norm", "mlp_norm"):
                    for kind in ("weight", "bias"):
                        names[f"projector.qformer.layers.{j}.{norm}.{kind}"] = (None, (proj.hidden_size,))
            for kind in ("weight", "bias"):
                names[f"projector.out_norm.{kind}"] = (None, (proj.hidden_size,))
    return names


_TEXT_FIELDS = (
    "vocab_size",
    "hidden_size",
    "intermediate_size",
    "num_hidden_layers",
    "num_attention_heads",
    "num_key_value_heads",
    "hidden_act",
    "max_position_embeddings",
    "initializer_range",
    "rms_norm_eps",
    "pad_token_id",
    "bos_token_id",
    "eos_token_id",
    "tie_word_embeddings",
    "rope_parameters",
    "attention_bias",
    "attention_dropout",
    "mlp_bias",
    "embedding_multiplier",
    "logits_scaling",
    "residual_multiplier",
    "attention_multiplier",
)


def original_config_dict(config: GraniteSpeechNarConfig, dtype: torch.dtype = torch.bfloat16) -> dict:
    """The original remote-code ``config.json`` for a native config (field names of docs/reference_behaviour.md §6.3)."""
    enc, proj, text = config.encoder_config, config.projector_config, config.text_config
    if not enc.export_after_self_conditioning:
        raise ValueError("the original layout always exports the self-conditioning layer after the residual.")
    if proj.intermediate_size % proj.hidden_size or proj.hidden_act != "silu":
        raise ValueError("the original projector has intermediate_size = hidden_size * mlp_ratio and SiLU.")
    return {
        "model_type": "granite_speech_nar",
        "architectures": ["GraniteSpeechNarForASR"],
        "auto_map": {
            "AutoConfig": "configuration_granite_speech_nar.GraniteSpeechNarConfig",
            "AutoModel": "modeling_granite_speech_nar.GraniteSpeechNarForASR",
        },
        "encoder_config": {
            "input_dim": enc.input_dim,
            "num_layers": enc.num_layers,
            "hidden_dim": enc.hidden_dim,
            "feedforward_mult": enc.feedforward_mult,
            "num_heads": enc.num_heads,
            "dim_head": enc.dim_head,
            "output_dim": enc.output_dim,
            "context_size": enc.context_size,
            "max_pos_emb": enc.max_pos_emb,
            "dropout": enc.dropout,
            "pred_dropout": enc.pred_dropout,
            "conv_kernel_size": enc.conv_kernel_size,
            "conv_expansion_factor": enc.conv_expansion_factor,
            "self_conditioning_layer": enc.self_conditioning_layer,
            "bpe_output_dim": enc.vocabulary_size,
            "bpe_pooling_window": enc.pooling_window,
            "blank_token_id": config.blank_token_id,
        },
        "projector_config": {
            "encoder_dim": enc.hidden_dim,
            "llm_dim": proj.hidden_size,
            "downsample_rate": proj.downsample_rate,
            "num_encoder_layers": enc.num_exported_layers,
            "hidden_size": proj.hidden_size,
            "num_heads": proj.num_attention_heads,
            "num_layers": proj.num_hidden_layers,
            "dropout_prob": 0.1,
            "block_size": proj.window_size,
            "mlp_ratio": proj.intermediate_size // proj.hidden_size,
            "layernorm_eps": proj.layer_norm_eps,
            "attn_bias": proj.attention_bias,
            "mlp_bias": True,
        },
        "text_config": {"model_type": "granite", **{k: getattr(text, k) for k in _TEXT_FIELDS}},
        "encoder_layer_indices": [*enc.cat_hidden_layers, -1],
        "scale_projected_embeddings": config.scale_projected_embeddings,
        "blank_token_id": config.blank_token_id,
        "min_edit_sequence_length": config.min_edit_sequence_length,
        "audio_token_id": text.vocab_size - 1,
        "tie_word_embeddings": True,
        "ce_loss_lambda": config.ce_loss_lambda,
        "encoder_ctc_loss_lambda": config.encoder_ctc_loss_lambda,
        "torch_dtype": str(dtype).removeprefix("torch."),
        "transformers_version": "4.57.1",
    }


def _synthetic_tensor(name: str, shape: tuple, dtype: torch.dtype, g: torch.Generator) -> torch.Tensor:
    """Random values a real checkpoint could hold: O(1) activations, positive BatchNorm variances."""
    if name.endswith("num_batches_tracked"):
        return torch.tensor(1000, dtype=torch.int64)
    if DROPPED_IDENTITY_NORMS.match(name):  # identity, so that the native layout can drop them
        return (torch.ones if name.endswith("weight") else torch.zeros)(shape, dtype=dtype)
    if name.endswith("running_var"):
        return (torch.rand(shape, generator=g) * 0.5 + 0.75).to(dtype)
    if name.endswith("running_mean") or name.endswith(".bias"):
        return (torch.randn(shape, generator=g) * 0.1).to(dtype)
    if len(shape) == 1:  # LayerNorm / RMSNorm / BatchNorm scales
        return (1.0 + torch.randn(shape, generator=g) * 0.1).to(dtype)
    if name in ("projector.query", "projector.window_positions"):
        return (torch.randn(shape, generator=g) * 0.5).to(dtype)
    fan_in = math.prod(shape[1:])
    return (torch.randn(shape, generator=g) / math.sqrt(fan_in)).to(dtype)


def _write_safetensors_streaming(path: Path, specs: list[tuple[str, tuple, torch.dtype]], make) -> None:
    """Write a safetensors file one tensor at a time (never more than one tensor in memory)."""
    header, offset = {}, 0
    for name, shape, dtype in specs:
        size = math.prod(shape) * torch.empty((), dtype=dtype).element_size()
        header[name] = {
            "dtype": _SAFETENSORS_DTYPES[dtype],
            "shape": list(shape),
            "data_offsets": [offset, offset + size],
        }
        offset += size
    header["__metadata__"] = {"format": "pt"}
    blob = json.dumps(header, separators=(",", ":")).encode()
    blob += b" " * (-len(blob) % 8)  # the data section starts 8-byte aligned
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(blob)))
        f.write(blob)
        for name, shape, dtype in specs:
            tensor = make(name, shape, dtype).contiguous()
            if tuple(tensor.shape) != tuple(shape) or tensor.dtype != dtype:
                raise AssertionError(
                    f"{name}: made {tuple(tensor.shape)} {tensor.dtype}, declared {shape} {dtype}"
                )
            f.write(memoryview(tensor.reshape(-1).view(torch.uint8).numpy()))


def _parse_size(size: int | str) -> int:
    if isinstance(size, int):
        return size
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMG]?B)\s*", size.upper())
    if not match:
        raise ValueError(f"cannot read size {size!r}; use e.g. '5GB' or '500KB'.")
    return int(float(match[1]) * {"B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9}[match[2]])


def write_synthetic_original_checkpoint(
    folder: str | Path,
    config: GraniteSpeechNarConfig | None = None,
    seed: int = 0,
    dtype: torch.dtype = torch.float32,
    max_shard_size: int | str | None = None,
    old_snapshot: bool = False,
) -> Path:
    """Write a random checkpoint in the original remote-code layout (docs/reference_behaviour.md §6.2, §6.3) into ``folder``.

    Files: ``config.json`` (original field names, ``auto_map``), ``model.safetensors`` (or shards of at most
    ``max_shard_size`` with ``model.safetensors.index.json``), ``preprocessor_config.json`` (``n_mels``,
    ``auto_map``) and a small word-level tokenizer. Tensors are generated and written one at a time, so
    the full-size config (``config=GraniteSpeechNarConfig()``, ~4.5 GB in bf16) needs little memory.

    Args:
        config: native config to mirror; ``None`` for :func:`granite_nar.testing.tiny_config`.
        dtype: float dtype of the stored tensors (BatchNorm ``num_batches_tracked`` stays int64).
        old_snapshot: write the early ``7d20732d`` layout instead (``llm_config``, flat ``rope_theta``, a BPE
            head of ``vocab + 1`` rows with the blank at row 0), which the converter refuses.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    config = config if config is not None else tiny_config()
    names = original_tensor_names(config)
    original_config = original_config_dict(config, dtype)
    if old_snapshot:
        text = original_config.pop("text_config")
        text["rope_theta"] = text.pop("rope_parameters")["rope_theta"]
        original_config["llm_config"] = text
        original_config["encoder_config"]["bpe_output_dim"] += 1
        original_config["encoder_config"]["blank_token_id"] = 0
        for key in ("encoder.out_bpe.weight", "encoder.out_bpe.bias"):
            native, shape = names[key]
            names[key] = (native, (shape[0] + 1, *shape[1:]))

    specs = [
        (name, shape, torch.int64 if name.endswith("num_batches_tracked") else dtype)
        for name, (_, shape) in names.items()
    ]
    g = torch.Generator().manual_seed(seed)

    def make(name, shape, tensor_dtype):
        return _synthetic_tensor(name, shape, tensor_dtype, g)

    for stale in folder.glob("model*.safetensors*"):
        stale.unlink()
    if max_shard_size is None:
        _write_safetensors_streaming(folder / "model.safetensors", specs, make)
    else:
        limit, shards, current, current_size = _parse_size(max_shard_size), [], [], 0
        for spec in specs:
            size = math.prod(spec[1]) * torch.empty((), dtype=spec[2]).element_size()
            if current and current_size + size > limit:
                shards.append(current)
                current, current_size = [], 0
            current.append(spec)
            current_size += size
        shards.append(current)
        weight_map, total = {}, 0
        for i, shard in enumerate(shards, start=1):
            shard_name = f"model-{i:05d}-of-{len(shards):05d}.safetensors"
            _write_safetensors_streaming(folder / shard_name, shard, make)
            for name, shape, tensor_dtype in shard:
                weight_map[name] = shard_name
                total += math.prod(shape) * torch.empty((), dtype=tensor_dtype).element_size()
        index = {"metadata": {"total_size": total}, "weight_map": weight_map}
        (folder / "model.safetensors.index.json").write_text(json.dumps(index, indent=2) + "\n")

    (folder / "config.json").write_text(json.dumps(original_config, indent=2) + "\n")
    _write_synthetic_processor_files(folder, config)
    return folder


def _write_synthetic_processor_files(folder: Path, config: GraniteSpeechNarConfig) -> None:
    from tokenizers import Tokenizer
    from tokenizers.models import WordLevel
    from tokenizers.pre_tokenizers import Whitespace

    preprocessor = {
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
    (folder / "preprocessor_config.json").write_text(json.dumps(preprocessor, indent=2) + "\n")
    text = config.text_config
    specials = {config.blank_token_id: "<|end_of_text|>"}
    if text.pad_token_id is not None and text.pad_token_id != config.blank_token_id:
        specials[text.pad_token_id] = "<|pad|>"
    vocab = {specials.get(i, f"w{i}"): i for i in range(text.vocab_size)}
    tokenizer = Tokenizer(WordLevel(vocab, unk_token="<|end_of_text|>"))
    tokenizer.pre_tokenizer = Whitespace()
    tokenizer.add_special_tokens(list(specials.values()))
    tokenizer.save(str(folder / "tokenizer.json"))
    tokenizer_config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": "<|end_of_text|>",
        "eos_token": "<|end_of_text|>",
        "pad_token": specials.get(text.pad_token_id, "<|end_of_text|>"),
    }
    (folder / "tokenizer_config.json").write_text(json.dumps(tokenizer_config, indent=2) + "\n")
