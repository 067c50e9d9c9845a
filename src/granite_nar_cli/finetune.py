"""The options of ``granite-nar finetune`` (parsed here, without torch or transformers; run by
:mod:`granite_nar.training.finetune`).

Every option's ``dest`` is the name of a :class:`granite_nar.training.finetune.FinetuneOptions` field with the
same default, so a parsed command line becomes the options of the run field by field (the tests check it).
"""

from __future__ import annotations

import argparse
import re

from .evaluate import NORMALIZE_CHOICES

__all__ = ["add_finetune_parser", "PRESETS", "NUM_LAYERS_PRESETS"]

# granite_nar.training.PRESETS, repeated so that parsing imports nothing heavy (a test keeps them equal).
PRESETS = ("full", "encoder", "projector", "editor", "editor_last_n", "editor_last_n_head", "lora")
# The presets that train the last N editor layers: they need --num-layers.
NUM_LAYERS_PRESETS = ("editor_last_n", "editor_last_n_head")
# The training objectives: token-level (supervised fine-tuning) or the sequence-level stage.
OBJECTIVES = ("sft", "sequence")

DESCRIPTION = """\
Fine-tune Granite Speech NAR on JSON-lines manifests ({"audio_path": ..., "text": ..., "duration_sec": ...}
per line; docs/training.md). The arguments, the model's configuration and the manifests are checked
before the model is loaded: a problem is one line on stderr (granite-nar: error: ...) with exit status 2.
Bad manifest rows are reported and skipped. With --eval-manifest the dev set is scored before the first
step and at every evaluation (CTC draft and each editing step, CER / WER). Every OUTPUT_DIR/checkpoint-N
and OUTPUT_DIR/final is a complete model folder (LoRA merged, its adapter in adapter/) that loads with
granite-nar transcribe --model; OUTPUT_DIR/finetune_summary.json records the run."""


def _device(value: str) -> str:
    if value not in ("auto", "cpu") and not re.fullmatch(r"cuda(:\d+)?", value):
        raise argparse.ArgumentTypeError(f"expected auto, cpu, cuda or cuda:N, got {value!r}")
    return value


