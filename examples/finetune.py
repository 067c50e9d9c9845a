"""Fine-tune Granite Speech NAR on a JSONL manifest (thin command line over granite_nar.training).

    python examples/finetune.py --model examples/models/tiny-synth \\
        --train-manifest runs/synth/train.jsonl --eval-manifest runs/synth/dev.jsonl \\
        --output-dir runs/finetune --preset lora --lora-targets encoder editor --epochs 1

Each manifest line is ``{"audio_path": ..., "text": ..., "duration_sec": ...}`` (see docs/training.md). The
arguments, the model's configuration and the manifests are checked before the model is loaded: a problem
is reported on one line (``finetune.py: error: ...``) with exit status 2. Bad manifest rows are reported
and skipped; a manifest with no usable row, or with too many rows whose text has characters the tokenizer
cannot represent (``--max-unknown-fraction``), is refused. The trainable-parameter count is printed. With
``--eval-manifest`` every evaluation scores the CTC draft and each editing step (CER / WER), and
``--keep-best-only`` keeps only the checkpoint with the best ``--metric``.

Every checkpoint (``OUTPUT_DIR/checkpoint-N``) loads with ``GraniteSpeechNarForCTC.from_pretrained`` and
``granite-nar transcribe --model``: it holds the model (LoRA merged; the adapter itself in ``adapter/``)
and the processor. ``--resume-from-checkpoint`` continues a run from the last checkpoint in
``--output-dir`` (or from the one named). The final model and its processor are written to
``OUTPUT_DIR/final``.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from pathlib import Path

import torch
from transformers import TrainingArguments
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR, get_last_checkpoint

from granite_nar import GraniteSpeechNarConfig, GraniteSpeechNarForCTC, GraniteSpeechNarProcessor
from granite_nar.training import (
    PRESETS,
    DataCollatorForGraniteSpeechNar,
    DraftNoise,
    GraniteSpeechNarTrainer,
    ManifestError,
    ManifestFilter,
    SpeechDataset,
    TranscriptionEvaluator,
    apply_preset,
    read_manifest,
)

PROG = "finetune.py"


class UsageError(Exception):
    """An argument, the model's configuration or a manifest that the run cannot start with (exit status 2)."""


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


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--model", required=True, help="native checkpoint folder (model + processor) or Hub id")
    p.add_argument("--train-manifest", required=True)
    p.add_argument("--eval-manifest")
    p.add_argument("--audio-root", help="folder relative audio_path values refer to (default: manifest's)")
    p.add_argument("--output-dir", required=True)
    p.add_argument(
        "--resume-from-checkpoint",
        nargs="?",
        const=True,
        default=None,
        metavar="PATH",
        help="continue a run: from checkpoint folder PATH, or without PATH from the last checkpoint-N "
        "in --output-dir (model or adapter, optimizer, scheduler, step, random state)",
    )
    g = p.add_argument_group("data filters")
    g.add_argument("--min-duration", type=float)
    g.add_argument("--max-duration", type=float, default=30.0)
    g.add_argument("--max-text-chars", type=int)
    g.add_argument("--score-field", help="per-row numeric field to filter on, e.g. cer")
    g.add_argument("--max-score", type=float)
    g.add_argument(
        "--max-unknown-fraction",
        type=_fraction,
        default=0.01,
        help="refuse a manifest when more than this fraction of its kept rows has characters the "
        "tokenizer cannot represent (they would be trained on as <unk>); 1 only reports them (default 0.01)",
    )
    g = p.add_argument_group("trainable parameters")
    g.add_argument("--preset", choices=PRESETS, default="lora")
    g.add_argument("--num-layers", type=int, help="N of editor_last_n (required by that preset)")
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
    g = p.add_argument_group("optimisation")
    g.add_argument("--epochs", type=float, default=1.0)
    g.add_argument("--max-steps", type=int, default=-1)
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
    g.add_argument("--threads", type=int, help="torch intra-op threads")
    g.add_argument("--seed", type=int, default=0)
    g = p.add_argument_group("evaluation")
    g.add_argument("--eval-steps", type=int, default=500)
    g.add_argument("--metric", default="edit1_cer", help="draft_cer, edit1_cer, edit1_wer, eval_loss …")
    g.add_argument("--num-editing-steps", type=int, default=2, help="editing steps scored at evaluation")
    g.add_argument("--keep-best-only", action="store_true", help="save only the best checkpoint")
    g.add_argument("--ignore-spaces", action="store_true", help="CER without spaces (Chinese, Japanese)")
    return p.parse_args(argv)


# -- checks before anything is loaded -------------------------------------------------------------------------


