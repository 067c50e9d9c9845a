"""The options of ``granite-nar evaluate`` (parsed here, without torch or transformers; run by
:func:`granite_nar.training.evaluation.evaluate_manifest`).

The choices of ``--normalize`` repeat :data:`granite_nar.training.normalizers.NORMALIZER_NAMES` so that
parsing imports nothing heavy (a test keeps them equal).
"""

from __future__ import annotations

import argparse

from .argtypes import non_negative_int as _non_negative_int
from .argtypes import positive_float as _positive_float
from .argtypes import positive_int as _positive_int

__all__ = ["add_evaluate_parser", "NORMALIZE_CHOICES"]

NORMALIZE_CHOICES = ("english", "basic", "nfkc", "case", "punctuation", "none")

DESCRIPTION = """\
Score the model on a JSON-lines manifest ({"audio_path": ..., "text": ..., "duration_sec": ..., any other
fields} per line; relative audio paths are read from the manifest's folder): CER and WER of the CTC draft
and of every editing step, overall and per slice of the manifest's fields, the draft-to-final gap, and the
RTFx. A table goes to stdout; --json writes the report, --predictions every utterance's transcripts and
errors. A bad row or audio file is one line on stderr, is counted in the report and leaves the others
scored (exit status 1); usage errors exit with 2. See docs/evaluation.md."""


def add_evaluate_parser(sub) -> argparse.ArgumentParser:
    """Add the ``evaluate`` subcommand to ``sub`` (the subparsers of ``granite-nar``); returns its parser."""
    p = sub.add_parser(
        "evaluate",
        help="score the model on a manifest: CER / WER of the draft and each editing step, per slice",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "manifest", metavar="MANIFEST", help="JSON-lines manifest with audio_path and text per row"
    )
    p.add_argument("--model", "-m", required=True, help="model folder (model + processor) or Hub id")
    p.add_argument(
        "--editing-steps",
        type=_non_negative_int,
        default=2,
        metavar="K",
        help="score the draft and editing steps 1..K (2)",
    )
    p.add_argument(
        "--slice-by",
        nargs="+",
        default=[],
        metavar="FIELD[:EDGES]",
        help="also score per value of these manifest fields; FIELD:EDGE,EDGE,... bins a numeric field "
        "(duration_sec:5,10,20 gives <5, 5-10, 10-20, >=20)",
    )
    p.add_argument(
        "--normalize",
        nargs="+",
        choices=NORMALIZE_CHOICES,
        default=["basic"],
        metavar="STEP",
        help="text normalisation of references and hypotheses, steps combined: english (Whisper's English "
        "normaliser), basic (= nfkc case punctuation), nfkc, case, punctuation, none (basic)",
    )
    p.add_argument(
        "--spelling-mapping",
        default=None,
        metavar="FILE",
        help="JSON object of British to American spellings for --normalize english (default: none)",
    )
    p.add_argument(
        "--cjk",
        action="store_true",
        help="score CJK text per character: every CJK character is a word, CER ignores spaces",
    )
    p.add_argument("--json", default=None, metavar="REPORT.json", help="write the report as JSON")
    p.add_argument(
        "--predictions",
        default=None,
        metavar="PREDS.jsonl",
        help="write one JSON line per row: reference, hypothesis of each step, slices, errors",
    )
    p.add_argument("--batch-size", "-b", type=_positive_int, default=8, help="utterances per batch (8)")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1, ... (default: cuda if available)")
    p.add_argument(
        "--dtype", default=None, choices=["float32", "bfloat16", "float16"], help="compute precision"
    )
    p.add_argument("--threads", type=_positive_int, default=None, metavar="N", help="CPU threads for torch")
    p.add_argument(
        "--limit", type=_positive_int, default=None, metavar="N", help="score only the first N rows"
    )
    p.add_argument(
        "--max-audio-seconds",
        type=_positive_float,
        default=30.0,
        metavar="S",
        help="rows with longer audio are reported and skipped: the editor takes one segment of at most "
        "S seconds (30)",
    )
    return p