def _fraction(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        number = -1.0
    if not 0.0 <= number <= 1.0:
        raise argparse.ArgumentTypeError(f"expected a fraction in [0, 1], got {value!r}")
    return number


def add_finetune_parser(sub) -> argparse.ArgumentParser:
    """Add the ``finetune`` subcommand to ``sub`` (the subparsers of ``granite-nar``); returns its parser."""
    p = sub.add_parser(
        "finetune",
        help="fine-tune the model on a manifest of audio files and transcripts",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--model", "-m", required=True, help="model folder (model + processor) or Hub id")
    p.add_argument("--train-manifest", required=True, metavar="JSONL")
    p.add_argument("--eval-manifest", metavar="JSONL", help="dev set scored at every evaluation")
    p.add_argument(
        "--audio-root",
        metavar="DIR",
        help="folder relative audio_path values refer to (default: the manifest's)",
    )
    p.add_argument("--output-dir", required=True, metavar="DIR")
    p.add_argument(
        "--resume-from-checkpoint",
        nargs="?",
        const=True,
        default=None,
        metavar="PATH",
        help="continue a run: from checkpoint folder PATH, or without PATH from the last checkpoint-N "
        "in --output-dir (model or adapter, optimizer, scheduler, step, random state, draft noise, time spent)",
    )
    g = p.add_argument_group("data filters")
    g.add_argument("--min-duration", type=float, metavar="S")
    g.add_argument("--max-duration", type=float, default=30.0, metavar="S", help="(30)")
    g.add_argument("--max-text-chars", type=int, metavar="N")
    g.add_argument("--score-field", help="per-row numeric field to filter on, e.g. cer")
    g.add_argument("--max-score", type=float)
    g.add_argument(
        "--max-unknown-fraction",
        type=_fraction,
        default=0.01,
        help="refuse a manifest when more than this fraction of its kept rows has characters the "
        "tokenizer cannot represent (they would be trained on as <unk>); 1 only reports them (0.01)",
    )
    g = p.add_argument_group("trainable parameters")
    g.add_argument("--preset", choices=PRESETS, default="lora", help="(lora; docs/training.md#presets)")
    g.add_argument(
        "--num-layers",
        type=int,
        metavar="N",
        help="N of editor_last_n and editor_last_n_head (required by them)",
    )
    g.add_argument(
        "--lora-targets", nargs="+", default=["encoder", "editor"], choices=["encoder", "projector", "editor"]
    )
    g.add_argument("--lora-rank", type=int, default=16)
    g.add_argument("--lora-alpha", type=int, default=32)
    g.add_argument("--lora-dropout", type=float, default=0.05)
    g = p.add_argument_group("losses")
    g.add_argument("--edit-loss-weight", type=float, default=1.0)
    g.add_argument("--ce-loss-lambda", type=float, help="copy-loss weight (default: the model config's)")
    g.add_argument("--encoder-ctc-loss-lambda", type=float, help="encoder BPE CTC weight (default: config's)")
    g = p.add_argument_group("draft noise")
    g.add_argument("--substitution-prob", type=float, default=0.05)
    g.add_argument("--deletion-prob", type=float, default=0.03)
    g.add_argument("--insertion-prob", type=float, default=0.03)
    g.add_argument("--reference-prob", type=float, default=0.0)
    g.add_argument(
        "--self-correction-prob",
        type=_fraction,
        default=0.0,
        help="per utterance, start from the model's own edit-1 output instead of the encoder draft, so that "
        "a second editing step learns to fix what the first missed (0)",
    )
    g = p.add_argument_group(
        "sequence-level stage",
        "--objective sequence samples --group-size hypotheses per utterance from the editor's slot posteriors, "
        "scores them by --risk against the reference and minimises the expected risk, plus --anchor-weight "
        "times the editing CTC loss (docs/training.md#the-sequence-level-stage)",
    )
    g.add_argument("--objective", choices=OBJECTIVES, default="sft", help="sft (default) or sequence")
    g.add_argument("--group-size", type=int, default=8, metavar="G", help="hypotheses per utterance (8)")
    g.add_argument(
        "--sample-temperature",
        type=float,
        default=1.0,
        metavar="T",
        help="slot logits / T before sampling (1)",
    )
    g.add_argument(
        "--risk", choices=("wer", "cer"), default="wer", help="error rate each hypothesis scores (wer)"
    )
    g.add_argument(
        "--advantage",
        choices=("group", "mwer"),
        default="mwer",
        help="mwer: risk relative to the group mean (default); group: that over the group's standard deviation",
    )
    g.add_argument("--anchor-weight", type=float, default=1.0, help="weight of the editing CTC anchor (1)")
    g.add_argument(
        "--encoder-sequence-weight",
        type=float,
        default=0.0,
        help="weight of the same objective on the encoder's BPE-CTC draft (0: editor only)",
    )
    g = p.add_argument_group("optimisation")
    g.add_argument("--epochs", type=float, default=1.0)
    g.add_argument(
        "--max-steps", type=int, default=-1, metavar="N", help="stop after N steps (overrides --epochs)"
    )
    g.add_argument(
        "--minutes",
        type=float,
        metavar="M",
        help="train for M minutes of wall-clock time instead of --epochs (--max-steps, if given, still "
        "caps the steps); the learning rate decays over the elapsed fraction of the budget",
    )
    g.add_argument("--batch-size", type=int, default=8)
    g.add_argument("--grad-accum", type=int, default=1)
    g.add_argument("--lr", type=float, default=1e-4)
    g.add_argument("--warmup-steps", type=int, default=100)
    g.add_argument(
        "--device",
        type=_device,
        default="auto",
        help="cpu, cuda (= cuda:0) or cuda:N: one device (default auto: cuda:0 when available, else cpu)",
    )
    g.add_argument("--bf16", action="store_true", help="bf16 autocast (CPU, or a GPU with bfloat16 support)")
    g.add_argument("--threads", type=int, metavar="N", help="torch intra-op threads")
    g.add_argument("--seed", type=int, default=0)
    g.add_argument(
        "--logging-steps", type=int, default=25, metavar="N", help="log the losses every N steps (25)"
    )
    g = p.add_argument_group("evaluation")
    g.add_argument("--eval-steps", type=int, default=500, metavar="N", help="evaluate every N steps (500)")
    g.add_argument(
        "--eval-minutes",
        type=float,
        metavar="M",
        help="with --minutes: evaluate every M minutes (default: at the end of the budget only)",
    )
    g.add_argument(
        "--eval-at-start",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="score the dev set before the first step, as the baseline (default: on with --eval-manifest); "
        "with --keep-best-only the starting model is a candidate for the best",
    )
    g.add_argument(
        "--metric", default="edit1_cer", help="draft_cer, edit1_cer, edit1_wer, eval_loss … (lower is better)"
    )
    g.add_argument("--num-editing-steps", type=int, default=2, help="editing steps scored at evaluation")
    g.add_argument(
        "--keep-best-only",
        action="store_true",
        help="keep only the best checkpoint; final/ is the best model",
    )
    g.add_argument("--ignore-spaces", action="store_true", help="CER without spaces (Chinese, Japanese)")
    g.add_argument(
        "--normalize",
        nargs="+",
        choices=NORMALIZE_CHOICES,
        default=["basic"],
        metavar="STEP",
        help="text normalisation before scoring the dev set and the sequence stage's samples, as for "
        "granite-nar evaluate: english, basic (= nfkc case punctuation), nfkc, case, punctuation, none (basic)",
    )
    return p
