"""Train a tiny Granite Speech NAR model from scratch on the synthetic espeak-ng corpus, on a CPU.

Proves the whole loop: features → encoder BPE CTC draft → editor trained on noisy drafts → greedy
editing, measured on the held-out test split (draft / 1 edit / 2 edits, CER, WER, RTFx), optionally next
to the autoregressive counterpart trained on the same data for the same time.

    python examples/make_synthetic_corpus.py --out runs/synth ...     # see docs/synthetic_data.md
    python examples/train_tiny_synth.py --corpus runs/synth --minutes 22 --out examples/models/tiny-synth
    python examples/train_tiny_synth.py --corpus runs/synth --minutes 22 --model ar --out runs/tiny-synth-ar
    python examples/train_tiny_synth.py --corpus runs/synth-long --init-from runs/tiny-synth/model ...

``--init-from`` continues a trained NAR model (its weights and tokenizer) on another corpus, e.g. one with
multi-sentence utterances of up to 30 s (docs/training.md, "Long segments").

Training runs for a wall-clock budget (``--minutes``), not a step count: the learning rate warms up over
``--warmup-steps`` and then follows a cosine over the elapsed fraction of the budget, so the run ends
annealed on a fast machine or on a busy one; the number of steps reached is recorded. The best dev
checkpoint (edit-1 CER for the NAR model, CER for the AR one) is kept and saved with the feature extractor
and tokenizer.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import time
from pathlib import Path

import torch
from transformers import AutoTokenizer, PrinterCallback, TrainerCallback, TrainingArguments

from granite_nar import (
    GraniteSpeechNarConfig,
    GraniteSpeechNarFeatureExtractor,
    GraniteSpeechNarForCTC,
    GraniteSpeechNarProcessor,
)
from granite_nar.model.ctc import ctc_loss_from_flat_logits
from granite_nar.training import (
    DataCollatorForGraniteSpeechNar,
    DraftNoise,
    GraniteSpeechNarTrainer,
    ManifestFilter,
    SpeechDataset,
    TranscriptionEvaluator,
    WallClockBudget,
    count_parameters,
    read_manifest,
)
from granite_nar.training.metrics import char_error_rate, word_error_rate
from granite_nar.training.presets import freeze_batch_norm_statistics

# Characters of the encoder's self-conditioning CTC head, ids 1.. (0 is its blank): the corpus is lowercase
# words separated by spaces.
CHAR_VOCABULARY = " abcdefghijklmnopqrstuvwxyz'"


def tiny_config(vocab_size: int, pad_id: int, blank_id: int) -> GraniteSpeechNarConfig:
    """2.5 M parameters (< 10 MB in float32).

    Multipliers: the released model's Granite multipliers (embedding 12, attention 1/128, residual 0.22,
    logits / 8) are μP-style constants tuned for a 2048-wide, 40-layer editor trained from a pretrained
    LM; at width 128 from scratch they only distort the usual scales, so this model uses the standard
    parameterisation (1.0, 1/sqrt(head_dim), 1.0, 1.0). ``scale_projected_embeddings`` then divides by 1.
    """
    hidden, layers = 128, 6
    return GraniteSpeechNarConfig(
        encoder_config=dict(
            num_layers=layers,
            hidden_dim=hidden,
            feedforward_mult=2,
            num_heads=4,
            output_dim=40,
            context_size=100,  # 2 s blocks: less padding waste than 4 s on 1-4.5 s utterances
            max_pos_emb=100,
            conv_kernel_size=15,
            vocabulary_size=vocab_size,
            cat_hidden_layers=[2, 4],
            dropout=0.05,  # a few epochs only: little to regularise
            pred_dropout=0.05,
        ),
        projector_config=dict(
            hidden_size=hidden, intermediate_size=2 * hidden, num_attention_heads=4, num_hidden_layers=1
        ),
        text_config=dict(
            vocab_size=vocab_size,
            hidden_size=hidden,
            intermediate_size=2 * hidden,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            # Informational with default RoPE (positions are computed, nothing is learned or cached per
            # position): the longest editor input the model is meant for, a 30 s segment = 300 audio
            # tokens + 2n+1 slots, n <= 375 BPE tokens (one per 80 ms window), is 1051 positions.
            max_position_embeddings=2048,
            pad_token_id=pad_id,
            bos_token_id=blank_id,
            eos_token_id=blank_id,
            embedding_multiplier=1.0,
            attention_multiplier=(hidden // 4) ** -0.5,
            residual_multiplier=1.0,
            logits_scaling=1.0,
            attention_dropout=0.0,
        ),
        blank_token_id=blank_id,
        min_edit_sequence_length=8,
        ce_loss_lambda=0.0,
        encoder_ctc_loss_lambda=1.0,
    )


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--corpus", default="runs/synth", help="folder with train/dev/test.jsonl and tokenizer/")
    p.add_argument("--out", default="examples/models/tiny-synth", help="where the final model is saved")
    p.add_argument("--work-dir", default=None, help="checkpoints and logs (default: runs/<name of --out>)")
    p.add_argument("--model", choices=["nar", "ar"], default="nar")
    p.add_argument("--minutes", type=float, default=22.0, help="wall-clock training budget")
    p.add_argument("--eval-every-minutes", type=float, default=4.0)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--lr", type=float, default=2.5e-3)
    p.add_argument("--warmup-steps", type=int, default=200)
    p.add_argument("--weight-decay", type=float, default=0.01)
    p.add_argument("--ce-loss-lambda", type=float, default=0.0, help="copy-loss weight")
    p.add_argument("--encoder-ctc-loss-lambda", type=float, default=1.0)
    p.add_argument(
        "--char-ctc-loss-lambda", type=float, default=1.0, help="character CTC of the self-conditioning head"
    )
    p.add_argument(
        "--editor-start", type=float, default=0.4, help="fraction of the budget that trains the encoder alone"
    )
    p.add_argument("--substitution-prob", type=float, default=0.08)
    p.add_argument("--deletion-prob", type=float, default=0.05)
    p.add_argument("--insertion-prob", type=float, default=0.05)
    p.add_argument("--reference-prob", type=float, default=0.3)
    p.add_argument(
        "--sampling-temperature", type=float, default=1.5, help="drafts sampled from the encoder posterior"
    )
    p.add_argument(
        "--encoder-freeze",
        type=float,
        default=0.65,
        help="fraction of the budget after which the encoder is frozen",
    )
    p.add_argument(
        "--long-start",
        type=float,
        default=0.0,
        help="fraction of the budget before which utterances longer than --long-seconds are left out",
    )
    p.add_argument("--long-seconds", type=float, default=5.0)
    p.add_argument(
        "--init-from",
        default=None,
        help="continue from this NAR model folder (its weights and tokenizer) instead of random weights",
    )
    p.add_argument("--bf16", action=argparse.BooleanOptionalAction, default=True, help="bf16 autocast")
    # One intra-op thread: on a small model with other jobs on the cores, two threads spend their time waiting
    # for each other at every op's barrier (measured 3x slower per step than one thread, docs/training.md).
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--logging-steps", type=int, default=25)
    p.add_argument("--max-train", type=int, default=None, help="use only the first N training rows")
    p.add_argument("--max-dev", type=int, default=None)
    return p.parse_args(argv)


def build_ar(config: GraniteSpeechNarConfig):
    from granite_nar.model.modeling_granite_speech_ar import (
        GraniteSpeechArConfig,
        GraniteSpeechArForConditionalGeneration,
    )

    return GraniteSpeechArForConditionalGeneration(GraniteSpeechArConfig.from_nar_config(config))


@torch.no_grad()
def transcribe_ar(
    model, dataset, collator, tokenizer, batch_size: int = 16
) -> tuple[list[str], float, float]:
    """Greedy AR transcripts of a dataset, with audio seconds and compute seconds."""
    model.eval()
    hyps, audio_s, compute_s = [], 0.0, 0.0
    for start in range(0, len(dataset), batch_size):
        items = [dataset[i] for i in range(start, min(start + batch_size, len(dataset)))]
        batch = collator(items)
        audio_s += float(batch["input_features_mask"].sum()) * 0.02
        tic = time.perf_counter()
        out = model.generate(
            input_features=batch["input_features"],
            input_features_mask=batch["input_features_mask"],
            max_new_tokens=64,
        )
        compute_s += time.perf_counter() - tic
        hyps += tokenizer.batch_decode(out, skip_special_tokens=True)
    return hyps, audio_s, compute_s


class ArEvaluator:
    """Dev CER / WER of the AR model, for best-checkpoint selection."""

    def __init__(self, dataset, collator, tokenizer):
        self.dataset, self.collator, self.tokenizer = dataset, collator, tokenizer

    def __call__(self, model) -> dict[str, float]:
        was_training = model.training
        hyps, audio_s, compute_s = transcribe_ar(model, self.dataset, self.collator, self.tokenizer)
        model.train(was_training)
        refs = [row.text for row in self.dataset.rows]
        return {
            "cer": char_error_rate(refs, hyps).rate,
            "wer": word_error_rate(refs, hyps).rate,
            "rtfx": audio_s / compute_s,
        }


class ArTrainer(GraniteSpeechNarTrainer):
    """Teacher-forced cross-entropy of the AR model, plus the same character CTC on its encoder as the NAR
    recipe (so both encoders get the same help); evaluation, logging and sampling as for the NAR model."""

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        captured = []
        hook = model.encoder.out.register_forward_hook(lambda module, args, output: captured.append(output))
        try:
            out = model(
                input_features=inputs["input_features"],
                input_features_mask=inputs["input_features_mask"],
                labels=inputs["labels"],
                label_lengths=inputs["label_lengths"],
            )
        finally:
            hook.remove()
        loss = out.loss
        if self.char_ctc_loss_lambda > 0 and model.training:
            mask = inputs["input_features_mask"]
            char_ctc = ctc_loss_from_flat_logits(
                captured[0][mask],
                mask.sum(1).tolist(),
                inputs["char_labels"].clamp_min(0),
                inputs["char_label_lengths"],
                blank=0,
            )
            self._component_sums["ce_loss"] += float(out.loss.detach())
            self._component_sums["char_ctc_loss"] += float(char_ctc.detach())
            self._component_counts["ce_loss"] += 1
            self._component_counts["char_ctc_loss"] += 1
            loss = loss + self.char_ctc_loss_lambda * char_ctc
        return (loss, {"loss": loss}) if return_outputs else loss


class DeferLong(torch.utils.data.Dataset):
    """A training set whose utterances longer than ``max_seconds`` are replaced by short ones while
    ``deferring``: a batch of multi-sentence utterances costs several batches of single sentences, and the
    encoder alone learns the acoustics as well from the cheaper steps; the editor, which must learn long
    inputs, starts when they are let in. Batches are still formed on the true lengths
    (``group_by_length``), so a batch of replaced utterances is a batch of short ones."""

    def __init__(self, dataset, max_seconds: float):
        self.dataset = dataset
        self.is_long = [row.duration_sec > max_seconds for row in dataset.rows]
        self.short = [i for i, long in enumerate(self.is_long) if not long]
        if not self.short:
            raise ValueError(f"no training utterance lasts at most {max_seconds} s")
        self.deferring = True

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index):
        if self.deferring and self.is_long[index]:
            index = self.short[index % len(self.short)]
        return self.dataset[index]

    def __getattr__(self, name):  # rows, lengths, … of the wrapped dataset
        if name == "dataset":
            raise AttributeError(name)
        return getattr(self.dataset, name)


class Phases(TrainerCallback):
    """The recipe's three phases, switched on the elapsed fraction of the time budget.

    1. ``[0, editor_start)``: the encoder alone (BPE CTC + character CTC; editing loss weight 0).
    2. ``[editor_start, encoder_freeze)``: everything jointly, the editor on noisy drafts.
    3. ``[encoder_freeze, 1]``: encoder and BPE head frozen (their BatchNorm statistics too), only the
       projector and the editor train; a step then costs the encoder's forward pass only, so the editor
       gets about twice as many updates per minute.
    """

    def __init__(
        self,
        trainer,
        budget: WallClockBudget,
        editor_start: float,
        encoder_freeze: float,
        deferred: DeferLong | None = None,
        long_start: float = 0.0,
    ):
        self.trainer, self.budget = trainer, budget
        self.editor_start, self.encoder_freeze = editor_start, encoder_freeze
        self.deferred, self.long_start = deferred, long_start
        self.phase = 0
        trainer.edit_loss_weight = 0.0 if editor_start > 0 else 1.0

    def on_step_begin(self, args, state, control, **kwargs):
        fraction = self.budget.fraction()
        if self.deferred is not None and self.deferred.deferring and fraction >= self.long_start:
            self.deferred.deferring = False
            print(f"step {state.global_step}: long utterances join the batches", flush=True)
        if self.phase == 0 and fraction >= self.editor_start:
            self.phase = 1
            self.trainer.edit_loss_weight = 1.0
            print(f"step {state.global_step}: editor training starts", flush=True)
        if self.phase == 1 and fraction >= self.encoder_freeze:
            self.phase = 2
            model = self.trainer.model
            for module in (model.model.encoder, model.model.out_bpe):
                module.requires_grad_(False)
            freeze_batch_norm_statistics(model)
            model.config.encoder_ctc_loss_lambda = 0.0
            self.trainer.char_ctc_loss_lambda = 0.0
            print(f"step {state.global_step}: encoder frozen, projector and editor train on", flush=True)


def main(argv=None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    corpus = Path(args.corpus)
    out_dir = Path(args.out)
    work_dir = Path(args.work_dir or Path("runs") / out_dir.name)
    work_dir.mkdir(parents=True, exist_ok=True)
    log_path = work_dir / "log.jsonl"
    log_file = open(log_path, "w")

    def log_fn(record: dict) -> None:
        record = {"time_s": round(time.monotonic() - t0, 1), **record}
        print(json.dumps(record), flush=True)
        log_file.write(json.dumps(record) + "\n")
        log_file.flush()

    # A continued model keeps its own tokenizer: every corpus tokenizer covers the grammar's words.
    tokenizer = AutoTokenizer.from_pretrained(args.init_from or corpus / "tokenizer")
    feature_extractor = GraniteSpeechNarFeatureExtractor()
    blank_id = tokenizer.eos_token_id
    filters = ManifestFilter(max_duration_sec=30.0)
    train_rows, train_report = read_manifest(corpus / "train.jsonl", tokenizer=tokenizer, filters=filters)
    dev_rows, dev_report = read_manifest(corpus / "dev.jsonl", tokenizer=tokenizer, filters=filters)
    # The reports count the rows actually used: those past --max-train / --max-dev are counted as skipped.
    train_rows = train_report.limit(train_rows, args.max_train, "beyond --max-train")
    dev_rows = dev_report.limit(dev_rows, args.max_dev, "beyond --max-dev")
    print(train_report, dev_report, sep="\n")
    train_set = SpeechDataset(train_rows, feature_extractor, cache_features=True)
    deferred = None
    if args.long_start > 0 and args.model == "nar":  # the phases switch it
        train_set = deferred = DeferLong(train_set, args.long_seconds)
    dev_set = SpeechDataset(dev_rows, feature_extractor, cache_features=True)
    collator = DataCollatorForGraniteSpeechNar(feature_extractor, tokenizer, char_vocabulary=CHAR_VOCABULARY)

    config = tiny_config(len(tokenizer), tokenizer.pad_token_id, blank_id)
    config.ce_loss_lambda = args.ce_loss_lambda
    config.encoder_ctc_loss_lambda = args.encoder_ctc_loss_lambda
    if args.init_from:
        if args.model != "nar":
            raise SystemExit("--init-from continues a NAR model")
        model = GraniteSpeechNarForCTC.from_pretrained(args.init_from, dtype=torch.float32)
        # Informational with default RoPE: the recipe's value, whatever the continued model recorded.
        model.config.text_config.max_position_embeddings = config.text_config.max_position_embeddings
    else:
        model = GraniteSpeechNarForCTC(config) if args.model == "nar" else build_ar(config)
    print(
        count_parameters(model, "full") if args.model == "nar" else f"{model.num_parameters():,} parameters"
    )

    budget = WallClockBudget(
        args.minutes * 60,
        warmup_steps=args.warmup_steps,
        evaluate_every_seconds=args.eval_every_minutes * 60,
    )
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=args.lr, betas=(0.9, 0.98), weight_decay=args.weight_decay
    )
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, budget.lr_lambda)
    best_metric = "edit1_cer" if args.model == "nar" else "cer"
    training_args = TrainingArguments(
        output_dir=str(work_dir / "checkpoints"),
        per_device_train_batch_size=args.batch_size,
        per_device_eval_batch_size=32,
        max_steps=1_000_000,  # the wall-clock budget stops the run
        logging_steps=args.logging_steps,
        eval_strategy="no",  # evaluations are requested by the budget callback
        save_strategy="best",
        save_total_limit=1,
        save_only_model=True,
        metric_for_best_model=best_metric,
        greater_is_better=False,
        bf16=args.bf16,
        use_cpu=True,
        dataloader_num_workers=0,
        remove_unused_columns=False,  # the collator needs the raw "text"
        train_sampling_strategy="group_by_length",
        max_grad_norm=1.0,
        report_to=[],
        disable_tqdm=True,
        seed=args.seed,
    )
    common = dict(
        model=model,
        args=training_args,
        train_dataset=train_set,
        eval_dataset=dev_set,
        data_collator=collator,
        optimizers=(optimizer, scheduler),
        callbacks=[budget],
        log_fn=log_fn,
    )
    if args.model == "nar":
        noise = DraftNoise(
            substitution_prob=args.substitution_prob,
            deletion_prob=args.deletion_prob,
            insertion_prob=args.insertion_prob,
            reference_prob=args.reference_prob,
            sampling_temperature=args.sampling_temperature,
            vocab_size=len(tokenizer),
            excluded_ids=tokenizer.all_special_ids + [blank_id],
            seed=args.seed,
        )
        evaluator = TranscriptionEvaluator(dev_set, collator, tokenizer, num_editing_steps=2, batch_size=32)
        trainer = GraniteSpeechNarTrainer(
            **common,
            draft_noise=noise,
            char_ctc_loss_lambda=args.char_ctc_loss_lambda,
            transcription_evaluator=evaluator,
        )
        trainer.add_callback(
            Phases(trainer, budget, args.editor_start, args.encoder_freeze, deferred, args.long_start)
        )
    else:
        trainer = ArTrainer(
            **common,
            char_ctc_loss_lambda=args.char_ctc_loss_lambda,
            transcription_evaluator=ArEvaluator(dev_set, collator, tokenizer),
        )
    # log_fn prints every log record (as JSON, with the time); with disable_tqdm=True transformers' own
    # PrinterCallback would print each one a second time (as a dict).
    trainer.remove_callback(PrinterCallback)

    t0 = time.monotonic()
    trainer.train()
    train_seconds = time.monotonic() - t0
    best = trainer.state.best_model_checkpoint
    print(f"trained {trainer.state.global_step} steps in {train_seconds / 60:.1f} min; best: {best}")

    cls = type(model)
    final = cls.from_pretrained(best, dtype=torch.float32) if best else model.float()
    # Phase 3 zeroes the encoder loss weight in the live config; ship the recipe's weights.
    final.config.encoder_ctc_loss_lambda = args.encoder_ctc_loss_lambda
    final.config.ce_loss_lambda = args.ce_loss_lambda
    if out_dir.exists():
        shutil.rmtree(out_dir)
    out_dir.mkdir(parents=True)
    final.save_pretrained(out_dir)
    GraniteSpeechNarProcessor(feature_extractor, tokenizer).save_pretrained(out_dir)
    summary = {
        "model": args.model,
        "train_seconds": round(train_seconds, 1),
        "steps": trainer.state.global_step,
        "best_checkpoint_step": trainer.state.best_global_step,
        "best_dev_metric": {best_metric: trainer.state.best_metric},
        "parameters": sum(p.numel() for p in final.parameters()),
        "args": vars(args),
        "train_manifest": {
            "rows": train_report.total,
            "kept": train_report.kept,
            "kept_hours": round(train_report.kept_seconds / 3600, 3),
            "skipped": dict(train_report.skipped),
        },
        "char_vocabulary": CHAR_VOCABULARY,
    }
    previous = Path(args.init_from or "") / "training_summary.json"
    if args.init_from and previous.is_file():
        summary["init_from_summary"] = json.loads(previous.read_text())
    (out_dir / "training_summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    shutil.copy(log_path, work_dir / "log_final.jsonl")
    log_file.close()
    print(json.dumps(summary, indent=2))
    print(f"saved to {out_dir} ({sum(f.stat().st_size for f in out_dir.iterdir()) / 1e6:.1f} MB)")
    os.sync()


if __name__ == "__main__":
    main()
