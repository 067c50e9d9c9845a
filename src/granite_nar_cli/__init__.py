"""The ``granite-nar`` console entry point: argument parsing, ``--help`` and ``--version``.

It lives outside the ``granite_nar`` package on purpose. Importing ``granite_nar`` registers its classes with
the transformers Auto factories (``import granite_nar`` then ``AutoModelForCTC.from_pretrained(...)``), which
imports torch and transformers: over a second before anything runs. This module imports neither, so
``granite-nar --help``, ``granite-nar transcribe --help``, ``--version`` and usage errors answer at once;
a command that does work imports :mod:`granite_nar.cli` (and with it the package) only after its
arguments have been parsed. ``granite_nar.cli.main`` and ``python -m granite_nar`` are this same ``main``.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from collections.abc import Sequence

from .argtypes import non_negative_int as _non_negative_int
from .argtypes import positive_float as _positive_float
from .argtypes import positive_int as _positive_int
from .evaluate import add_evaluate_parser
from .finetune import add_finetune_parser

__all__ = ["main", "build_parser", "version", "model_problem"]

EXIT_OK, EXIT_SOME_FAILED, EXIT_USAGE = 0, 1, 2
# What a Hub repo id looks like (org/name); granite_nar.checkpoints.loading.is_hub_id checks the rest.
_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")


def version() -> str:
    """The installed ``granite_nar`` version, read from the package metadata (no import of the package)."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as dist_version

    try:
        return dist_version("granite_nar")
    except PackageNotFoundError:  # running from a source tree that is not installed
        import granite_nar

        return granite_nar.__version__


class _VersionAction(argparse.Action):
    """``--version``: like argparse's own, but the version is looked up only when asked for."""

    def __init__(self, option_strings, dest=argparse.SUPPRESS, default=argparse.SUPPRESS, help=None):
        super().__init__(option_strings, dest=dest, default=default, nargs=0, help=help)

    def __call__(self, parser, namespace, values, option_string=None):
        print(f"{parser.prog} {version()}")
        parser.exit()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="granite-nar",
        description="Granite Speech NAR speech recognition (non-autoregressive, by transcript editing).",
    )
    parser.add_argument("--version", action=_VersionAction, help="print the granite_nar version and exit")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    tr = sub.add_parser(
        "transcribe",
        help="transcribe audio files",
        description="Transcribe audio files (wav, flac, ogg, mp3, aiff; m4a/mp4/aac with ffmpeg; any rate, resampled to 16 kHz; multi-channel "
        "audio is averaged to mono). Transcripts go to stdout (or --output-dir) as each file finishes, longest files first; problems go to stderr.",
    )
    tr.add_argument("files", nargs="+", metavar="FILE", help="audio files")
    tr.add_argument(
        "--model",
        "-m",
        required=True,
        help="model folder (native or original layout) or Hub id (org/name); HF_HUB_OFFLINE=1 reads only "
        "the Hub cache",
    )
    tr.add_argument("--batch-size", "-b", type=_positive_int, default=8, help="utterances per batch (8)")
    tr.add_argument("--device", default=None, help="cpu, cuda, cuda:1, ... (default: cuda if available)")
    tr.add_argument(
        "--dtype", default=None, choices=["float32", "bfloat16", "float16"], help="compute precision"
    )
    tr.add_argument(
        "--compile",
        action="store_true",
        help="torch.compile the repeated blocks: opt-in, the first calls compile (docs/performance.md)",
    )
    tr.add_argument(
        "--quantize",
        default=None,
        choices=["int8"],
        help="dynamic int8 linear layers on the CPU: opt-in, float32 model (docs/performance.md)",
    )
    tr.add_argument(
        "--threads",
        type=_positive_int,
        default=None,
        metavar="N",
        help="CPU threads for torch (torch.set_num_threads); 1 is fastest on a busy machine "
        "(default: torch's choice)",
    )
    tr.add_argument(
        "--editing-steps", type=_non_negative_int, default=1, help="editing passes over the CTC draft (1)"
    )
    tr.add_argument(
        "--output",
        "--output-format",
        "-o",
        dest="output",
        choices=["txt", "json", "jsonl", "srt", "vtt", "tsv", "all"],
        default="txt",
        help="txt: the transcript (PATH<TAB>TRANSCRIPT per line for several files); jsonl: one JSON object "
        "per file (path, text, duration_sec, error, segments); json, srt, vtt, tsv: one document per file "
        "(to stdout for a single file, else --output-dir is needed); all: txt, json, srt, vtt and tsv files "
        "in --output-dir. Results are written as each file finishes.",
    )
    tr.add_argument(
        "--output-dir",
        "-d",
        default=None,
        metavar="DIR",
        help="write DIR/<name>.<format> per input (jsonl: DIR/transcripts.jsonl); a rerun skips inputs whose "
        "outputs are already there",
    )
    tr.add_argument(
        "--overwrite", action="store_true", help="with --output-dir, redo inputs whose outputs exist"
    )
    tr.add_argument(
        "--word-timestamps",
        action="store_true",
        help="word start/end times and confidences in json/jsonl (always computed for srt and vtt)",
    )
    tr.add_argument(
        "--max-segment-seconds",
        type=_positive_float,
        default=30.0,
        metavar="S",
        help="recordings longer than this are cut at pauses into segments of at most S seconds (30)",
    )
    tr.add_argument(
        "--no-long-form",
        action="store_true",
        help="edit every file whole, however long (the editor degrades past a few minutes)",
    )
    tr.add_argument(
        "--max-cue-seconds", type=_positive_float, default=6.0, metavar="S", help="longest subtitle cue (6)"
    )
    tr.add_argument(
        "--max-line-chars",
        type=_positive_int,
        default=42,
        metavar="N",
        help="longest subtitle line in characters (42)",
    )
    tr.add_argument(
        "--max-lines", type=_positive_int, default=2, metavar="N", help="lines per subtitle cue (2)"
    )
    tr.add_argument("--drafts", action="store_true", help="also print the encoder's CTC draft")
    tr.add_argument(
        "--no-resample", action="store_true", help="refuse files not at 16 kHz instead of resampling them"
    )
    tr.add_argument(
        "--allow-truncated",
        action="store_true",
        help="transcribe the part of a truncated file that is present (with a warning) instead of refusing it",
    )
    bar = tr.add_mutually_exclusive_group()
    bar.add_argument(
        "--progress", dest="progress", action="store_true", default=None, help="show a progress bar"
    )
    bar.add_argument("--no-progress", dest="progress", action="store_false", help="never show a progress bar")

    _add_serve_parser(sub)
    _add_dataset_parser(sub)
    add_finetune_parser(sub)
    add_evaluate_parser(sub)
    return parser


