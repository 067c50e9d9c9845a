"""``granite-nar``: transcribe audio files from the command line.

    granite-nar transcribe FILE... --model PATH_OR_HUB_ID [--batch-size N] [--device DEV] [--dtype T]
                           [--editing-steps K] [--output txt|jsonl] [--drafts] [--no-resample] [--progress]

Exit status: 0 when every file was transcribed, 1 when some could not be (each reported on stderr in one
line, and as a record with an "error" field in jsonl output), 2 for usage errors (bad options, a model
that cannot be loaded).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import warnings
from collections.abc import Sequence

__all__ = ["main"]

EXIT_OK, EXIT_SOME_FAILED, EXIT_USAGE = 0, 1, 2
# A config field that marks a model with random weights (the test suite's demo models carry it).
RANDOM_WEIGHTS_MARKER = "granite_nar_random_demo"


class _UsageError(Exception):
    """A problem with the command line or its model: reported in one line, exit status 2."""


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="granite-nar",
        description="Granite Speech NAR speech recognition (non-autoregressive, by transcript editing).",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    tr = sub.add_parser(
        "transcribe",
        help="transcribe audio files",
        description="Transcribe audio files (wav, flac, ogg; any rate, resampled to 16 kHz; multi-channel "
        "audio is averaged to mono). Transcripts go to stdout in input order; problems go to stderr.",
    )
    tr.add_argument("files", nargs="+", metavar="FILE", help="audio files")
    tr.add_argument("--model", "-m", required=True, help="model folder (native or original layout) or Hub id")
    tr.add_argument("--batch-size", "-b", type=_positive_int, default=8, help="utterances per batch (8)")
    tr.add_argument("--device", default=None, help="cpu, cuda, cuda:1, ... (default: cuda if available)")
    tr.add_argument(
        "--dtype", default=None, choices=["float32", "bfloat16", "float16"], help="compute precision"
    )
    tr.add_argument(
        "--editing-steps", type=_non_negative_int, default=1, help="editing passes over the CTC draft (1)"
    )
    tr.add_argument(
        "--output",
        "-o",
        choices=["txt", "jsonl"],
        default="txt",
        help="txt: the transcript (PATH<TAB>TRANSCRIPT per line for several files); jsonl: one JSON "
        "object per file with path, text, duration_sec, error (and draft)",
    )
    tr.add_argument("--drafts", action="store_true", help="also print the encoder's CTC draft")
    tr.add_argument(
        "--no-resample", action="store_true", help="refuse files not at 16 kHz instead of resampling them"
    )
    bar = tr.add_mutually_exclusive_group()
    bar.add_argument(
        "--progress", dest="progress", action="store_true", default=None, help="show a progress bar"
    )
    bar.add_argument("--no-progress", dest="progress", action="store_false", help="never show a progress bar")

    return parser


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def _quiet_libraries():
    """Keep stdout/stderr for transcripts and our own one-line messages; returns a function that undoes it
    (``main`` also runs in-process, from tests and notebooks)."""
    from transformers.utils import logging as hf_logging

    verbosity, bars = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    hub_logger = logging.getLogger("huggingface_hub")
    hub_level = hub_logger.level
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    hub_logger.setLevel(logging.ERROR)

    def restore() -> None:
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()
        hub_logger.setLevel(hub_level)

    return restore


def _error(message: str) -> None:
    print(f"granite-nar: error: {_one_line(message)}", file=sys.stderr)


def _one_line(message: str) -> str:
    return " ".join(str(message).split())


def _check_device(device: str | None):
    if device is None:
        return None
    import torch

    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError) as err:
        raise _UsageError(f"--device {device!r}: {err}") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise _UsageError(f"--device {device}: CUDA is not available on this machine")
    return dev


def _looks_local(ref: str) -> bool:
    """A path rather than a Hub id (``org/name``): exists, is absolute or explicit-relative, or has 2+ parts."""
    return (
        os.path.exists(ref)
        or ref.startswith(("/", "./", "../", "~", "."))
        or os.path.isabs(ref)
        or ref.replace(os.sep, "/").count("/") > 1
    )


def _transcribe(args: argparse.Namespace) -> int:
    from .transcription.transcribe import ShortAudioWarning, load_model, transcribe

    device = _check_device(args.device)
    model_ref = args.model
    if _looks_local(model_ref) and not os.path.isdir(model_ref):
        raise _UsageError(f"--model {model_ref}: no such folder")
    try:
        model, processor = load_model(model_ref, device=device, dtype=args.dtype)
    except Exception as err:  # any loading failure is one line for the user, not a traceback
        raise _UsageError(f"cannot load the model from {model_ref}: {err}") from None
    if getattr(model.config, RANDOM_WEIGHTS_MARKER, False):
        print(
            f"granite-nar: warning: {model_ref} has RANDOM weights (a demo model); its transcripts are meaningless",
            file=sys.stderr,
        )

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ShortAudioWarning)  # reported per file below instead
        results = transcribe(
            args.files,
            model=model,
            processor=processor,
            batch_size=args.batch_size,
            num_editing_steps=args.editing_steps,
            return_drafts=args.drafts,
            progress=args.progress,
            on_error="skip",
            resample=not args.no_resample,
        )

    several = len(args.files) > 1
    for result in results:
        if result.error is not None:
            _error(result.error)
        elif result.warning is not None:
            print(f"granite-nar: warning: {_one_line(result.warning)}", file=sys.stderr)
        if args.output == "jsonl":
            record = {
                "path": result.source,
                "text": result.text,
                "duration_sec": result.duration_sec,
                "error": result.error,
            }
            if args.drafts:
                record["draft"] = result.draft
            if result.warning is not None:
                record["warning"] = result.warning
            print(json.dumps(record, ensure_ascii=False), flush=True)
        elif result.error is None:
            fields = [result.source] if several else []
            fields.append(result.text)
            if args.drafts:
                fields.append(f"draft: {result.draft}")
            print("\t".join(fields), flush=True)
    failed = sum(r.error is not None for r in results)
    if failed:
        print(f"granite-nar: {failed} of {len(results)} file(s) failed", file=sys.stderr)
        return EXIT_SOME_FAILED
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status (the console script passes it to ``sys.exit``)."""
    parser = _build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:  # argparse has printed usage and the error already
        return int(exit_.code) if isinstance(exit_.code, int) else EXIT_USAGE
    restore = _quiet_libraries()
    try:
        return _transcribe(args)
    except _UsageError as err:
        _error(str(err))
        return EXIT_USAGE
    except ImportError as err:  # e.g. soundfile missing: say how to install it
        _error(str(err))
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("granite-nar: interrupted", file=sys.stderr)
        return 130
    finally:
        restore()


if __name__ == "__main__":
    sys.exit(main())
