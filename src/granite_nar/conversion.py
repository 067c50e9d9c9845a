"""Convert the original (remote-code) checkpoint to the native layout, and prove the result (SPEC §6, §11.1).

The conversion is the direct load path (:func:`granite_nar.loading.load_original_checkpoint`: rename
tables, strict shape check on ``meta``, identity check before dropping the projector LayerNorm affines,
tied-head check), followed by ``save_pretrained``, the processor files in native names, a strict reload
of what was written, and a numeric comparison of the reload against the directly loaded model.

Also here: writers of *synthetic* original-layout checkpoints (any config, including the full-size one,
streamed tensor by tensor), used by the tests, the docs and the measurement of the converter.

Old snapshots (Hub revision ``7d20732d``: ``llm_config``, a BPE head of ``vocab + 1`` rows with the blank
at row 0) are refused with a message naming revision ``99a4df9``; see ``docs/conversion.md`` for why a row
permutation would not be an exact conversion.
"""

from __future__ import annotations

import gc
import json
import math
import re
import shutil
import struct
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors import safe_open

from .configuration import GraniteSpeechNarConfig
from .loading import load_original_checkpoint, resolve_checkpoint_folder
from .original_layout import (
    DROPPED_IDENTITY_NORMS,
    OriginalLayoutError,
    convert_config_dict,
    is_original_config,
    read_config,
    rename_key,
)
from .testing import tiny_config

__all__ = [
    "ConversionError",
    "ConversionReport",
    "VerificationResult",
    "NATIVE_TO_ORIGINAL",
    "TOKENIZER_FILES",
    "convert_checkpoint",
    "convert_preprocessor_config",
    "verify_conversion",
    "push_to_hub",
    "original_tensor_names",
    "original_config_dict",
    "synthetic_tiny_config",
    "write_synthetic_original_checkpoint",
]


class ConversionError(ValueError):
    """The input cannot be converted (already native, output clash, failed verification …)."""


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

# Processor-side files copied next to the converted weights (JSON ones lose their ``auto_map``, which points
# at remote code). ``preprocessor_config.json`` is rewritten in native names instead of copied.
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "vocab.json",
    "merges.txt",
    "tokenizer.model",
    "chat_template.jinja",
    "chat_template.json",
    "processor_config.json",
)

# Fields of the original preprocessor_config.json (SPEC §1.5) plus FeatureExtractionMixin bookkeeping.
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

# Absolute logit tolerance per dtype, relative to max(1, max |reference logit|). Both models hold
# bit-identical weights, so any real difference is a bug; the margin only covers kernel nondeterminism.
_TOLERANCE = {torch.float32: 1e-5, torch.float16: 1e-3, torch.bfloat16: 1e-2, torch.float64: 1e-10}

_DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}
_SAFETENSORS_DTYPES = {
    torch.float32: "F32",
    torch.float16: "F16",
    torch.bfloat16: "BF16",
    torch.float64: "F64",
    torch.int64: "I64",
}


# --------------------------------------------------------------------------------------------------------
# Reports


@dataclass
class VerificationResult:
    """The converted model reloaded from disk against the original loaded directly, on fixed random inputs."""

    dtype: torch.dtype
    lengths: list[int]
    drafts_equal: bool
    edited_equal: bool
    max_abs_logit_diff: float
    tolerance: float

    @property
    def passed(self) -> bool:
        return self.drafts_equal and self.edited_equal and self.max_abs_logit_diff <= self.tolerance

    def __str__(self) -> str:
        verdict = "PASSED" if self.passed else "FAILED"
        return (
            f"verification {verdict} ({str(self.dtype).removeprefix('torch.')}, encoder frames {self.lengths}): "
            f"draft tokens equal: {self.drafts_equal}, edited tokens equal: {self.edited_equal}, "
            f"logits max |diff| = {self.max_abs_logit_diff:.3g} (tolerance {self.tolerance:.3g})"
        )