def _add_dataset_parser(sub) -> None:
    ds = sub.add_parser(
        "transcribe-dataset",
        help="transcribe a corpus on Ray Data (a local Ray or a cluster)",
        description="Transcribe every row of a manifest (jsonl, csv or parquet with a column of audio paths or "
        "URIs), or a list of audio files, on Ray Data: decoding as tasks, an actor pool that loads the model "
        "once per worker, results written as parquet or JSON-lines shards in --output. A rerun skips the rows "
        "already written. Needs the ray extra (from a clone: pip install -e '.[ray]'). See docs/scale_out.md.",
    )
    ds.add_argument("inputs", nargs="+", metavar="MANIFEST_OR_FILE", help="one manifest, or audio files")
    ds.add_argument("--model", "-m", required=True, help="model folder or Hub id (reachable from every node)")
    ds.add_argument("--output", "-o", required=True, metavar="DIR", help="folder for the shards")
    ds.add_argument(
        "--format", choices=["parquet", "jsonl"], default="parquet", help="shard format (parquet)"
    )
    ds.add_argument(
        "--num-workers", type=_positive_int, default=1, metavar="N", help="transcription actors (1)"
    )
    ds.add_argument(
        "--threads-per-worker", type=_positive_int, default=1, metavar="N", help="torch threads per actor (1)"
    )
    ds.add_argument(
        "--gpus-per-worker",
        type=float,
        default=None,
        metavar="G",
        help="GPUs per actor (1 with --device cuda)",
    )
    ds.add_argument("--batch-size", "-b", type=_positive_int, default=8, help="rows per actor batch (8)")
    ds.add_argument(
        "--rows-per-shard", type=_positive_int, default=256, metavar="N", help="rows per shard (256)"
    )
    ds.add_argument("--audio-column", default=None, help="column of audio paths (default: audio, path, ...)")
    ds.add_argument(
        "--id-column", default=None, help="column that identifies a row (default: the audio column)"
    )
    ds.add_argument(
        "--address",
        default=None,
        help="Ray cluster: auto (this node's cluster), ray://HEAD:10001, or none to start a local Ray",
    )
    ds.add_argument(
        "--num-cpus", type=_positive_int, default=None, metavar="N", help="CPUs of a local Ray started here"
    )
    ds.add_argument("--device", default=None, help="cpu, cuda (default: cuda if available)")
    ds.add_argument(
        "--dtype", default=None, choices=["float32", "bfloat16", "float16"], help="compute precision"
    )
    ds.add_argument("--editing-steps", type=_non_negative_int, default=1, help="editing passes (1)")
    ds.add_argument("--word-timestamps", action="store_true", help="words with times in the segments column")
    ds.add_argument(
        "--allow-truncated", action="store_true", help="transcribe what is present of truncated files"
    )


