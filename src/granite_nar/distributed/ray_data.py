"""Transcribe a corpus on Ray Data: CPU tasks decode the audio, an actor pool transcribes, shards are written.

    manifest (jsonl / json / csv / parquet; or a list of files)
      └─ driver: read as one Arrow table; rows already in the output are dropped (resume)
           └─ ray.data.from_arrow
                ├─ map_batches(_decode)        tasks: read (local path or pyarrow URI), downmix, resample to
                │                              16 kHz; a file that cannot be read becomes a row with `error`
                ├─ map_batches(_Transcriber)   actor pool: each actor loads the model once, then
                │                              granite_nar.transcribe(on_error="skip") batch by batch
                └─ write_parquet / write_json  shards in the output folder, one per block

Every manifest column is kept; ``text``, ``draft``, ``duration_sec``, ``error``, ``warning`` and
``segments`` (JSON: start, end, text and, with word timestamps, the words) are added. A rerun reads the
keys already in the output folder and transcribes only the others; a shard left unreadable by an
interrupted run is moved aside (``.incomplete``) and its rows are done again.
"""

from __future__ import annotations

import json
import logging
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from ..transcription.formats import _drop_unfinished_line, _segment_dict

__all__ = ["DatasetReport", "read_manifest", "transcribe_dataset"]

logger = logging.getLogger(__name__)

AUDIO_COLUMNS = ("audio", "audio_filepath", "path", "file", "audio_path")
OUTPUT_COLUMNS = ("text", "draft", "duration_sec", "error", "warning", "segments")
_WAVE, _FAILED = "__wave", "__error"


class ManifestError(ValueError):
    """A manifest that cannot be read or has no audio column; the message names the file and the fix."""


@dataclass
class DatasetReport:
    """What a :func:`transcribe_dataset` run did.

    Attributes:
        rows: rows in the manifest.
        skipped: rows already in the output folder (done by an earlier run).
        transcribed: rows this run wrote with a transcript.
        failed: rows this run wrote with an ``error``.
        output_dir: where the shards are.
    """

    rows: int
    skipped: int
    transcribed: int
    failed: int
    output_dir: str


def read_manifest(
    source: str | os.PathLike | Sequence[str | os.PathLike],
    audio_column: str | None = None,
    base_dir: str | os.PathLike | None = None,
):
    """The manifest as a pyarrow Table and the name of its audio column.

    ``source`` is a ``.jsonl`` / ``.json`` (one object per line), ``.csv`` or ``.parquet`` file, or a list of
    audio paths (one column, ``audio``). Relative audio paths are resolved against ``base_dir``, by default
    the manifest's folder; URIs (``s3://``, ``gs://``, ``file://`` ...) are kept as they are.
    """
    import pyarrow as pa

    if not isinstance(source, (str, os.PathLike)):
        table = pa.table({"audio": [os.fspath(p) for p in source]})
        return table, "audio"
    path = Path(source)
    if not path.is_file():
        raise ManifestError(f"{path}: no such manifest file")
    suffix = path.suffix.lower()
    try:
        if suffix in (".jsonl", ".json", ".ndjson"):
            from pyarrow import json as pa_json

            table = pa_json.read_json(path)
        elif suffix == ".csv":
            from pyarrow import csv as pa_csv

            table = pa_csv.read_csv(path)
        elif suffix == ".parquet":
            import pyarrow.parquet as pq

            table = pq.read_table(path)
        else:
            raise ManifestError(f"{path}: unknown manifest type {suffix!r}; use .jsonl, .csv or .parquet")
    except (pa.ArrowInvalid, OSError) as err:
        raise ManifestError(f"{path}: not a readable manifest: {err}") from None
    if audio_column is None:
        audio_column = next((c for c in AUDIO_COLUMNS if c in table.column_names), None)
        if audio_column is None:
            raise ManifestError(
                f"{path}: no audio column; name it one of {', '.join(AUDIO_COLUMNS)} or pass audio_column= "
                f"(columns: {', '.join(table.column_names)})"
            )
    elif audio_column not in table.column_names:
        raise ManifestError(f"{path}: no column {audio_column!r} (columns: {', '.join(table.column_names)})")
    clash = sorted(set(table.column_names) & set(OUTPUT_COLUMNS))
    if clash:
        raise ManifestError(f"{path}: columns {clash} would be overwritten by the output; rename them")
    base = Path(base_dir) if base_dir is not None else path.parent
    resolved = [
        _resolve(str(value), base) if value is not None else None for value in table[audio_column].to_pylist()
    ]
    index = table.column_names.index(audio_column)
    return table.set_column(index, audio_column, pa.array(resolved, pa.string())), audio_column