@dataclass
class ConversionReport:
    """What :func:`convert_checkpoint` read, dropped, wrote and measured."""

    source: Path
    output: Path
    dtype: torch.dtype
    num_original_tensors: int
    num_native_tensors: int
    dropped_identity_norms: list[str]
    dropped_tied_head: bool
    weight_files: list[str]
    processor_files: list[str]
    skipped_files: list[str]
    verification: VerificationResult | None
    seconds: dict[str, float] = field(default_factory=dict)

    def __str__(self) -> str:
        lines = [
            f"source: {self.source}",
            f"output: {self.output}",
            f"tensors: {self.num_original_tensors} original -> {self.num_native_tensors} native "
            f"({len(self.dropped_identity_norms)} identity LayerNorm affines dropped"
            f"{', tied lm_head dropped' if self.dropped_tied_head else ''})",
            f"dtype: {str(self.dtype).removeprefix('torch.')}",
            f"weights: {', '.join(self.weight_files)}",
            f"processor files: {', '.join(self.processor_files) or '-'}",
        ]
        if self.skipped_files:
            lines.append(f"not copied: {', '.join(self.skipped_files)}")
        lines.append(str(self.verification) if self.verification else "verification skipped")
        lines.append("time: " + ", ".join(f"{k} {v:.1f} s" for k, v in self.seconds.items()))
        return "\n".join(lines)


# --------------------------------------------------------------------------------------------------------
# Conversion


def convert_checkpoint(
    input: str | Path,
    output: str | Path,
    *,
    dtype: str | torch.dtype | None = None,
    revision: str | None = None,
    cache_dir: str | None = None,
    token: str | bool | None = None,
    local_files_only: bool | None = None,
    max_shard_size: int | str = "5GB",
    verify: bool = True,
    overwrite: bool = False,
) -> ConversionReport:
    """Convert an original-layout checkpoint (local folder or Hub id) into a native folder ``output``.

    Args:
        input: folder, or Hub repo id (read through the Hub cache; ``HF_HUB_OFFLINE=1`` reads only the cache).
        output: folder to write; must not exist or be empty (or pass ``overwrite=True``).
        dtype: ``None`` / ``"keep"`` keeps the checkpoint's dtype (bf16 stays bf16); or ``"bfloat16"``,
            ``"float16"``, ``"float32"`` (or a ``torch.dtype``).
        max_shard_size: ``save_pretrained`` shard size; above it the weights are sharded with an index.
        verify: reload the written folder strictly and compare it with the directly loaded original.

    The folder is first written as ``.<output>.partial`` and only renamed to ``output`` once everything,
    verification included, succeeded.

    Raises:
        OriginalLayoutError: a tensor or config field cannot be mapped faithfully (names it).
        ConversionError: the input is already native or not this model, the output clashes with the input,
            or the verification failed.
    """
    times: dict[str, float] = {}
    start = time.perf_counter()
    source = resolve_checkpoint_folder(
        input, revision=revision, cache_dir=cache_dir, local_files_only=local_files_only, token=token
    )
    output = Path(output)
    _check_output(source, output, overwrite)
    original_config = read_config(source)
    if not is_original_config(original_config):
        if original_config.get("model_type") == GraniteSpeechNarConfig.model_type:
            raise ConversionError(
                f"{input} is already in the native layout; nothing to convert. Load it with "
                "GraniteSpeechNarForCTC.from_pretrained()."
            )
        raise ConversionError(
            f"{input} is not a Granite Speech NAR checkpoint (model_type {original_config.get('model_type')!r})."
        )
    convert_config_dict(original_config)  # unknown fields and old snapshots fail here, before reading weights
    target = _as_dtype(dtype)

    inventory = _tensor_inventory(source)
    dropped_norms = sorted(name for name in inventory if DROPPED_IDENTITY_NORMS.match(name))
    has_head = "language_model.lm_head.weight" in inventory

    model = load_original_checkpoint(source, dtype=target, attn_implementation="sdpa")  # the direct path
    times["load"] = time.perf_counter() - start

    partial = output.with_name(f".{output.name}.partial")
    if partial.exists():
        shutil.rmtree(partial)
    tic = time.perf_counter()
    model.save_pretrained(partial, max_shard_size=max_shard_size)
    weight_files = sorted(p.name for p in partial.glob("model*.safetensors*"))
    processor_files, skipped = _write_processor_files(source, partial)
    times["save"] = time.perf_counter() - tic

    num_native = len([k for k in model.state_dict() if k != "lm_head.weight"])
    out_dtype = model.dtype
    tic = time.perf_counter()
    reference = _verification_outputs(model) if verify else None
    del model  # the reloaded copy is compared against stored outputs: one model in memory at a time
    gc.collect()
    verification = None
    if verify:
        converted = _reload(partial, out_dtype)
        verification = _compare_outputs(reference, _verification_outputs(converted))
        del converted
        times["verify"] = time.perf_counter() - tic
        if not verification.passed:
            raise ConversionError(f"{verification}; the written folder is kept at {partial} for inspection.")

    if output.exists():
        shutil.rmtree(output) if overwrite else output.rmdir()
    partial.rename(output)
    times["total"] = time.perf_counter() - start
    return ConversionReport(
        source=source,
        output=output,
        dtype=out_dtype,
        num_original_tensors=len(inventory),
        num_native_tensors=num_native,
        dropped_identity_norms=dropped_norms,
        dropped_tied_head=has_head,
        weight_files=weight_files,
        processor_files=processor_files,
        skipped_files=skipped,
        verification=verification,
        seconds=times,
    )