def _add_serve_parser(sub) -> None:
    sv = sub.add_parser(
        "serve",
        help="serve the model behind the OpenAI audio transcription API",
        description="Serve the model over HTTP: POST /v1/audio/transcriptions (OpenAI-compatible), GET "
        "/v1/models, /health, /ready and /metrics. Requests are packed into shared batches by one model "
        "worker. Needs the serve extra (from a clone: pip install -e '.[serve]'). See docs/serving.md.",
    )
    sv.add_argument("--model", "-m", required=True, help="model folder (native or original layout) or Hub id")
    sv.add_argument("--host", default="127.0.0.1", help="address to listen on (127.0.0.1: this machine only)")
    sv.add_argument("--port", type=int, default=8000, help="port to listen on; 0 picks a free one (8000)")
    sv.add_argument(
        "--api-key",
        default=None,
        help="require 'Authorization: Bearer KEY' on every endpoint but /health and /ready "
        "(default: the GRANITE_NAR_API_KEY environment variable; none: no key is checked)",
    )
    sv.add_argument(
        "--served-model-name",
        nargs="+",
        default=None,
        metavar="NAME",
        help="the model names requests may give (default: the model folder's name)",
    )
    sv.add_argument(
        "--languages",
        default="en",
        metavar="CODES",
        help="comma-separated language codes a request's 'language' may name (en); the model is not told "
        "the language, so other codes are refused",
    )
    sv.add_argument(
        "--max-batch-size",
        type=_positive_int,
        default=16,
        metavar="N",
        help="clips per encoder batch and segments per editor pass (16; 1 turns batching off)",
    )
    sv.add_argument(
        "--max-batch-delay-ms",
        type=float,
        default=20.0,
        metavar="MS",
        help="how long a request may wait for others to share its batch (20)",
    )
    sv.add_argument(
        "--max-batch-seconds",
        type=_positive_float,
        default=480.0,
        metavar="S",
        help="audio per encoder batch of short clips (480)",
    )
    sv.add_argument(
        "--max-queue",
        type=_positive_int,
        default=64,
        metavar="N",
        help="unfinished requests held; more get 503 with Retry-After (64)",
    )
    sv.add_argument(
        "--max-upload-mb", type=_positive_float, default=25.0, metavar="MB", help="largest upload (25)"
    )
    sv.add_argument(
        "--max-audio-seconds",
        type=_positive_float,
        default=3600.0,
        metavar="S",
        help="longest audio per request (3600)",
    )
    sv.add_argument(
        "--request-timeout",
        type=_positive_float,
        default=600.0,
        metavar="S",
        help="a request not done by then gets 504 and its work is dropped (600)",
    )
    sv.add_argument("--device", default=None, help="cpu, cuda, cuda:1, ... (default: cuda if available)")
    sv.add_argument(
        "--dtype", default=None, choices=["float32", "bfloat16", "float16"], help="compute precision"
    )
    sv.add_argument(
        "--quantize",
        default=None,
        choices=["int8"],
        help="dynamic int8 linear layers on the CPU: opt-in, float32 model (docs/performance.md)",
    )
    sv.add_argument("--threads", type=_positive_int, default=None, metavar="N", help="CPU threads for torch")
    sv.add_argument(
        "--num-editing-steps",
        "--editing-steps",
        dest="editing_steps",
        type=_non_negative_int,
        default=1,
        help="editing passes over the CTC draft (1)",
    )
    sv.add_argument(
        "--max-segment-seconds",
        type=_positive_float,
        default=30.0,
        metavar="S",
        help="longer uploads are cut at pauses into segments of at most S seconds (30)",
    )
    sv.add_argument(
        "--log-level",
        default="info",
        choices=["critical", "error", "warning", "info", "debug"],
        help="(info)",
    )


def no_such_folder(ref: str) -> str:
    """The message for a --model that is neither a folder nor a Hub id."""
    return (
        f"--model {ref}: no such model folder ({os.path.abspath(os.path.expanduser(ref))} does not exist). "
        "Check the path; a Hugging Face Hub id has the form org/name, e.g. ibm-granite/granite-speech-4.1-2b-nar"
    )


def model_problem(ref: str) -> str | None:
    """Why ``--model ref`` cannot name a model, or ``None`` if it is a folder or reads as a Hub id.

    Checked before anything heavy is imported, so a mistyped folder (``-m tiny-synth``) is refused at once
    instead of being looked up on the Hub.
    """
    if os.path.isdir(os.path.expanduser(ref)):
        return None
    if os.path.exists(ref):
        return (
            f"--model {ref}: a file, not a model folder; pass the folder that holds its config.json and "
            "model.safetensors"
        )
    if not _HUB_ID.fullmatch(ref):
        return no_such_folder(ref)
    return None


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status (the console script passes it to ``sys.exit``)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:  # argparse has printed usage and the error (or --help / --version) already
        return int(exit_.code) if isinstance(exit_.code, int) else EXIT_USAGE
    local = args.command in ("transcribe", "serve", "finetune", "evaluate") or (
        args.command == "transcribe-dataset" and args.address is None
    )
    problem = model_problem(args.model) if local else None
    if problem is not None:
        print(f"{parser.prog}: error: {problem}", file=sys.stderr)
        return EXIT_USAGE
    from granite_nar.cli import run  # the heavy part: torch, transformers, the model

    return run(args)


if __name__ == "__main__":
    sys.exit(main())