def _resolve(value: str, base: Path) -> str:
    if "://" in value or os.path.isabs(value):
        return value
    return str(base / value)


def completed_keys(output_dir: str | os.PathLike, key: str) -> set:
    """The keys of the rows already written to ``output_dir`` (parquet or jsonl shards). A shard that an
    interrupted run left unreadable is renamed to ``*.incomplete``; a jsonl shard's unfinished last line is
    dropped."""
    import pyarrow.parquet as pq

    done: set = set()
    folder = Path(output_dir)
    if not folder.is_dir():
        return done
    for shard in sorted(folder.iterdir()):
        if shard.suffix == ".parquet":
            try:
                done.update(pq.read_table(shard, columns=[key])[key].to_pylist())
            except Exception as err:  # noqa: BLE001 - a shard cut short by an interrupted run
                warnings.warn(
                    f"{shard}: unreadable ({err}); moved aside, its rows will be done again", stacklevel=2
                )
                shard.rename(shard.with_suffix(".parquet.incomplete"))
        elif shard.suffix in (".json", ".jsonl"):
            with open(shard, "r+b") as handle:
                _drop_unfinished_line(handle)
            with open(shard, encoding="utf-8") as handle:
                done.update(json.loads(line)[key] for line in handle if line.strip())
    return done


def _read_bytes(uri: str) -> bytes:
    """A file's bytes from a URI that pyarrow's file systems understand (s3, gs, hdfs, file ...)."""
    from pyarrow import fs

    filesystem, path = fs.FileSystem.from_uri(uri)
    with filesystem.open_input_stream(path) as stream:
        return stream.read()


def _decode(batch, audio_column: str, allow_truncated: bool):
    """Ray task: audio files → 16 kHz waveforms (``__wave``), or the reason they cannot be read (``__error``)."""
    import pyarrow as pa

    from ..audio.inputs import prepare_waveform
    from ..audio.waveform import InvalidAudioError

    waves, errors = [], []
    for value in batch[audio_column].to_pylist():
        try:
            if value is None:
                raise InvalidAudioError(f"the row has no {audio_column!r} value")
            if "://" in value and not value.startswith("file://"):
                data = _read_bytes(value)
                wave = prepare_waveform(data, allow_truncated=allow_truncated)
            else:
                local = value.removeprefix("file://")
                wave = prepare_waveform(local, allow_truncated=allow_truncated)
            waves.append(wave.numpy().astype(np.float32))
            errors.append(None)
        except InvalidAudioError as err:
            message = str(err)
            if value is not None and not message.startswith(value):
                message = f"{value}: {message.removeprefix('audio bytes: ')}"
            waves.append(np.zeros(0, np.float32))
            errors.append(message)
        except OSError as err:  # a URI that cannot be fetched
            waves.append(np.zeros(0, np.float32))
            errors.append(f"{value}: cannot be read: {err}")
    batch = batch.append_column(_WAVE, pa.array(waves, pa.list_(pa.float32())))
    return batch.append_column(_FAILED, pa.array(errors, pa.string()))


class _Transcriber:
    """Ray actor: loads the model once, then transcribes batch after batch."""

    def __init__(self, model: str, options: dict[str, Any]):
        import torch
        from transformers.utils import logging as hf_logging

        from ..transcription.transcribe import load_model

        hf_logging.disable_progress_bar()
        if options.get("threads"):
            torch.set_num_threads(options["threads"])
        self.model, self.processor = load_model(
            model, device=options.get("device"), dtype=options.get("dtype")
        )
        self.options = options

    def __call__(self, batch):
        import pyarrow as pa

        from ..transcription.transcribe import transcribe

        waves = batch[_WAVE].to_numpy(zero_copy_only=False)
        failed = batch[_FAILED].to_pylist()
        good = [i for i, error in enumerate(failed) if error is None]
        results = transcribe(
            [{"array": np.asarray(waves[i], np.float32), "sampling_rate": 16000} for i in good],
            self.model,
            self.processor,
            batch_size=self.options["batch_size"],
            num_editing_steps=self.options["num_editing_steps"],
            return_drafts=True,
            on_error="skip",
            word_timestamps=self.options["word_timestamps"],
            progress=False,
        )
        columns: dict[str, list] = {name: [None] * len(failed) for name in OUTPUT_COLUMNS}
        for i, error in enumerate(failed):
            columns["error"][i] = error
        for i, result in zip(good, results, strict=True):
            columns["text"][i] = result.text
            columns["draft"][i] = result.draft
            columns["duration_sec"][i] = result.duration_sec
            columns["error"][i] = result.error
            columns["warning"][i] = result.warning
            if result.segments is not None:
                columns["segments"][i] = json.dumps(
                    [_segment_dict(s, False) for s in result.segments], ensure_ascii=False
                )
        out = batch.drop_columns([_WAVE, _FAILED])
        for name in OUTPUT_COLUMNS:
            kind = pa.float64() if name == "duration_sec" else pa.string()
            out = out.append_column(name, pa.array(columns[name], kind))
        return out


