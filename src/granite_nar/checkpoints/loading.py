"""Reading checkpoints: native folders through transformers, original (remote-code) folders here.

Everything works offline from a local folder or the local Hub cache; nothing here executes code from a
checkpoint, and only safetensors files are read.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from safetensors.torch import load_file

from .original_layout import (
    OriginalLayoutError,
    convert_config_dict,
    convert_state_dict,
    is_original_config,
    read_config,
)

__all__ = [
    "resolve_checkpoint_folder",
    "read_safetensors",
    "load_original_checkpoint",
    "is_original_checkpoint",
    "checkpoint_dtype",
]

_HUB_FILES = ["*.json", "*.safetensors", "*.model", "*.txt", "*.jinja"]


def resolve_checkpoint_folder(
    name_or_path: str | os.PathLike,
    revision: str | None = None,
    cache_dir: str | None = None,
    local_files_only: bool | None = None,
    token: str | bool | None = None,
) -> Path:
    """A local folder as is; a Hub id through the Hub cache (``HF_HUB_OFFLINE=1`` reads only the cache)."""
    path = Path(name_or_path)
    if path.is_dir():
        return path
    from huggingface_hub import snapshot_download

    return Path(
        snapshot_download(
            str(name_or_path),
            revision=revision,
            cache_dir=cache_dir,
            local_files_only=bool(local_files_only),
            token=token,
            allow_patterns=_HUB_FILES,
        )
    )


def resolve_config_folder(name_or_path: str | os.PathLike, **hub_kwargs) -> Path | None:
    """The folder holding ``config.json`` as transformers itself resolves it (e.g. a short commit hash in the
    cache, which ``snapshot_download`` rejects offline), or ``None``."""
    from transformers.utils.hub import cached_file

    try:
        path = cached_file(
            str(name_or_path),
            "config.json",
            _raise_exceptions_for_missing_entries=False,
            _raise_exceptions_for_connection_errors=False,
            **{k: v for k, v in hub_kwargs.items() if v is not None},
        )
    except Exception:
        return None
    return Path(path).parent if path else None


def is_original_checkpoint(folder: str | Path) -> bool:
    config = Path(folder) / "config.json"
    return config.is_file() and is_original_config(json.loads(config.read_text()))


def read_safetensors(folder: str | Path) -> dict[str, torch.Tensor]:
    """All tensors of a folder's ``model.safetensors`` or of the shards its index lists."""
    folder = Path(folder)
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        tensors: dict[str, torch.Tensor] = {}
        for shard in shards:
            if not (folder / shard).is_file():
                raise FileNotFoundError(f"shard {shard} listed in {index} is missing.")
            tensors.update(load_file(folder / shard))
        return tensors
    single = folder / "model.safetensors"
    if not single.is_file():
        raise FileNotFoundError(f"no model.safetensors (or model.safetensors.index.json) in {folder}.")
    return load_file(single)


def check_state_dict(model: torch.nn.Module, state_dict: dict[str, torch.Tensor], tied: set[str]) -> None:
    """Raise one clear error listing every missing, unexpected and mis-shaped tensor."""
    expected = {k: v.shape for k, v in model.state_dict().items() if k not in tied}
    missing = sorted(set(expected) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(expected))
    mismatched = [
        f"{k}: checkpoint {tuple(state_dict[k].shape)} vs model {tuple(expected[k])}"
        for k in sorted(set(expected) & set(state_dict))
        if tuple(state_dict[k].shape) != tuple(expected[k])
    ]
    problems = []
    if missing:
        problems.append(f"missing tensors ({len(missing)}): {', '.join(missing[:10])}")
    if unexpected:
        problems.append(f"unexpected tensors ({len(unexpected)}): {', '.join(unexpected[:10])}")
    if mismatched:
        problems.append(f"shape mismatches ({len(mismatched)}): {'; '.join(mismatched[:10])}")
    if problems:
        raise OriginalLayoutError("checkpoint does not match the model: " + " | ".join(problems))


