"""``granite-nar``: transcribe audio files, serve the model, or run a corpus on Ray, from the command line.

    granite-nar transcribe FILE... --model PATH_OR_HUB_ID [--batch-size N] [--device DEV] [--dtype T]
                           [--quantize int8] [--compile]
                           [--threads N] [--editing-steps K] [--output txt|json|jsonl|srt|vtt|tsv|all]
                           [--output-dir DIR] [--word-timestamps] [--drafts] [--no-resample]
                           [--allow-truncated] [--progress]
    granite-nar serve --model M [--host H] [--port P] [--api-key KEY] ...        (docs/serving.md)
    granite-nar transcribe-dataset MANIFEST --model M --output DIR [--num-workers N] ...  (docs/scale_out.md)
    granite-nar finetune --model M --train-manifest F --output-dir DIR [--preset P] ...  (docs/training.md)
    granite-nar evaluate MANIFEST --model M [--editing-steps K] [--slice-by FIELD[:EDGES] ...] ...  (docs/evaluation.md)
    granite-nar --version

Exit status: 0 when every file was transcribed, 1 when some could not be (each reported on stderr in one
line, and as a record with an "error" field in jsonl output), 2 for usage errors (bad options, a model
that cannot be loaded).

The arguments are parsed by :mod:`granite_nar_cli` (outside this package, so that ``--help`` and
``--version`` need neither torch nor transformers); this module runs a parsed command.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import warnings

from granite_nar_cli import EXIT_OK, EXIT_SOME_FAILED, EXIT_USAGE, main, model_problem, no_such_folder

__all__ = ["main", "run"]

# A config field that marks a model with random weights (the test suite's demo models carry it).
RANDOM_WEIGHTS_MARKER = "granite_nar_random_demo"


class _UsageError(Exception):
    """A problem with the command line or its model: reported in one line, exit status 2."""


def _quiet_libraries():
    """Keep stdout/stderr for transcripts and our own one-line messages; returns a function that undoes it
    (``main`` also runs in-process, from tests and notebooks).

    transformers' own bars ("Loading weights") are switched off, but huggingface_hub's download bars stay on
    (unless ``HF_HUB_DISABLE_PROGRESS_BARS`` is set), so that fetching a Hub id shows its progress on stderr.
    """
    import huggingface_hub.utils as hub_utils
    from huggingface_hub import constants as hub_constants
    from transformers.utils import logging as hf_logging

    verbosity, bars = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    hub_bars_off = hub_utils.are_progress_bars_disabled()
    hub_logger = logging.getLogger("huggingface_hub")
    hub_level = hub_logger.level
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()  # also switches huggingface_hub's bars off ...
    if not hub_constants.HF_HUB_DISABLE_PROGRESS_BARS:
        hub_utils.enable_progress_bars()  # ... which show download progress: back on
    hub_logger.setLevel(logging.ERROR)

    def restore() -> None:
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()
        if hub_bars_off:
            hub_utils.disable_progress_bars()
        elif not hub_constants.HF_HUB_DISABLE_PROGRESS_BARS:
            hub_utils.enable_progress_bars()
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


def _check_model_ref(model_ref: str) -> None:
    """Refuse a --model that is neither a folder nor a Hub id (never sent to the Hub), and say when a Hub id
    is about to be looked up online (which can take a while, or time out without a network)."""
    from huggingface_hub import constants as hub_constants

    from .checkpoints.loading import is_hub_id

    problem = model_problem(model_ref)
    if problem is None and not os.path.isdir(model_ref) and not is_hub_id(model_ref):
        problem = no_such_folder(model_ref)
    if problem is not None:
        raise _UsageError(problem)
    if not os.path.isdir(model_ref) and not hub_constants.HF_HUB_OFFLINE:
        print(
            f"granite-nar: {model_ref} is not a local folder: looking it up on the Hugging Face Hub (downloads "
            f"go to the cache {hub_constants.HF_HUB_CACHE}; set HF_HUB_OFFLINE=1 to use only the cache)",
            file=sys.stderr,
            flush=True,
        )


def _set_threads(threads: int | None):
    """``torch.set_num_threads(threads)``; returns a function that restores the previous count."""
    import torch

    if threads is None:
        return lambda: None
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    return lambda: torch.set_num_threads(previous)


def _transcribe(args: argparse.Namespace) -> int:
    from .audio.io import TruncatedAudioWarning
    from .model.configuration_granite_speech_nar import UnknownConfigFieldWarning
    from .transcription.transcribe import ShortAudioWarning, load_model, transcribe_iter

    device = _check_device(args.device)
    model_ref = args.model
    if model_ref.startswith("~") and os.path.isdir(os.path.expanduser(model_ref)):
        model_ref = os.path.expanduser(model_ref)  # a quoted ~/folder
    _check_model_ref(model_ref)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", UnknownConfigFieldWarning)
            model, processor = load_model(
                model_ref, device=device, dtype=args.dtype, quantize=args.quantize, compile=args.compile
            )
    except Exception as err:  # any loading failure is one line for the user, not a traceback
        raise _UsageError(f"cannot load the model from {model_ref}: {err}") from None
    shown = set()
    for warning in caught:
        if issubclass(warning.category, UnknownConfigFieldWarning):
            if str(warning.message) not in shown:  # the model and its processor read the same config.json
                shown.add(str(warning.message))
                print(f"granite-nar: warning: {_one_line(warning.message)}", file=sys.stderr)
        else:
            warnings.warn_explicit(
                warning.message, warning.category, warning.filename, warning.lineno, source=warning.source
            )
    if getattr(model.config, RANDOM_WEIGHTS_MARKER, False):
        print(
            f"granite-nar: warning: {model_ref} has RANDOM weights (a demo model); its transcripts are meaningless",
            file=sys.stderr,
        )

    plan = _OutputPlan(args)
    todo = plan.pending(args.files)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ShortAudioWarning)  # reported per file below instead
        warnings.simplefilter("ignore", TruncatedAudioWarning)
        results = transcribe_iter(
            todo,
            model=model,
            processor=processor,
            batch_size=args.batch_size,
            num_editing_steps=args.editing_steps,
            return_drafts=args.drafts,
            progress=args.progress,
            on_error="skip",
            resample=not args.no_resample,
            allow_truncated=args.allow_truncated,
            word_timestamps=plan.word_timestamps,
            long_form=False if args.no_long_form else None,
            max_segment_seconds=args.max_segment_seconds,
        )
        failed = total = 0
        try:
            for result in results:
                total += 1
                if result.error is not None:
                    failed += 1
                    _error(result.error.replace("pass allow_truncated=True", "pass --allow-truncated"))
                elif result.warning is not None:
                    print(f"granite-nar: warning: {_one_line(result.warning)}", file=sys.stderr)
                plan.write(result)
        finally:
            plan.close()
    if failed:
        print(f"granite-nar: {failed} of {total} file(s) failed", file=sys.stderr)
        return EXIT_SOME_FAILED
    return EXIT_OK


JSONL_NAME = "transcripts.jsonl"  # the jsonl records of a run with --output-dir


class _OutputPlan:
    """Where each finished result goes: stdout, or files in --output-dir (written as each input finishes)."""

    def __init__(self, args: argparse.Namespace):
        from .transcription.formats import SubtitleOptions, expand_formats

        self.args = args
        self.formats = expand_formats(args.output)
        self.per_file = [f for f in self.formats if f != "jsonl"]  # one file per input in --output-dir
        self.directory = args.output_dir
        self.several = len(args.files) > 1
        documents = [f for f in self.per_file if f != "txt"]
        if self.directory is None and (args.output == "all" or (documents and self.several)):
            raise _UsageError(
                f"--output {args.output} writes one document per file: pass --output-dir DIR "
                "(or transcribe a single file to stdout)"
            )
        try:
            self.subtitles = SubtitleOptions(
                max_cue_seconds=args.max_cue_seconds,
                max_line_chars=args.max_line_chars,
                max_lines=args.max_lines,
            )
        except ValueError as err:
            raise _UsageError(str(err)) from None
        # Readable subtitle cues need word times.
        self.word_timestamps = args.word_timestamps or any(f in ("srt", "vtt") for f in self.formats)
        self.stems: dict[str, str] = {}
        self.jsonl = None
        if self.directory is not None:
            self.stems = _stems(args.files)
            if "jsonl" in self.formats:
                from .transcription.formats import JsonlWriter

                self.jsonl = JsonlWriter(os.path.join(self.directory, JSONL_NAME), args.drafts)

    def pending(self, files: list[str]) -> list[str]:
        """The inputs still to do: with --output-dir (and no --overwrite), those without all their outputs."""
        if self.directory is None or self.args.overwrite:
            return list(files)
        from .transcription.formats import completed_sources, outputs_exist

        done_jsonl = completed_sources(self.jsonl.path) if self.jsonl else set()
        todo = []
        for path in files:
            complete = (
                not self.per_file or outputs_exist(self.directory, self.stems[path], self.per_file)
            ) and (self.jsonl is None or path in done_jsonl)
            if complete:
                print(f"granite-nar: {path}: outputs exist in {self.directory}, skipped", file=sys.stderr)
            else:
                todo.append(path)
        return todo

    def write(self, result) -> None:
        from .transcription.formats import render, to_jsonl_record, write_outputs

        args = self.args
        if self.directory is not None:
            if self.jsonl is not None:
                self.jsonl.write(result)
            if result.error is None and self.per_file:
                stem = self.stems[result.source]
                write_outputs(result, self.per_file, self.directory, stem, self.subtitles, args.drafts)
            return
        fmt = self.formats[0]
        if fmt == "jsonl":
            print(to_jsonl_record(result, args.drafts), flush=True)
        elif result.error is None and fmt == "txt":
            fields = [result.source] if self.several else []
            fields.append(result.text)
            if args.drafts:
                fields.append(f"draft: {result.draft}")
            print("\t".join(fields), flush=True)
        elif result.error is None:
            text = render(result, fmt, self.subtitles, args.drafts)
            sys.stdout.write(text if text.endswith("\n") else text + "\n")
            sys.stdout.flush()

    def close(self) -> None:
        if self.jsonl is not None:
            self.jsonl.close()


def _stems(files: list[str]) -> dict[str, str]:
    """Output name of each input: its file name without the extension; two inputs with one name are refused."""
    stems: dict[str, str] = {}
    owner: dict[str, str] = {}
    for path in files:
        stem = os.path.splitext(os.path.basename(path))[0] or os.path.basename(path)
        if stem in owner and owner[stem] != path:
            raise _UsageError(
                f"{owner[stem]} and {path} would both be written as {stem}.* in --output-dir; "
                "transcribe them in separate runs or into separate directories"
            )
        owner[stem] = path
        stems[path] = stem
    return stems


def _serve(args: argparse.Namespace) -> int:
    """``granite-nar serve``: settings from the options, then uvicorn until interrupted."""
    from granite_nar.serving import missing_dependency

    problem = missing_dependency()
    if problem is not None:
        raise _UsageError(problem)
    from granite_nar.serving import ServerSettings, run_server
    from granite_nar.serving.settings import API_KEY_ENV

    try:
        settings = ServerSettings(
            model=args.model,
            host=args.host,
            port=args.port,
            api_key=args.api_key if args.api_key is not None else os.environ.get(API_KEY_ENV) or None,
            served_model_names=args.served_model_name or [],
            languages=args.languages.split(","),
            max_batch_size=args.max_batch_size,
            max_batch_delay_ms=args.max_batch_delay_ms,
            max_batch_seconds=args.max_batch_seconds,
            max_queue=args.max_queue,
            max_upload_mb=args.max_upload_mb,
            max_audio_seconds=args.max_audio_seconds,
            request_timeout_s=args.request_timeout,
            device=args.device,
            dtype=args.dtype,
            quantize=args.quantize,
            threads=args.threads,
            num_editing_steps=args.editing_steps,
            max_segment_seconds=args.max_segment_seconds,
        )
    except ValueError as err:
        raise _UsageError(str(err)) from None
    if settings.api_key is None and settings.host not in ("127.0.0.1", "localhost", "::1"):
        print(
            f"granite-nar: warning: listening on {settings.host} without an API key: anyone who can reach "
            f"this port can use the model; set --api-key or {API_KEY_ENV}",
            file=sys.stderr,
        )
    error = run_server(settings, log_level=args.log_level)
    if error is not None:
        raise _UsageError(error)
    return EXIT_OK


def _transcribe_dataset(args: argparse.Namespace) -> int:
    """``granite-nar transcribe-dataset``: a manifest or files through Ray Data into shards."""
    from granite_nar.distributed import ManifestError, transcribe_dataset

    manifest = len(args.inputs) == 1 and os.path.splitext(args.inputs[0])[1].lower() in MANIFEST_SUFFIXES
    source = args.inputs[0] if manifest else [os.path.abspath(path) for path in args.inputs]
    init = {"include_dashboard": False}
    if args.num_cpus is not None:
        init["num_cpus"] = args.num_cpus
    try:
        report = transcribe_dataset(
            source,
            args.output,
            args.model,
            audio_column=args.audio_column,
            id_column=args.id_column,
            output_format=args.format,
            num_workers=args.num_workers,
            threads_per_worker=args.threads_per_worker,
            gpus_per_worker=args.gpus_per_worker,
            batch_size=args.batch_size,
            rows_per_shard=args.rows_per_shard,
            device=args.device,
            dtype=args.dtype,
            num_editing_steps=args.editing_steps,
            word_timestamps=args.word_timestamps,
            allow_truncated=args.allow_truncated,
            address=args.address,
            ray_init_kwargs=init,
        )
    except (ManifestError, ValueError) as err:
        raise _UsageError(str(err)) from None
    print(
        f"granite-nar: {report.rows} rows: {report.skipped} already in {report.output_dir}, "
        f"{report.transcribed} transcribed, {report.failed} failed (see their error column)",
        file=sys.stderr,
    )
    return EXIT_SOME_FAILED if report.failed else EXIT_OK


MANIFEST_SUFFIXES = (".jsonl", ".json", ".ndjson", ".csv", ".parquet")


def _finetune(args: argparse.Namespace) -> int:
    """``granite-nar finetune``: :mod:`granite_nar.training.finetune`; its refusals are usage errors."""
    from granite_nar.training.finetune import FinetuneUsageError, run_from_args

    try:
        return run_from_args(args)
    except FinetuneUsageError as err:
        raise _UsageError(str(err)) from None


def _evaluate(args: argparse.Namespace) -> int:
    """``granite-nar evaluate``: :mod:`granite_nar.training.evaluation`; its refusals are usage errors."""
    from granite_nar.training.evaluation import EvaluationUsageError, run_from_args

    _check_device(args.device)
    _check_model_ref(args.model)
    try:
        return run_from_args(args)
    except EvaluationUsageError as err:
        raise _UsageError(str(err)) from None


def run(args: argparse.Namespace) -> int:
    """Run a command parsed by :func:`granite_nar_cli.build_parser`; returns the exit status."""
    restore = _quiet_libraries()
    restore_threads = _set_threads(getattr(args, "threads", None))
    try:
        if args.command == "serve":
            return _serve(args)
        if args.command == "transcribe-dataset":
            return _transcribe_dataset(args)
        if args.command == "finetune":
            return _finetune(args)
        if args.command == "evaluate":
            return _evaluate(args)
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
        restore_threads()
        restore()


if __name__ == "__main__":
    sys.exit(main())