def check_args(args: argparse.Namespace) -> None:
    """Refuse argument combinations that would fail later (after the model has loaded)."""
    if args.preset == "editor_last_n" and args.num_layers is None:
        raise UsageError(
            "--preset editor_last_n needs --num-layers N (how many of the last editor layers to train)"
        )
    if args.num_layers is not None and args.preset != "editor_last_n":
        raise UsageError(
            f"--num-layers only applies to --preset editor_last_n, not to --preset {args.preset}"
        )
    if args.num_layers is not None and args.num_layers < 1:
        raise UsageError(f"--num-layers must be at least 1, got {args.num_layers}")
    for option, value in (("--batch-size", args.batch_size), ("--grad-accum", args.grad_accum)):
        if value < 1:
            raise UsageError(f"{option} must be at least 1, got {value}")
    if args.eval_manifest and args.eval_steps < 1:
        raise UsageError(f"--eval-steps must be at least 1, got {args.eval_steps}")
    for option, path in (("--train-manifest", args.train_manifest), ("--eval-manifest", args.eval_manifest)):
        if path is not None and not Path(path).is_file():
            raise UsageError(f"{option} {path}: no such file")
    if args.audio_root is not None and not Path(args.audio_root).is_dir():
        raise UsageError(f"--audio-root {args.audio_root}: no such folder")
    if args.resume_from_checkpoint is True:
        if not Path(args.output_dir).is_dir() or get_last_checkpoint(args.output_dir) is None:
            raise UsageError(
                f"--resume-from-checkpoint: no {PREFIX_CHECKPOINT_DIR}-N folder in --output-dir "
                f"{args.output_dir} to resume from"
            )
        args.resume_from_checkpoint = get_last_checkpoint(args.output_dir)
    elif args.resume_from_checkpoint is not None and not Path(args.resume_from_checkpoint).is_dir():
        raise UsageError(f"--resume-from-checkpoint {args.resume_from_checkpoint}: no such checkpoint folder")


def select_device(args: argparse.Namespace) -> bool:
    """Check ``--device`` and ``--bf16``; pin a CUDA run to its one device. Returns ``use_cpu``.

    ``cuda:N`` (and ``cuda`` = ``cuda:0``, and ``auto`` on a CUDA machine) is made the only visible device
    (``CUDA_VISIBLE_DEVICES``), because transformers' Trainer otherwise trains on ``cuda:0`` and wraps the
    model in ``DataParallel`` when it sees several GPUs. Under ``torchrun`` the launcher decides.
    """
    spec = args.device
    if spec == "cpu":
        return True
    if torch.version.cuda is None:  # a CPU-only build of torch
        if spec == "auto":
            return True
        raise UsageError(
            f"--device {spec}: this torch build has no CUDA support (torch {torch.__version__}); use --device cpu"
        )
    index = 0 if spec in ("auto", "cuda") else int(spec.split(":")[1])
    if "LOCAL_RANK" not in os.environ and not torch.cuda.is_initialized():
        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        ids = [v.strip() for v in visible.split(",") if v.strip()] if visible is not None else None
        if ids is not None and index >= len(ids):
            if spec == "auto":
                return True
            raise UsageError(
                f"--device {spec}: CUDA_VISIBLE_DEVICES={visible} makes {len(ids)} device(s) visible, so there is no "
                f"cuda:{index}"
            )
        os.environ["CUDA_VISIBLE_DEVICES"] = ids[index] if ids is not None else str(index)
    if not torch.cuda.is_available():
        if spec == "auto":
            return True
        raise UsageError(
            f"--device {spec}: no such CUDA device on this machine (torch.cuda.is_available() is False)"
        )
    if args.bf16 and not torch.cuda.is_bf16_supported():
        raise UsageError(
            f"--bf16: the GPU of --device {spec} ({torch.cuda.get_device_name()}) has no bfloat16 support; "
            "drop --bf16 or use --device cpu"
        )
    return False


def load_config(model: str) -> GraniteSpeechNarConfig:
    path = Path(model).expanduser()
    looks_local = path.is_absolute() or model.startswith((".", "~")) or len(path.parts) > 2
    if path.exists() or looks_local:
        # transformers reads a folder without config.json as the default configuration: refuse it here.
        if not path.is_dir():
            raise UsageError(f"--model {model}: {'not a folder' if path.exists() else 'no such folder'}")
        if not (path / "config.json").is_file():
            raise UsageError(f"--model {model}: no config.json in this folder (not a checkpoint folder)")
    try:
        return GraniteSpeechNarConfig.from_pretrained(model)
    except Exception as err:  # a missing folder, no config.json, not a Granite Speech NAR checkpoint …
        raise UsageError(f"--model {model}: cannot read its configuration: {_one_line(err)}") from None


def check_config(args: argparse.Namespace, config: GraniteSpeechNarConfig) -> None:
    layers = config.text_config.num_hidden_layers
    if args.num_layers is not None and args.num_layers > layers:
        raise UsageError(
            f"--num-layers {args.num_layers}: the editor of {args.model} has {layers} layer(s); choose 1..{layers}"
        )


def read_data(option: str, path: str, args: argparse.Namespace, tokenizer, filters: ManifestFilter):
    """The rows of a manifest, its report printed; a manifest that cannot be trained on is refused."""
    try:
        rows, report = read_manifest(
            path,
            audio_root=args.audio_root,
            tokenizer=tokenizer,
            filters=filters,
            max_unknown_fraction=args.max_unknown_fraction,
        )
    except ManifestError as err:
        print(err.report)
        raise UsageError(f"{option} {err} (--max-unknown-fraction sets the limit)") from None
    except (OSError, UnicodeDecodeError) as err:
        raise UsageError(f"{option} {path}: cannot read it: {_one_line(err)}") from None
    print(report)
    if not rows:
        reasons = "; ".join(f"{count} {reason}" for reason, count in report.skipped.most_common())
        raise UsageError(
            f"{option} {path}: no usable rows"
            + (f" (all {report.total} skipped: {reasons})" if report.total else " (the file has no rows)")
        )
    return rows