def transcribe_dataset(
    source: str | os.PathLike | Sequence[str | os.PathLike],
    output_dir: str | os.PathLike,
    model: str | os.PathLike,
    *,
    audio_column: str | None = None,
    id_column: str | None = None,
    base_dir: str | os.PathLike | None = None,
    output_format: Literal["parquet", "jsonl"] = "parquet",
    num_workers: int = 1,
    threads_per_worker: int = 1,
    gpus_per_worker: float | None = None,
    decode_cpus: float = 0.0,
    decode_tasks: int | None = None,
    batch_size: int = 8,
    rows_per_shard: int = 256,
    device: str | None = None,
    dtype: str | None = None,
    num_editing_steps: int = 1,
    word_timestamps: bool = False,
    allow_truncated: bool = False,
    address: str | None = None,
    ray_init_kwargs: dict[str, Any] | None = None,
) -> DatasetReport:
    """Transcribe every row of a manifest on Ray Data and write the results as shards in ``output_dir``.

    Args:
        source: a manifest (``.jsonl``, ``.csv``, ``.parquet``) with a column of audio paths or URIs, or a
            list of audio paths (see :func:`read_manifest`).
        output_dir: the folder for the shards (``*.parquet`` or ``*.json`` JSON-lines files). Rows already
            there are skipped, so an interrupted run is resumed by running it again.
        model: a model folder or Hub id, loaded once by each actor (it must be reachable from every node).
        audio_column: the column of audio paths (default: the first of ``audio``, ``audio_filepath``,
            ``path``, ``file``, ``audio_path``). id_column: the column that identifies a row for resuming
            (default: the audio column).
        base_dir: the folder relative audio paths are resolved against (default: the manifest's folder).
        num_workers: transcription actors. ``threads_per_worker``: torch threads (and reserved CPUs) per
            actor. ``gpus_per_worker``: GPUs per actor (default 1 when ``device`` is ``"cuda"``, else 0).
        decode_cpus: CPUs reserved per decoding and writing task. 0 (default) lets them, light next to
            the model, run beside actors that hold every CPU. decode_tasks: decoding tasks at a time
            (default: ``num_workers``; raise it when decoding cannot keep the actors busy).
        batch_size: rows per actor batch (and per encoder batch). rows_per_shard: rows per output block.
        device, dtype, num_editing_steps, word_timestamps, allow_truncated: as for
            :func:`granite_nar.transcribe`.
        address: the Ray cluster: ``None`` joins the Ray instance already running in this process or
            starts a local one; ``"auto"`` the cluster of this node; ``"ray://head:10001"`` a remote one.
        ray_init_kwargs: more arguments for ``ray.init`` when this call starts Ray (e.g. ``num_cpus``). A
            local Ray keeps its session under ``/tmp/ray`` when ``TMPDIR`` is too long for the Unix
            socket paths Ray makes there.

    Returns:
        A :class:`DatasetReport`.
    """
    try:
        import ray
    except ImportError as err:
        raise ImportError(
            "transcribe_dataset needs Ray Data: pip install 'ray[data]' (or, from a clone, the ray extra: "
            "pip install -e '.[ray]')"
        ) from err
    if output_format not in ("parquet", "jsonl"):
        raise ValueError(f"output_format must be 'parquet' or 'jsonl', got {output_format!r}")
    for name, value in (
        ("num_workers", num_workers),
        ("threads_per_worker", threads_per_worker),
        ("batch_size", batch_size),
        ("rows_per_shard", rows_per_shard),
    ):
        if value < 1:
            raise ValueError(f"{name} must be >= 1, got {value}")
    table, audio_column = read_manifest(source, audio_column, base_dir)
    key = id_column or audio_column
    if key not in table.column_names:
        raise ManifestError(f"no column {key!r} to identify rows (columns: {', '.join(table.column_names)})")
    keys = table[key].to_pylist()
    if len(set(keys)) != len(keys):
        raise ManifestError(
            f"column {key!r} repeats values; pass id_column= with a column that is unique per row"
        )
    output = Path(output_dir)
    done = completed_keys(output, key)
    import pyarrow as pa
    import pyarrow.compute as pc

    todo = (
        table.filter(pc.invert(pc.is_in(table[key], value_set=pa.array(list(done), table[key].type))))
        if done
        else table
    )
    skipped = table.num_rows - todo.num_rows
    if todo.num_rows == 0:
        return DatasetReport(table.num_rows, skipped, 0, 0, str(output))
    output.mkdir(parents=True, exist_ok=True)

    started = not ray.is_initialized()
    if started:
        ray.init(address=address, **_local_ray_kwargs(address, ray_init_kwargs))
    try:
        if gpus_per_worker is None:
            gpus_per_worker = 1.0 if str(device or "").startswith("cuda") else 0.0
        options = {
            "threads": threads_per_worker,
            "device": device,
            "dtype": dtype,
            "batch_size": batch_size,
            "num_editing_steps": num_editing_steps,
            "word_timestamps": word_timestamps,
        }
        shards = [todo.slice(start, rows_per_shard) for start in range(0, todo.num_rows, rows_per_shard)]
        ds = ray.data.from_arrow(shards)
        ds = ds.map_batches(
            _decode,
            batch_format="pyarrow",
            batch_size=batch_size,
            num_cpus=decode_cpus,
            concurrency=decode_tasks or num_workers,  # a few long-lived workers, not one process per block
            fn_kwargs={"audio_column": audio_column, "allow_truncated": allow_truncated},
        )
        ds = ds.map_batches(
            _Transcriber,
            fn_constructor_kwargs={"model": os.fspath(model), "options": options},
            batch_format="pyarrow",
            batch_size=batch_size,
            compute=ray.data.ActorPoolStrategy(size=num_workers),
            num_cpus=threads_per_worker,
            num_gpus=gpus_per_worker,
        )
        light = {"num_cpus": decode_cpus}  # like decoding: never waits behind actors that hold every CPU
        if output_format == "parquet":
            ds.write_parquet(str(output), ray_remote_args=light)
        else:
            ds.write_json(str(output), ray_remote_args=light)
    finally:
        if started:
            ray.shutdown()
    written = _rows_written(output, key, set(todo[key].to_pylist()))
    failed = sum(1 for error in written if error is not None)
    return DatasetReport(table.num_rows, skipped, len(written) - failed, failed, str(output))


