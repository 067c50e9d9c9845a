"""Fine-tune Granite Speech NAR on a JSONL manifest (thin command line over granite_nar.training).

    python examples/finetune.py --model examples/models/tiny-synth \\
        --train-manifest runs/synth/train.jsonl --eval-manifest runs/synth/dev.jsonl \\
        --output-dir runs/finetune --preset lora --lora-targets encoder editor --epochs 1

Each manifest line is ``{"audio_path": ..., "text": ..., "duration_sec": ...}`` (see docs/training.md). The
trainable-parameter count is printed; bad manifest rows are reported and skipped. With ``--eval-manifest``
every evaluation scores the CTC draft and each editing step (CER / WER), and ``--keep-best-only`` keeps
only the checkpoint with the best ``--metric``. The final model (LoRA merged into the weights) and its
processor are written to ``OUTPUT_DIR/final``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from transformers import TrainingArguments

from granite_nar import GraniteSpeechNarForCTC, GraniteSpeechNarProcessor
from granite_nar.training import (
    PRESETS,
    DataCollatorForGraniteSpeechNar,
    DraftNoise,
    GraniteSpeechNarTrainer,
    ManifestFilter,
    SpeechDataset,
    TranscriptionEvaluator,
    apply_preset,
    read_manifest,
)


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, help="native checkpoint folder (model + processor) or Hub id")
    p.add_argument("--train-manifest", required=True)
    p.add_argument("--eval-manifest")
    p.add_argument("--audio-root", help="folder relative audio_path values refer to (default: manifest's)")
    p.add_argument("--output-dir", required=True)
    g = p.add_argument_group("data filters")
    g.add_argument("--min-duration", type=float)
    g.add_argument("--max-duration", type=float, default=30.0)
    g.add_argument("--max-text-chars", type=int)
    g.add_argument("--score-field", help="per-row numeric field to filter on, e.g. cer")
    g.add_argument("--max-score", type=float)
    g = p.add_argument_group("trainable parameters")
    g.add_argument("--preset", choices=PRESETS, default="lora")
    g.add_argument("--num-layers", type=int, help="N of editor_last_n")
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
    g.add_argument("--bf16", action="store_true", help="bf16 autocast")
    g.add_argument("--threads", type=int, help="torch intra-op threads")
    g.add_argument("--seed", type=int, default=0)
    g = p.add_argument_group("evaluation")
    g.add_argument("--eval-steps", type=int, default=500)
    g.add_argument("--metric", default="edit1_cer", help="draft_cer, edit1_cer, edit1_wer, eval_loss …")
    g.add_argument("--num-editing-steps", type=int, default=2, help="editing steps scored at evaluation")
    g.add_argument("--keep-best-only", action="store_true", help="save only the best checkpoint")
    g.add_argument("--ignore-spaces", action="store_true", help="CER without spaces (Chinese, Japanese)")
    return p.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    processor = GraniteSpeechNarProcessor.from_pretrained(args.model)
    model = GraniteSpeechNarForCTC.from_pretrained(args.model, dtype=torch.float32)
    if args.ce_loss_lambda is not None:
        model.config.ce_loss_lambda = args.ce_loss_lambda
    if args.encoder_ctc_loss_lambda is not None:
        model.config.encoder_ctc_loss_lambda = args.encoder_ctc_loss_lambda

    filters = ManifestFilter(
        min_duration_sec=args.min_duration,
        max_duration_sec=args.max_duration,
        max_text_chars=args.max_text_chars,
        score_field=args.score_field,
        max_score=args.max_score,
    )
    fe, tokenizer = processor.feature_extractor, processor.tokenizer
    read = dict(audio_root=args.audio_root, tokenizer=tokenizer, filters=filters)
    train_rows, report = read_manifest(args.train_manifest, **read)
    print(report)
    train_set = SpeechDataset(train_rows, fe)
    eval_set = None
    if args.eval_manifest:
        eval_rows, eval_report = read_manifest(args.eval_manifest, **read)
        print(eval_report)
        eval_set = SpeechDataset(eval_rows, fe)
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
    )
    trainer.train()

    final = trainer.model
    if args.preset == "lora":
        final = final.merge_and_unload()  # plain GraniteSpeechNarForCTC weights again
    out = Path(args.output_dir) / "final"
    final.save_pretrained(out)
    processor.save_pretrained(out)
    print(f"saved {out}")


if __name__ == "__main__":
    main()
