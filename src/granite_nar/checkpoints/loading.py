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
    "load_original_if_original",
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


def load_original_if_original(model_cls, name_or_path, model_args: tuple, kwargs: dict):
    """``model_cls.from_pretrained(name_or_path, ...)`` for an original-layout checkpoint, else ``None``.

    The one seam between ``from_pretrained`` and the original layout. An original folder is mapped to
    native names here (config through :meth:`GraniteSpeechNarConfig.from_dict`, tensors through
    :func:`convert_state_dict`), checked strictly, and then handed to transformers' own loader as a
    ``config`` and a ``state_dict``, so every ``from_pretrained`` argument (``device_map``, ``dtype``,
    ``config=``, config overrides, ``output_loading_info``, ``attn_implementation`` …) means exactly what it
    means for a native folder. Native checkpoints return ``None`` and go to transformers directly; an
    original one must never reach it unmapped (every weight would stay randomly initialised).
    """
    hub_kwargs = {k: kwargs.get(k) for k in ("revision", "cache_dir", "local_files_only", "token")}
    try:
        folder = resolve_checkpoint_folder(name_or_path, **hub_kwargs)
    except Exception:
        # transformers may still find the config (e.g. a short commit hash in the cache).
        folder = resolve_config_folder(name_or_path, **hub_kwargs)
    if folder is None or not is_original_checkpoint(folder):
        return None
    kwargs = dict(kwargs)
    state_dict = convert_state_dict(read_safetensors(folder))
    config = kwargs.pop("config", None)
    if config is None:
        config_kwargs = {
            k: kwargs.pop(k) for k in list(kwargs) if _is_config_field(model_cls.config_class, k)
        }
        config = model_cls.config_class(**{**convert_config_dict(read_config(folder)), **config_kwargs})
    elif not isinstance(config, model_cls.config_class):
        config = model_cls.config_class.from_pretrained(config)
    with torch.device("meta"):
        skeleton = model_cls(config)
    prefix = f"{skeleton.base_model_prefix}."
    expected = state_dict
    if not any(key.startswith(prefix) for key in skeleton.state_dict()):
        expected = {k.removeprefix(prefix): v for k, v in state_dict.items()}
    check_state_dict(skeleton, expected, {"lm_head.weight"} if hasattr(skeleton, "lm_head") else set())
    del skeleton
    dtype = kwargs.pop("dtype", kwargs.pop("torch_dtype", None))
    if dtype is None or dtype == "auto":  # keep the checkpoint's dtype, one dtype for the whole model
        dtype = checkpoint_dtype(state_dict)
    kwargs.update(local_files_only=True)  # everything is read already; the folder is not a Hub id
    for key in ("revision", "cache_dir", "token", "force_download", "subfolder"):
        kwargs.pop(key, None)
    loaded = model_cls.from_pretrained(  # name None: transformers' loader, with our config and state dict
        None, *model_args, config=config, state_dict=state_dict, dtype=dtype, **kwargs
    )
    model = loaded[0] if isinstance(loaded, tuple) else loaded
    model.config._name_or_path = model.name_or_path = str(name_or_path)
    return loaded


def _is_config_field(config_class, name: str) -> bool:
    """Whether ``name`` is a field of ``config_class`` (a config override passed to ``from_pretrained``)."""
    fields = getattr(config_class, "__dataclass_fields__", {})
    return name in fields and not name.startswith(("_", "base_")) and name not in _NOT_OVERRIDES


# Config dataclass fields that are not overrides when passed to from_pretrained.
_NOT_OVERRIDES = {
    "encoder_config",
    "projector_config",
    "text_config",
    "dtype",
    "model_type",
    "transformers_version",
    "architectures",
    "sub_configs_defaults",
    "extra_config_files",
    "extra_files",
    "attribute_map",
}