# "/ray/session_<date>_<time>_<us>_<pid>/sockets/plasma_store" under the temporary folder; Unix socket
# paths stop at 107 bytes.
_SOCKET_SUFFIX = 68
_UNIX_PATH_MAX = 107


def _local_ray_kwargs(address: str | None, kwargs: dict[str, Any] | None) -> dict[str, Any]:
    """``ray.init`` arguments; a local Ray whose socket paths under a long ``TMPDIR`` would not fit a Unix
    socket path keeps its session under ``/tmp/ray`` instead (``RAY_TMPDIR`` still decides when set)."""
    import tempfile

    kwargs = dict(kwargs or {})
    if address is None and "_temp_dir" not in kwargs and "RAY_TMPDIR" not in os.environ:
        if len(tempfile.gettempdir()) + _SOCKET_SUFFIX > _UNIX_PATH_MAX:
            kwargs["_temp_dir"] = "/tmp/ray"
    return kwargs


def _rows_written(output: Path, key: str, keys: set) -> list[str | None]:
    """The ``error`` values of the rows of ``keys`` now in the output folder."""
    import pyarrow.parquet as pq

    errors = []
    for shard in sorted(output.iterdir()):
        if shard.suffix == ".parquet":
            rows = pq.read_table(shard, columns=[key, "error"]).to_pylist()
        elif shard.suffix in (".json", ".jsonl"):
            rows = [
                json.loads(line) for line in shard.read_text(encoding="utf-8").splitlines() if line.strip()
            ]
        else:
            continue
        errors += [row["error"] for row in rows if row[key] in keys]
    return errors
