"""Reading checkpoints: native folders through transformers, original (remote-code) folders here.

Everything works offline from a local folder or the local Hub cache; nothing here executes code from a
checkpoint, and only safetensors files are read.

Where a checkpoint is, and whether its files are whole, is decided here before anything is loaded, so that
every failure names the folder or file and says what to do: a path that does not exist is refused at once
(never sent to the Hub), a Hub id that cannot be fetched says how to use a local folder or the Hub cache,
and a missing, truncated or corrupt ``model.safetensors`` is named (:class:`CheckpointFileError`).
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from .original_layout import (
    CheckpointFileError,
    OriginalLayoutError,
    convert_config_dict,
    convert_state_dict,
    is_original_config,
    read_config,
)

__all__ = [
    "ModelNotFoundError",
    "CheckpointFileError",
    "is_hub_id",
    "resolve_checkpoint_folder",
    "check_weight_files",
    "check_safetensors_file",
    "read_safetensors",
    "load_original_if_original",
    "is_original_checkpoint",
    "checkpoint_dtype",
]

_HUB_FILES = ["*.json", "*.safetensors", "*.model", "*.txt", "*.jinja"]
_EXAMPLE_HUB_ID = "ibm-granite/granite-speech-4.1-2b-nar"
# org/name: what every Granite Speech NAR checkpoint on the Hub is called (huggingface_hub checks the rest).
_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")


class ModelNotFoundError(FileNotFoundError):
    """No model where the user pointed: a folder that does not exist, or a Hub id that cannot be had (not on
    the Hub, offline and not in the cache, the Hub unreachable)."""


def is_hub_id(name_or_path: str | os.PathLike) -> bool:
    """Whether ``name_or_path`` reads as a Hub repo id (``org/name``) rather than a path.

    Anything else that does not exist locally is a mistyped folder: an absolute or ``./``/``~`` path, a bare
    name (``tiny-synth``), two or more slashes, a trailing slash, characters a repo id cannot have.
    """
    text = os.fspath(name_or_path)
    if not _HUB_ID.fullmatch(text):
        return False
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:
        validate_repo_id(text)
    except HFValidationError:
        return False
    return True


def _missing_folder_message(ref: str) -> str:
    path = Path(ref)
    if path.exists():
        return (
            f"{ref} is a file, not a model folder; pass the folder that holds its config.json and "
            "model.safetensors."
        )
    return (
        f"no such model folder: {ref} (looked for {path.absolute()}). Check the path; a Hugging Face Hub id "
        f"has the form org/name, e.g. {_EXAMPLE_HUB_ID}."
    )


def _hub_cache(cache_dir) -> str:
    if cache_dir is not None:
        return os.fspath(cache_dir)
    from huggingface_hub import constants

    return constants.HF_HUB_CACHE


def _hub_error(ref: str, err: Exception, revision, cache_dir, local_files_only) -> Exception | None:
    """A clear :class:`ModelNotFoundError` for a Hub id that cannot be had, or ``None`` (not a Hub problem)."""
    from huggingface_hub import constants
    from huggingface_hub.errors import (
        GatedRepoError,
        HfHubHTTPError,
        IncompleteSnapshotError,
        LocalEntryNotFoundError,
        OfflineModeIsEnabled,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    cache = _hub_cache(cache_dir)
    no_folder = f"there is no local folder named {ref} either"
    if isinstance(err, IncompleteSnapshotError):
        return ModelNotFoundError(
            f"{ref}: the copy in the Hub cache ({cache}) is incomplete and the Hub cannot be reached to finish "
            f"it. Re-run with network access (or `hf download {ref}`), or pass the path of a complete local "
            "model folder."
        )
    if isinstance(err, LocalEntryNotFoundError):
        if local_files_only or constants.HF_HUB_OFFLINE or isinstance(err.__cause__, OfflineModeIsEnabled):
            switch = "local_files_only=True" if local_files_only else "HF_HUB_OFFLINE=1"
            return ModelNotFoundError(
                f"{ref} is not in the Hub cache ({cache}) and Hub downloads are off ({switch}); {no_folder}. "
                f"Download it once with network access (`hf download {ref}`), point HF_HUB_CACHE (or "
                "cache_dir=) at the cache that holds it, or pass the path of a local model folder."
            )
        reason = f" ({_one_line(err.__cause__)})" if err.__cause__ is not None else ""
        return ModelNotFoundError(
            f"cannot reach the Hugging Face Hub to fetch {ref}{reason}, and it is not in the Hub cache "
            f"({cache}); {no_folder}. Check the network connection, or pass the path of a local model folder, "
            f"or copy a Hub cache that holds {ref} here and set HF_HUB_OFFLINE=1."
        )
    if isinstance(err, GatedRepoError):
        return ModelNotFoundError(
            f"{ref} is gated on the Hugging Face Hub: accept its terms at https://huggingface.co/{ref} and log "
            "in (`hf auth login`, or pass token=)."
        )
    if isinstance(err, RevisionNotFoundError):
        return ModelNotFoundError(
            f"{ref} has no revision {revision!r} on the Hugging Face Hub; check the revision you passed "
            "(revision= / --revision): a branch, a tag or a commit hash of the repo."
        )
    if isinstance(err, RepositoryNotFoundError) or (
        isinstance(err, HfHubHTTPError) and getattr(err.response, "status_code", None) == 401
    ):
        return ModelNotFoundError(
            f"{ref} was not found on the Hugging Face Hub (no such repo, or a private one: log in with "
            f"`hf auth login` or pass token=), and {no_folder}. Check the id (e.g. {_EXAMPLE_HUB_ID}) or "
            "pass the path of a local model folder."
        )
    return None


def _one_line(value) -> str:
    return " ".join(str(value).split())


def resolve_checkpoint_folder(
    name_or_path: str | os.PathLike,
    revision: str | None = None,
    cache_dir: str | None = None,
    local_files_only: bool | None = None,
    token: str | bool | None = None,
) -> Path:
    """A local folder as is; a Hub id through the Hub cache (``HF_HUB_OFFLINE=1`` reads only the cache).

    Raises:
        ModelNotFoundError: ``name_or_path`` is not a folder and does not read as a Hub id (``org/name``),
            or the Hub id cannot be had (not on the Hub, offline and not cached, the Hub unreachable); the
            message says how to point at a local folder or the Hub cache.
    """
    path = Path(name_or_path)
    if path.is_dir():
        return path
    ref = os.fspath(name_or_path)
    if not is_hub_id(ref) or path.exists():
        raise ModelNotFoundError(_missing_folder_message(ref))
    from huggingface_hub import snapshot_download

    try:
        folder = snapshot_download(
            ref,
            revision=revision,
            cache_dir=cache_dir,
            local_files_only=bool(local_files_only),
            token=token,
            allow_patterns=_HUB_FILES,
        )
    except Exception as err:
        clear = _hub_error(ref, err, revision, cache_dir, local_files_only)
        if clear is None:
            raise
        raise clear from err
    return Path(folder)


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
    return config.is_file() and is_original_config(read_config(folder))


def _redo(path: Path) -> str:
    """What to do about a broken file: fetch it again from where it came, or write it again."""
    parts = Path(path).absolute().parts
    for i, part in enumerate(parts[:-2]):
        if part.startswith("models--") and parts[i + 1] == "snapshots":
            repo = part.removeprefix("models--").replace("--", "/")
            return (
                f"Download it again from the Hub: `hf download {repo} --force-download` (or delete "
                f"{Path(*parts[: i + 1])} and load again)"
            )
    return "Re-download the checkpoint, or convert / save it again"


def check_safetensors_file(path: str | Path) -> None:
    """Raise :class:`CheckpointFileError` naming ``path`` unless it is a whole safetensors file.

    Reads only the header: its length, its JSON, and the data size it describes against the file size, so a
    file cut short (an interrupted download or copy, ``head -c``) is caught before any tensor is read.
    """
    path = Path(path)
    size = path.stat().st_size
    with open(path, "rb") as fh:
        prefix = fh.read(8)
        if len(prefix) < 8:
            raise CheckpointFileError(
                f"{path} is truncated ({size} bytes, not even a safetensors header). {_redo(path)}."
            )
        header_size = int.from_bytes(prefix, "little")
        if header_size > size - 8:
            raise CheckpointFileError(
                f"{path} is truncated or not a safetensors file ({size} bytes; its first 8 bytes announce a "
                f"{header_size}-byte header). {_redo(path)}."
            )
        try:
            header = json.loads(fh.read(header_size))
            end = max(
                (int(v["data_offsets"][1]) for k, v in header.items() if k != "__metadata__"), default=0
            )
        except (ValueError, TypeError, KeyError, IndexError, AttributeError) as err:
            raise CheckpointFileError(
                f"{path} is corrupt or not a safetensors file (unreadable header: {_one_line(err)}). {_redo(path)}."
            ) from None
    expected = 8 + header_size + end
    if size < expected:
        raise CheckpointFileError(
            f"{path} is truncated: {size} bytes, but its header describes {expected}. {_redo(path)}."
        )
    if size > expected:
        raise CheckpointFileError(
            f"{path} is corrupt: {size} bytes, but its header describes {expected}. {_redo(path)}."
        )


def check_weight_files(folder: str | Path) -> list[Path]:
    """The safetensors files of a checkpoint folder (``model.safetensors``, or the shards its index lists),
    each checked with :func:`check_safetensors_file`.

    Raises:
        CheckpointFileError: the weights are missing (no ``model.safetensors`` nor index, or a listed shard
            is absent), or a file is truncated or corrupt; the message names the file and what to do.
    """
    folder = Path(folder)
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        try:
            shards = sorted(set(json.loads(index.read_text(encoding="utf-8"))["weight_map"].values()))
        except (ValueError, TypeError, KeyError, AttributeError) as err:
            raise CheckpointFileError(
                f"{index} is corrupt (no readable weight_map: {_one_line(err)}). {_redo(index)}."
            ) from None
        files = [folder / shard for shard in shards]
        for path in files:
            if not path.is_file():
                raise CheckpointFileError(f"{path} is missing ({index.name} lists it). {_redo(path)}.")
    else:
        single = folder / "model.safetensors"
        if not single.is_file():
            raise CheckpointFileError(
                f"no model.safetensors (nor model.safetensors.index.json) in {folder}: the weights are missing. "
                "Put the checkpoint's model.safetensors next to its config.json, or "
                f"{_redo(single)[0].lower()}{_redo(single)[1:]}."
            )
        files = [single]
    for path in files:
        check_safetensors_file(path)
    return files


def read_safetensors(folder: str | Path) -> dict[str, torch.Tensor]:
    """All tensors of a folder's ``model.safetensors`` or of the shards its index lists (checked whole first)."""
    tensors: dict[str, torch.Tensor] = {}
    for path in check_weight_files(folder):
        try:
            tensors.update(load_file(path))
        except (SafetensorError, OSError) as err:
            raise CheckpointFileError(f"{path} cannot be read ({_one_line(err)}). {_redo(path)}.") from None
    return tensors


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
    native names here (config through :func:`convert_config_dict`, tensors through
    :func:`convert_state_dict`), checked strictly, and then handed to transformers' own loader as a
    ``config`` and a ``state_dict``, so every ``from_pretrained`` argument (``device_map``, ``dtype``,
    ``config=``, config overrides, ``output_loading_info``, ``attn_implementation`` …) means exactly what it
    means for a native folder. Native checkpoints return ``None`` and go to transformers directly; an
    original one must never reach it unmapped (every weight would stay randomly initialised).
    """
    if os.path.isfile(name_or_path):  # a weights file given directly (with config=): transformers' business
        return None
    hub_kwargs = {k: kwargs.get(k) for k in ("revision", "cache_dir", "local_files_only", "token")}
    try:
        folder = resolve_checkpoint_folder(name_or_path, **hub_kwargs)
    except ModelNotFoundError:
        if not is_hub_id(name_or_path):
            raise  # a mistyped folder: never sent to the Hub
        # transformers may still find the config (e.g. a short commit hash in the cache).
        folder = resolve_config_folder(name_or_path, **hub_kwargs)
        if folder is None:
            raise
    except Exception:
        folder = resolve_config_folder(name_or_path, **hub_kwargs)
    if folder is None:
        return None
    if not is_original_checkpoint(folder):
        _check_native_folder(folder, kwargs, model_cls.config_class.model_type)
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


def _check_native_folder(folder: Path, kwargs: dict, model_type: str) -> None:
    """Refuse, naming the file, a native folder whose weights transformers would fail on without saying which
    file (missing, truncated or corrupt ``model.safetensors``)."""
    if any(kwargs.get(k) is not None for k in ("state_dict", "gguf_file")):
        return  # the weights do not come from the folder's safetensors
    folder = folder / kwargs["subfolder"] if kwargs.get("subfolder") else folder
    if not (folder / "config.json").is_file():
        if kwargs.get("config") is None:
            raise CheckpointFileError(
                f"no config.json in {folder}: not a model folder. Pass the folder that holds the checkpoint's "
                "config.json and model.safetensors, or re-download the checkpoint."
            )
    elif read_config(folder).get("model_type", model_type) != model_type and kwargs.get("config") is None:
        return  # another model's folder: the config check says so, which matters more than its weights
    if (
        any((folder / name).is_file() for name in ("pytorch_model.bin", "pytorch_model.bin.index.json"))
        and not (folder / "model.safetensors").is_file()
        and not (folder / "model.safetensors.index.json").is_file()
    ):
        return  # a legacy .bin checkpoint: transformers reads it
    check_weight_files(folder)


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