def checkpoint_dtype(state_dict: dict[str, torch.Tensor]) -> torch.dtype:
    """The float dtype holding most elements of a checkpoint (what ``dtype="auto"`` keeps).

    A model needs one float dtype (eval BatchNorm refuses bf16 inputs with fp32 running stats), so a
    mixed checkpoint is cast to its dominant dtype, as the reference does when it loads with ``dtype=bf16``.
    """
    counts: dict[torch.dtype, int] = {}
    for tensor in state_dict.values():
        if tensor.is_floating_point():
            counts[tensor.dtype] = counts.get(tensor.dtype, 0) + tensor.numel()
    return max(counts, key=counts.get) if counts else torch.float32


def build_from_state_dict(model_cls, config, state_dict, dtype=None, device="cpu"):
    """Build ``model_cls(config)`` on the meta device and assign ``state_dict`` with a strict check.

    ``state_dict`` holds native names of the full model (``model.*``); for a base model class, which has
    no ``model.`` prefix, the prefix is removed.
    """
    with torch.device("meta"):
        model = model_cls(config)
    prefix = f"{model.base_model_prefix}."
    if not any(key.startswith(prefix) for key in model.state_dict()):
        state_dict = {k.removeprefix(prefix): v for k, v in state_dict.items()}
    tied = {"lm_head.weight"} if hasattr(model, "lm_head") else set()
    check_state_dict(model, state_dict, tied)
    model.load_state_dict(state_dict, strict=False, assign=True)
    if dtype is not None:
        model = model.to(dtype=dtype)
    # After the cast, so that the RoPE frequencies stay fp32 (docs/reference_behaviour.md §9.11), as in a native from_pretrained.
    model.materialize_buffers(device)
    model.tie_weights()
    model = model.to(device=device)
    return model.eval()


def load_original_checkpoint(
    folder: str | Path, model_cls, dtype=None, device="cpu", attn_implementation=None
):
    """Load a folder in the original remote-code layout into ``model_cls`` (a native class), without remote code."""
    folder = Path(folder)
    config = model_cls.config_class(**convert_config_dict(read_config(folder)))
    if attn_implementation is not None:
        config._attn_implementation = attn_implementation
        config.text_config._attn_implementation = attn_implementation
    state_dict = convert_state_dict(read_safetensors(folder))
    if dtype is None:  # "auto": keep the checkpoint's dtype, one dtype for the whole model
        dtype = checkpoint_dtype(state_dict)
    return build_from_state_dict(model_cls, config, state_dict, dtype=dtype, device=device)


def load_original_if_original(model_cls, name_or_path, kwargs: dict):
    """``model_cls`` loaded from ``name_or_path`` if that is an original-layout checkpoint, else ``None``.

    The one seam between ``from_pretrained`` and the original layout: native checkpoints go on to
    transformers' own loader, which must never see an original one (it would leave every weight randomly
    initialised).
    """
    hub_kwargs = {k: kwargs.get(k) for k in ("revision", "cache_dir", "local_files_only", "token")}
    try:
        folder = resolve_checkpoint_folder(name_or_path, **hub_kwargs)
    except Exception:
        # transformers may still find the config (e.g. a short commit hash in the cache).
        folder = resolve_config_folder(name_or_path, **hub_kwargs)
    if folder is None or not is_original_checkpoint(folder):
        return None
    dtype = kwargs.get("dtype", kwargs.get("torch_dtype"))
    if isinstance(dtype, str) and dtype != "auto":
        dtype = getattr(torch, dtype)
    device_map = kwargs.get("device_map")
    return load_original_checkpoint(
        folder,
        model_cls=model_cls,
        dtype=None if dtype == "auto" else dtype,
        device=device_map if isinstance(device_map, (str, torch.device)) else "cpu",
        attn_implementation=kwargs.get("attn_implementation"),
    )