def _as_dtype(dtype: str | torch.dtype | None) -> torch.dtype | None:
    if dtype is None or dtype == "keep" or dtype == "auto":
        return None
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype not in _DTYPES:
        raise ValueError(f"dtype must be one of {sorted(_DTYPES)} or 'keep', got {dtype!r}.")
    return _DTYPES[dtype]


def _check_output(source: Path, output: Path, overwrite: bool) -> None:
    src, out = source.resolve(), output.resolve()
    if out == src or src in out.parents or out in src.parents:
        raise ConversionError(
            f"the output folder {output} overlaps the input folder {source}; choose another."
        )
    if output.exists():
        if not output.is_dir():
            raise ConversionError(f"{output} exists and is not a folder.")
        if any(output.iterdir()) and not overwrite:
            raise ConversionError(f"{output} is not empty; pass overwrite=True (--overwrite) to replace it.")


def _checkpoint_files(folder: Path) -> list[Path]:
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        return [folder / name for name in sorted(set(json.loads(index.read_text())["weight_map"].values()))]
    return [folder / "model.safetensors"]


def _tensor_inventory(folder: Path) -> dict[str, tuple[list[int], str]]:
    """Names, shapes and dtypes of every stored tensor, read from the safetensors headers only."""
    inventory = {}
    for path in _checkpoint_files(folder):
        if not path.is_file():
            raise FileNotFoundError(f"{path.name} is missing from {folder}.")
        with safe_open(path, framework="pt") as f:
            for name in f.keys():
                info = f.get_slice(name)
                inventory[name] = (info.get_shape(), info.get_dtype())
    return inventory


def convert_preprocessor_config(original: dict) -> dict:
    """Original ``preprocessor_config.json`` → native field names (SPEC §1.5, §6.4).

    ``n_mels`` → ``feature_size``; ``frame_stacking`` (2) made explicit; ``auto_map`` (remote code) dropped;
    ``feature_extractor_type`` set to the native class. Unknown fields raise.
    """
    unknown = sorted(set(original) - _PREPROCESSOR_FIELDS)
    if unknown:
        raise OriginalLayoutError(
            f"unknown field(s) {unknown} in preprocessor_config.json; refusing to guess."
        )
    native = {k: v for k, v in original.items() if k not in ("auto_map", "n_mels", "feature_extractor_type")}
    if "n_mels" in original:
        if native.setdefault("feature_size", original["n_mels"]) != original["n_mels"]:
            raise OriginalLayoutError(
                f"preprocessor_config.json has n_mels={original['n_mels']} and "
                f"feature_size={native['feature_size']}."
            )
    native.setdefault("frame_stacking", 2)
    native["feature_extractor_type"] = "GraniteSpeechNarFeatureExtractor"
    return native


