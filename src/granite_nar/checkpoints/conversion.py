"""Convert the original (remote-code) checkpoint to the native layout, and prove the result (docs/reference_behaviour.md §6, §11.1).

The conversion is the direct load path (:func:`granite_nar.checkpoints.loading.load_original_if_original`: rename
tables, strict shape check on ``meta``, identity check before dropping the projector LayerNorm affines,
tied-head check), followed by ``save_pretrained``, the processor files in native names, a strict reload
of what was written, and a numeric comparison of the reload against the directly loaded model.

Old snapshots (Hub revision ``7d20732d``: ``llm_config``, a BPE head of ``vocab + 1`` rows with the blank
at row 0) are refused with a message naming revision ``99a4df9``; see ``docs/conversion.md`` for why a row
permutation would not be an exact conversion.
"""

from __future__ import annotations

import gc
import json
import math
import os
import re
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors import safe_open

from ..audio.feature_extraction_granite_speech_nar import GraniteSpeechNarFeatureExtractor
from ..model.configuration_granite_speech_nar import GraniteSpeechNarConfig
from ..model.modeling_granite_speech_nar import GraniteSpeechNarForCTC
from .loading import check_weight_files, resolve_checkpoint_folder
from .original_layout import (
    DROPPED_IDENTITY_NORMS,
    CheckpointFileError,
    convert_config_dict,
    convert_preprocessor_config,
    is_original_config,
    read_config,
)

__all__ = [
    "ConversionError",
    "ConversionReport",
    "VerificationResult",
    "TOKENIZER_FILES",
    "convert_checkpoint",
    "verify_conversion",
    "push_to_hub",
]


class ConversionError(ValueError):
    """The input cannot be converted (already native, output clash, failed verification …)."""


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

# Absolute logit tolerance per dtype, relative to max(1, max |reference logit|). Both models hold
# bit-identical weights, so any real difference is a bug; the margin only covers kernel nondeterminism.
_TOLERANCE = {torch.float32: 1e-5, torch.float16: 1e-3, torch.bfloat16: 1e-2, torch.float64: 1e-10}

_DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}
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
            an argument is invalid, or the verification failed.
        ModelNotFoundError: ``input`` is neither a folder nor a Hub id that can be had.
        CheckpointFileError: ``config.json`` or a weight file is missing, truncated or corrupt (names it).
    """
    times: dict[str, float] = {}
    start = time.perf_counter()
    target = _as_dtype(dtype)
    _check_shard_size(max_shard_size)
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
            f"{input} is not a Granite Speech NAR checkpoint (its config.json has model_type "
            f"{original_config.get('model_type')!r}); point --input at the original "
            "ibm-granite/granite-speech-4.1-2b-nar checkpoint (revision 99a4df9 or later) or a copy of it."
        )
    convert_config_dict(original_config)  # unknown fields and old snapshots fail here, before reading weights

    inventory = _tensor_inventory(source)
    dropped_norms = sorted(name for name in inventory if DROPPED_IDENTITY_NORMS.match(name))
    has_head = "language_model.lm_head.weight" in inventory

    # The direct path: the same load as GraniteSpeechNarForCTC.from_pretrained(original folder).
    model = GraniteSpeechNarForCTC.from_pretrained(source, dtype=target, attn_implementation="sdpa").eval()
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
        raise ConversionError(f"dtype must be one of {sorted(_DTYPES)} or 'keep', got {dtype!r}.")
    return _DTYPES[dtype]


_SIZE = re.compile(r"\d+(GIB|MIB|KIB|GB|MB|KB)", re.IGNORECASE)


def _check_shard_size(size: int | str) -> None:
    """Refuse a shard size ``save_pretrained`` would only reject after the whole model is loaded."""
    if isinstance(size, int) and not isinstance(size, bool) and size > 0:
        return
    if isinstance(size, str) and _SIZE.fullmatch(size) and int(re.match(r"\d+", size).group()) > 0:
        return
    raise ConversionError(
        f"max shard size {size!r} is not a size; write a positive integer and a unit, e.g. 5GB, 500MB or 2GiB."
    )


def _check_output(source: Path, output: Path, overwrite: bool) -> None:
    src, out = source.resolve(), output.resolve()
    if out == src or src in out.parents or out in src.parents:
        raise ConversionError(
            f"the output folder {output} overlaps the input folder {source}; choose another."
        )
    if output.exists():
        if not output.is_dir():
            raise ConversionError(f"{output} exists and is not a folder; choose another output folder.")
        if any(output.iterdir()) and not overwrite:
            raise ConversionError(f"{output} is not empty; pass overwrite=True (--overwrite) to replace it.")
    existing = out.parent
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        raise ConversionError(
            f"cannot write {output}: {existing} is not a writable folder; choose another output folder."
        )


def _tensor_inventory(folder: Path) -> dict[str, tuple[list[int], str]]:
    """Names, shapes and dtypes of every stored tensor, read from the safetensors headers only (each file
    checked whole first: a missing, truncated or corrupt one is named)."""
    inventory = {}
    for path in check_weight_files(folder):
        with safe_open(path, framework="pt") as f:
            for name in f.keys():
                info = f.get_slice(name)
                inventory[name] = (info.get_shape(), info.get_dtype())
    return inventory


def _read_json(path: Path):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as err:
        raise CheckpointFileError(
            f"{path} is not valid JSON ({err}); re-download the checkpoint or fix the file."
        ) from None


def _write_processor_files(source: Path, output: Path) -> tuple[list[str], list[str]]:
    """Feature-extractor config in native names, tokenizer files copied without ``auto_map``."""

    written = []
    preprocessor = source / "preprocessor_config.json"
    if preprocessor.is_file():
        native = convert_preprocessor_config(_read_json(preprocessor))
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
        content = _read_json(path) if path.suffix == ".json" else None
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