def _one_line(message) -> str:
    return " ".join(str(message).split())


# -- the run ---------------------------------------------------------------------------------------------------


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        run(args)
    except UsageError as err:
        print(f"{PROG}: error: {err}", file=sys.stderr)
        return 2
    return 0


def run(args: argparse.Namespace) -> None:
    check_args(args)
    use_cpu = select_device(args)
    config = load_config(args.model)
    check_config(args, config)
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        processor = GraniteSpeechNarProcessor.from_pretrained(args.model)
    except Exception as err:
        raise UsageError(f"--model {args.model}: cannot load its processor: {_one_line(err)}") from None

    filters = ManifestFilter(
        min_duration_sec=args.min_duration,
        max_duration_sec=args.max_duration,
        max_text_chars=args.max_text_chars,
        score_field=args.score_field,
        max_score=args.max_score,
        pooling_window=config.encoder_config.pooling_window,
    )
    fe, tokenizer = processor.feature_extractor, processor.tokenizer
    train_set = SpeechDataset(
        read_data("--train-manifest", args.train_manifest, args, tokenizer, filters), fe
    )
    eval_set = None
    if args.eval_manifest:
        eval_set = SpeechDataset(
            read_data("--eval-manifest", args.eval_manifest, args, tokenizer, filters), fe
        )

    # Everything checked: now the model.
    model = GraniteSpeechNarForCTC.from_pretrained(args.model, dtype=torch.float32)
    if args.ce_loss_lambda is not None:
        model.config.ce_loss_lambda = args.ce_loss_lambda
    if args.encoder_ctc_loss_lambda is not None:
        model.config.encoder_ctc_loss_lambda = args.encoder_ctc_loss_lambda
    collator = DataCollatorForGraniteSpeechNar.from_processor(
        processor, blank_token_id=model.config.blank_token_id
    )

    model, _ = apply_preset(
        model,
        args.preset,
        num_layers=args.num_layers,
        lora_targets=args.lora_targets,
        lora_rank=args.lora_rank,
        lora_alpha=args.lora_alpha,
        lora_dropout=args.lora_dropout,
    )
    special = set(tokenizer.all_special_ids) | {model.config.blank_token_id}
    noise = DraftNoise(
        substitution_prob=args.substitution_prob,
        deletion_prob=args.deletion_prob,
        insertion_prob=args.insertion_prob,
        reference_prob=args.reference_prob,
        vocab_size=model.config.text_config.vocab_size,
        excluded_ids=sorted(special),
        seed=args.seed,
    )
    evaluate = eval_set is not None
    training_args = TrainingArguments(
        output_dir=args.output_dir,
        num_train_epochs=args.epochs,
        max_steps=args.max_steps,
        per_device_train_batch_size=args.batch_size,
        per_device_eval_batch_size=args.batch_size,
        gradient_accumulation_steps=args.grad_accum,
        learning_rate=args.lr,
        warmup_steps=args.warmup_steps,
        lr_scheduler_type="cosine",
        bf16=args.bf16,
        use_cpu=use_cpu,
        logging_steps=25,
        eval_strategy="steps" if evaluate else "no",
        eval_steps=args.eval_steps,
        save_strategy="best" if evaluate and args.keep_best_only else "steps",
        save_steps=args.eval_steps,
        save_total_limit=1 if args.keep_best_only else None,
        metric_for_best_model=args.metric if evaluate else None,
        load_best_model_at_end=evaluate and args.keep_best_only,
        greater_is_better=False,
        remove_unused_columns=False,  # the collator needs the raw text
        train_sampling_strategy="group_by_length",
        report_to=[],
        seed=args.seed,
    )
    evaluator = (
        TranscriptionEvaluator(
            eval_set,
            collator,
            tokenizer,
            num_editing_steps=args.num_editing_steps,
            batch_size=args.batch_size,
            ignore_spaces=args.ignore_spaces,
        )
        if evaluate
        else None
    )
    trainer = GraniteSpeechNarTrainer(
        model=model,
        args=training_args,
        train_dataset=train_set,
        eval_dataset=eval_set,
        data_collator=collator,
        draft_noise=noise,
        edit_loss_weight=args.edit_loss_weight,
        transcription_evaluator=evaluator,
        processor=processor,
    )
    if args.resume_from_checkpoint:
        print(f"resuming from {args.resume_from_checkpoint}")
    trainer.train(resume_from_checkpoint=args.resume_from_checkpoint)

    # The model (LoRA merged, the adapter in final/adapter) and the processor, as in every checkpoint.
    out = Path(args.output_dir) / "final"
    trainer.save_model(str(out))
    print(f"saved {out}")


if __name__ == "__main__":
    sys.exit(main())