def _write_processor_files(source: Path, output: Path) -> tuple[list[str], list[str]]:
    """Feature-extractor config in native names, tokenizer files copied without ``auto_map``."""
    from .feature_extraction import GraniteSpeechNarFeatureExtractor

    written = []
    preprocessor = source / "preprocessor_config.json"
    if preprocessor.is_file():
        native = convert_preprocessor_config(json.loads(preprocessor.read_text()))
        # Built and saved by the native class itself: the file is exactly what it reads back.
        extractor = GraniteSpeechNarFeatureExtractor(
            **{k: v for k, v in native.items() if k != "feature_extractor_type"}
        )
        extractor.save_pretrained(output)
        written.append(preprocessor.name)
    for name in TOKENIZER_FILES:
        path = source / name
        if not path.is_file():
            continue
        content = json.loads(path.read_text()) if path.suffix == ".json" else None
        if isinstance(content, dict) and "auto_map" in content:  # points at remote code
            content.pop("auto_map")
            (output / name).write_text(json.dumps(content, indent=2, ensure_ascii=False) + "\n")
        else:  # byte for byte
            shutil.copyfile(path, output / name)
        written.append(name)
    handled = {"config.json", "model.safetensors.index.json", "preprocessor_config.json", *TOKENIZER_FILES}
    skipped = sorted(
        p.name
        for p in source.iterdir()
        if p.is_file() and p.name not in handled and not re.fullmatch(r"model.*\.safetensors", p.name)
    )
    return written, skipped


# --------------------------------------------------------------------------------------------------------
# Verification


def _reload(folder: Path, dtype: torch.dtype):
    """Load the written folder through the native path, refusing anything but an exact match of names."""
    from .modeling_granite_speech_nar import GraniteSpeechNarForCTC

    converted, info = GraniteSpeechNarForCTC.from_pretrained(
        folder, dtype=dtype, attn_implementation="sdpa", output_loading_info=True
    )
    problems = {
        k: v for k, v in info.items() if k in ("missing_keys", "unexpected_keys", "mismatched_keys") and v
    }
    if problems:
        raise ConversionError(f"the written checkpoint does not reload strictly: {problems}")
    return converted.eval()


@torch.no_grad()
def verify_conversion(
    reference, converted, lengths: tuple[int, ...] = (96, 41), seed: int = 0
) -> VerificationResult:
    """Run both models on the same fixed random features (a padded batch) and compare.

    Compared: the BPE-CTC drafts, the edited tokens after one step, and the slot logits, both for the
    models' own drafts and for fixed random hypotheses (so that the editor sees non-empty slots even when
    random weights give empty drafts).
    """
    return _compare_outputs(
        _verification_outputs(reference, lengths, seed), _verification_outputs(converted, lengths, seed)
    )


@torch.no_grad()
def _verification_outputs(model, lengths: tuple[int, ...] = (96, 41), seed: int = 0) -> dict:
    """What :func:`verify_conversion` compares, for one model (so two models need not be in memory at once)."""
    cfg = model.config
    g = torch.Generator().manual_seed(seed)
    feats = torch.randn(len(lengths), max(lengths), cfg.encoder_config.input_dim, generator=g).to(model.dtype)
    mask = torch.arange(max(lengths))[None, :] < torch.tensor(lengths)[:, None]
    vocab, blank = cfg.text_config.vocab_size, cfg.blank_token_id
    hypotheses = []
    for n in (5, 12)[: len(lengths)]:
        ids = torch.randint(0, vocab - 1, (n,), generator=g)
        hypotheses.append(ids + (ids >= blank).long())  # never the blank

    audio = model.model.encode_audio(feats, mask)  # encoder + projector once, edited twice
    embeds = {"audio_embeds": audio.audio_embeds, "audio_lengths": audio.audio_lengths}
    own = model.generate(**embeds, input_ids=audio.draft_ids, return_dict_in_generate=True)
    forced = model.generate(**embeds, input_ids=hypotheses, return_dict_in_generate=True)
    return {
        "dtype": model.dtype,
        "lengths": list(lengths),
        "drafts": audio.draft_ids,
        "edited": [*own.sequences, *forced.sequences],
        "logits": [*own.logits, *forced.logits],
    }


def _compare_outputs(ref: dict, new: dict) -> VerificationResult:
    def same_ids(a, b):
        return len(a) == len(b) and all(torch.equal(x, y) for x, y in zip(a, b, strict=True))

    diff, scale = 0.0, 1.0
    for a, b in zip(ref["logits"], new["logits"], strict=True):
        if a.shape != b.shape:
            diff = math.inf
            continue
        a, b = a.float(), b.float()
        d = (a - b).abs().masked_fill(a.isnan() & b.isnan(), 0.0).nan_to_num(nan=math.inf)
        diff = max(diff, float(d.max()) if d.numel() else 0.0)
        finite = a[a.isfinite()]
        scale = max(scale, float(finite.abs().max()) if finite.numel() else 1.0)
    return VerificationResult(
        dtype=ref["dtype"],
        lengths=ref["lengths"],
        drafts_equal=same_ids(ref["drafts"], new["drafts"]),
        edited_equal=same_ids(ref["edited"], new["edited"]),
        max_abs_logit_diff=diff,
        tolerance=_TOLERANCE.get(ref["dtype"], 1e-2) * scale,
    )


# --------------------------------------------------------------------------------------------------------
# Hub upload


def push_to_hub(
    folder: str | Path,
    repo_id: str,
    *,
    token: str | bool | None = None,
    private: bool | None = None,
    revision: str | None = None,
    commit_message: str = "Granite Speech NAR checkpoint in the native transformers layout",
):
    """Upload a converted folder with ``huggingface_hub.HfApi().upload_folder`` (creating the repo if needed)."""
    from huggingface_hub import HfApi

    api = HfApi(token=token)
    api.create_repo(repo_id, repo_type="model", private=private, exist_ok=True)
    return api.upload_folder(
        folder_path=str(folder),
        repo_id=repo_id,
        repo_type="model",
        revision=revision,
        commit_message=commit_message,
    )


# --------------------------------------------------------------------------------------------------------
# Synthetic original-layout checkpoints (tests, docs, measurements)


def original_name(native: str) -> str:
    """Original tensor name of a native one (the inverse of :func:`granite_nar.original_layout.rename_key`)."""
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
    from .modeling_granite_speech_nar import GraniteSpeechNarForCTC

    config = config if config is not None else GraniteSpeechNarConfig()
    with torch.device("meta"):
        model = GraniteSpeechNarForCTC(config)
    names: dict[str, tuple[str | None, tuple]] = {}
    for native, tensor in model.state_dict().items():
        if native == "lm_head.weight":  # tied to the embeddings, not stored (SPEC §6.2)
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
    """The original remote-code ``config.json`` for a native config (field names of SPEC §6.3)."""
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


def synthetic_tiny_config() -> GraniteSpeechNarConfig:
    """A tiny config with every code path on (vocabulary 61, blank 60 = ``<|end_of_text|>``, pad 59)."""
    return tiny_config(61)


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
    """Write a random checkpoint in the original remote-code layout (SPEC §6.2, §6.3) into ``folder``.

    Files: ``config.json`` (original field names, ``auto_map``), ``model.safetensors`` (or shards of at most
    ``max_shard_size`` with ``model.safetensors.index.json``), ``preprocessor_config.json`` (``n_mels``,
    ``auto_map``) and a small word-level tokenizer. Tensors are generated and written one at a time, so
    the full-size config (``config=GraniteSpeechNarConfig()``, ~4.5 GB in bf16) needs little memory.

    Args:
        config: native config to mirror; ``None`` for :func:`synthetic_tiny_config`.
        dtype: float dtype of the stored tensors (BatchNorm ``num_batches_tracked`` stays int64).
        old_snapshot: write the early ``7d20732d`` layout instead (``llm_config``, flat ``rope_theta``, a BPE
            head of ``vocab + 1`` rows with the blank at row 0), which the converter refuses.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    config = config if config is not None else synthetic_tiny_config()
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
