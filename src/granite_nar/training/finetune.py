"""``granite-nar finetune``: fine-tune Granite Speech NAR on JSON-lines manifests.

The command line (:mod:`granite_nar_cli.finetune`) parses the options; this module runs them::

    from granite_nar.training.finetune import FinetuneOptions, run_finetune

    result = run_finetune(FinetuneOptions(
        model="examples/models/tiny-synth", train_manifest="train.jsonl", eval_manifest="dev.jsonl",
        output_dir="runs/ft", preset="editor_last_n_head", num_layers=1, minutes=20,
    ))
    print(result.best_metric, result.best_checkpoint)

What a run does, in order:

1. :func:`check_options`: the arguments (``--preset editor_last_n`` needs ``--num-layers``; the manifests,
   ``--audio-root`` and the checkpoint to resume from exist; ``--metric`` is a metric of the evaluation …),
   the device, the model's configuration (``--num-layers`` fits its editor) and processor, then the
   manifests (their reports printed; a manifest with no usable row, or with too many rows the tokenizer
   cannot represent, refused). Each refusal is a :class:`FinetuneUsageError` (one line); only then is the
   model loaded.
2. The preset (:func:`~granite_nar.training.apply_preset`), the draft noise, the collator and the
   evaluator, and a :class:`~granite_nar.training.GraniteSpeechNarTrainer` with
   :func:`training_arguments`.
3. ``--eval-at-start`` (on with an eval manifest): the dev set is scored before the first step, the
   baseline is printed and becomes the best metric to beat; with ``--keep-best-only`` the starting model is
   saved as ``checkpoint-0``, so that a run where no step beats it ends with ``final/`` = the starting model.
   A resumed run (from a step above 0) does not score it again: the resumed state holds its result.
4. ``--minutes M``: a wall-clock budget (:class:`~granite_nar.training.WallClockBudget`): ``max_steps`` is
   set beyond reach (``--max-steps``, when given, still caps it), the learning rate follows the budget's
   ``lr_lambda`` (warm-up, then a cosine over the elapsed fraction of the budget), evaluation and a checkpoint
   come every ``--eval-minutes`` and when the time is up. A resumed run counts the time spent before its
   checkpoint.
5. ``trainer.train()``, then ``OUTPUT_DIR/final`` (the model, LoRA merged with its adapter in
   ``final/adapter``, and the processor; with ``--keep-best-only`` the best model), a one-line summary and
   ``OUTPUT_DIR/finetune_summary.json`` (:class:`FinetuneResult` and the options).

Every checkpoint also holds ``finetune_state.safetensors``: the draft noise's random generator and the time
spent, which a resumed run restores, so that resuming within the first epoch reproduces the uninterrupted run
bit for bit (in later epochs the length-grouped batches come in another order: the trainer's sampler starts
again from its seed).

Adding an option: a field of :class:`FinetuneOptions` (a check in :func:`check_options` if it can be
wrong), the same ``dest`` and default in :func:`granite_nar_cli.finetune.add_finetune_parser`, and its use in
:func:`training_arguments` (``TrainingArguments``) or :func:`build_trainer` (the trainer's own arguments).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from transformers import TrainerCallback, TrainingArguments
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR, get_last_checkpoint

from ..audio.processing_granite_speech_nar import GraniteSpeechNarProcessor
from ..model.configuration_granite_speech_nar import GraniteSpeechNarConfig
from ..model.modeling_granite_speech_nar import GraniteSpeechNarForCTC
from .data import DataCollatorForGraniteSpeechNar, ManifestError, ManifestFilter, SpeechDataset, read_manifest
from .noise import DraftNoise
from .normalizers import build_normalizer
from .presets import PRESETS, apply_preset
from .sequence import SequenceObjective
from .trainer import GraniteSpeechNarTrainer, TranscriptionEvaluator, WallClockBudget, step_name

__all__ = [
    "FinetuneOptions",
    "FinetuneResult",
    "FinetuneUsageError",
    "run_finetune",
    "run_from_args",
    "check_options",
    "training_arguments",
    "build_trainer",
    "metric_names",
    "NUM_LAYERS_PRESETS",
    "SUMMARY_NAME",
    "STATE_NAME",
]

# The presets that train the last N editor layers (they need num_layers).
NUM_LAYERS_PRESETS = ("editor_last_n", "editor_last_n_head")
SUMMARY_NAME = "finetune_summary.json"
# In every checkpoint: what the trainer's own checkpoint lacks to resume exactly (draft noise, time spent).
STATE_NAME = "finetune_state.safetensors"
# max_steps of a --minutes run: beyond reach, so that the budget ends it.
UNREACHABLE_STEPS = 10**9


class FinetuneUsageError(ValueError):
    """An option, the model's configuration or a manifest that the run cannot start with (exit status 2)."""


@dataclass(kw_only=True)
class FinetuneOptions:
    """The options of a run; each is the ``granite-nar finetune`` option of the same name (``--max-steps`` =
    ``max_steps``), with the same default. See ``granite-nar finetune --help`` and docs/training.md."""

    model: str
    train_manifest: str
    output_dir: str
    eval_manifest: str | None = None
    audio_root: str | None = None
    # True: the last checkpoint-N in output_dir; a path: that checkpoint folder.
    resume_from_checkpoint: str | bool | None = None
    # data filters
    min_duration: float | None = None
    max_duration: float | None = 30.0
    max_text_chars: int | None = None
    score_field: str | None = None
    max_score: float | None = None
    max_unknown_fraction: float = 0.01
    # trainable parameters
    preset: str = "lora"
    num_layers: int | None = None
    lora_targets: list[str] = field(default_factory=lambda: ["encoder", "editor"])
    lora_rank: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    # losses (None: the model config's weight)
    edit_loss_weight: float = 1.0
    ce_loss_lambda: float | None = None
    encoder_ctc_loss_lambda: float | None = None
    # draft noise
    substitution_prob: float = 0.05
    deletion_prob: float = 0.03
    insertion_prob: float = 0.03
    reference_prob: float = 0.0
    self_correction_prob: float = 0.0
    # sequence-level stage
    objective: str = "sft"
    group_size: int = 8
    sample_temperature: float = 1.0
    risk: str = "wer"
    advantage: str = "mwer"
    anchor_weight: float = 1.0
    encoder_sequence_weight: float = 0.0
    # optimisation
    epochs: float = 1.0
    max_steps: int = -1
    minutes: float | None = None
    batch_size: int = 8
    grad_accum: int = 1
    lr: float = 1e-4
    warmup_steps: int = 100
    device: str = "auto"
    bf16: bool = False
    threads: int | None = None
    seed: int = 0
    logging_steps: int = 25
    # evaluation
    eval_steps: int = 500
    eval_minutes: float | None = None
    eval_at_start: bool | None = None  # None: on when there is an eval manifest
    metric: str = "edit1_cer"
    num_editing_steps: int = 2
    keep_best_only: bool = False
    ignore_spaces: bool = False
    normalize: list[str] = field(default_factory=lambda: ["basic"])

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> FinetuneOptions:
        """The options of a parsed ``granite-nar finetune`` command line."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{name: value for name, value in vars(args).items() if name in names})

    @property
    def evaluates(self) -> bool:
        return self.eval_manifest is not None

    @property
    def metric_key(self) -> str:
        """``metric`` as the trainer logs it: ``eval_edit1_cer``."""
        return self.metric if self.metric.startswith("eval_") else f"eval_{self.metric}"


@dataclass
class FinetuneResult:
    """What a run did; written with the options to ``OUTPUT_DIR/finetune_summary.json``.

    ``best_step`` 0 is the starting model (scored by ``eval_at_start``); ``best_checkpoint`` is ``None`` when
    no checkpoint holds the best model (no evaluation, or the starting model without ``keep_best_only``).
    ``evaluations`` lists every evaluation of the run (resumed ones included), ``{"step": N, "eval_...": …}``.
    """

    steps: int
    seconds: float
    metric: str | None
    best_metric: float | None
    best_step: int | None
    best_checkpoint: str | None
    start_metrics: dict[str, float] | None
    evaluations: list[dict[str, float]]
    final: str
    resumed_from: str | None

    def line(self) -> str:
        """The one-line summary printed at the end of a run."""
        if self.best_metric is None:
            best = "no evaluation"
        else:
            where = self.best_checkpoint or ("the starting model" if self.best_step == 0 else "no checkpoint")
            best = f"best {self.metric} {self.best_metric:.4f} at step {self.best_step} ({where})"
        return f"finetune: {self.steps} steps in {self.seconds:.1f} s; {best}; final model in {self.final}"


# -- checks before anything is loaded -------------------------------------------------------------------------


def metric_names(num_editing_steps: int) -> list[str]:
    """The metrics an evaluation logs that can choose the best checkpoint (lower is better)."""
    steps = [step_name(k) for k in range(num_editing_steps + 1)]
    return ["loss"] + [f"{name}_{rate}" for name in steps for rate in ("cer", "wer")]


def sequence_objective(opts: FinetuneOptions) -> SequenceObjective | None:
    """The :class:`~granite_nar.training.SequenceObjective` of ``--objective sequence`` (None for ``sft``);
    raises ``ValueError`` naming a bad setting."""
    if opts.objective != "sequence":
        return None
    return SequenceObjective(
        group_size=opts.group_size,
        temperature=opts.sample_temperature,
        risk=opts.risk,
        advantage=opts.advantage,
        anchor_weight=opts.anchor_weight,
        encoder_weight=opts.encoder_sequence_weight,
        ignore_spaces=opts.ignore_spaces,
        normalize=build_normalizer(opts.normalize),
        seed=opts.seed,
    )


def check_options(opts: FinetuneOptions) -> FinetuneOptions:
    """Refuse options that would fail later (after the model has loaded); returns them with
    ``resume_from_checkpoint=True`` resolved to the last checkpoint folder."""
    if opts.preset not in PRESETS:
        raise FinetuneUsageError(f"--preset {opts.preset}: choose one of {', '.join(PRESETS)}")
    if opts.preset in NUM_LAYERS_PRESETS and opts.num_layers is None:
        raise FinetuneUsageError(
            f"--preset {opts.preset} needs --num-layers N (how many of the last editor layers to train)"
        )
    if opts.num_layers is not None and opts.preset not in NUM_LAYERS_PRESETS:
        raise FinetuneUsageError(
            f"--num-layers only applies to --preset {' or '.join(NUM_LAYERS_PRESETS)}, not to --preset {opts.preset}"
        )
    if opts.num_layers is not None and opts.num_layers < 1:
        raise FinetuneUsageError(f"--num-layers must be at least 1, got {opts.num_layers}")
    if opts.device not in ("auto", "cpu") and not re.fullmatch(r"cuda(:\d+)?", opts.device):
        raise FinetuneUsageError(f"--device: expected auto, cpu, cuda or cuda:N, got {opts.device!r}")
    if not 0.0 <= opts.max_unknown_fraction <= 1.0:
        raise FinetuneUsageError(
            f"--max-unknown-fraction: expected a fraction in [0, 1], got {opts.max_unknown_fraction}"
        )
    for option, value in (
        ("--batch-size", opts.batch_size),
        ("--grad-accum", opts.grad_accum),
        ("--logging-steps", opts.logging_steps),
    ):
        if value < 1:
            raise FinetuneUsageError(f"{option} must be at least 1, got {value}")
    if opts.objective not in ("sft", "sequence"):
        raise FinetuneUsageError(f"--objective {opts.objective}: choose sft or sequence")
    if opts.objective == "sequence":
        try:
            sequence_objective(opts)
        except ValueError as err:
            raise FinetuneUsageError(f"--objective sequence: {_one_line(err)}") from None
    try:
        build_normalizer(opts.normalize)
    except ValueError as err:
        raise FinetuneUsageError(f"--normalize: {_one_line(err)}") from None
    if not 0.0 <= opts.self_correction_prob <= 1.0:
        raise FinetuneUsageError(f"--self-correction-prob must be in [0, 1], got {opts.self_correction_prob}")
    if opts.minutes is not None and not opts.minutes > 0:
        raise FinetuneUsageError(f"--minutes must be above 0, got {opts.minutes}")
    if opts.eval_minutes is not None:
        if opts.minutes is None:
            raise FinetuneUsageError("--eval-minutes only applies to a run with --minutes (use --eval-steps)")
        if not opts.eval_minutes > 0:
            raise FinetuneUsageError(f"--eval-minutes must be above 0, got {opts.eval_minutes}")
    if opts.eval_at_start and not opts.evaluates:
        raise FinetuneUsageError("--eval-at-start needs --eval-manifest (the dev set it scores)")
    if opts.evaluates:
        if opts.eval_steps < 1:
            raise FinetuneUsageError(f"--eval-steps must be at least 1, got {opts.eval_steps}")
        if opts.num_editing_steps < 0:
            raise FinetuneUsageError(f"--num-editing-steps must be at least 0, got {opts.num_editing_steps}")
        names = metric_names(opts.num_editing_steps)
        if opts.metric.removeprefix("eval_") not in names:
            raise FinetuneUsageError(
                f"--metric {opts.metric}: not a metric of this evaluation (--num-editing-steps "
                f"{opts.num_editing_steps}); choose one of {', '.join(names)}"
            )
    for option, path in (("--train-manifest", opts.train_manifest), ("--eval-manifest", opts.eval_manifest)):
        if path is not None and not Path(path).is_file():
            raise FinetuneUsageError(f"{option} {path}: no such file")
    if opts.audio_root is not None and not Path(opts.audio_root).is_dir():
        raise FinetuneUsageError(f"--audio-root {opts.audio_root}: no such folder")
    resume = opts.resume_from_checkpoint
    if resume is True:
        resume = get_last_checkpoint(opts.output_dir) if Path(opts.output_dir).is_dir() else None
        if resume is None:
            raise FinetuneUsageError(
                f"--resume-from-checkpoint: no {PREFIX_CHECKPOINT_DIR}-N folder in --output-dir "
                f"{opts.output_dir} to resume from"
            )
    elif resume is not None and resume is not False and not Path(resume).is_dir():
        raise FinetuneUsageError(f"--resume-from-checkpoint {resume}: no such checkpoint folder")
    return dataclasses.replace(opts, resume_from_checkpoint=resume or None)


def select_device(opts: FinetuneOptions) -> bool:
    """Check ``device`` and ``bf16``; pin a CUDA run to its one device. Returns ``use_cpu``.

    ``cuda:N`` (and ``cuda`` = ``cuda:0``, and ``auto`` on a CUDA machine) is made the only visible device
    (``CUDA_VISIBLE_DEVICES``), because transformers' Trainer otherwise trains on ``cuda:0`` and wraps the
    model in ``DataParallel`` when it sees several GPUs. Under ``torchrun`` the launcher decides.
    """
    spec = opts.device
    if spec == "cpu":
        return True
    if torch.version.cuda is None:  # a CPU-only build of torch
        if spec == "auto":
            return True
        raise FinetuneUsageError(
            f"--device {spec}: this torch build has no CUDA support (torch {torch.__version__}); use --device cpu"
        )
    index = 0 if spec in ("auto", "cuda") else int(spec.split(":")[1])
    if "LOCAL_RANK" not in os.environ and not torch.cuda.is_initialized():
        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        ids = [v.strip() for v in visible.split(",") if v.strip()] if visible is not None else None
        if ids is not None and index >= len(ids):
            if spec == "auto":
                return True
            raise FinetuneUsageError(
                f"--device {spec}: CUDA_VISIBLE_DEVICES={visible} makes {len(ids)} device(s) visible, so there is no "
                f"cuda:{index}"
            )
        os.environ["CUDA_VISIBLE_DEVICES"] = ids[index] if ids is not None else str(index)
    if not torch.cuda.is_available():
        if spec == "auto":
            return True
        raise FinetuneUsageError(
            f"--device {spec}: no such CUDA device on this machine (torch.cuda.is_available() is False)"
        )
    if opts.bf16 and not torch.cuda.is_bf16_supported():
        raise FinetuneUsageError(
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
            raise FinetuneUsageError(
                f"--model {model}: {'not a folder' if path.exists() else 'no such folder'}"
            )
        if not (path / "config.json").is_file():
            raise FinetuneUsageError(
                f"--model {model}: no config.json in this folder (not a checkpoint folder)"
            )
    try:
        return GraniteSpeechNarConfig.from_pretrained(model)
    except Exception as err:  # a missing folder, no config.json, not a Granite Speech NAR checkpoint …
        raise FinetuneUsageError(
            f"--model {model}: cannot read its configuration: {_one_line(err)}"
        ) from None


def check_config(opts: FinetuneOptions, config: GraniteSpeechNarConfig) -> None:
    layers = config.text_config.num_hidden_layers
    if opts.num_layers is not None and opts.num_layers > layers:
        raise FinetuneUsageError(
            f"--num-layers {opts.num_layers}: the editor of {opts.model} has {layers} layer(s); choose 1..{layers}"
        )


def read_data(option: str, path: str, opts: FinetuneOptions, tokenizer, filters: ManifestFilter):
    """The rows of a manifest, its report printed; a manifest that cannot be trained on is refused."""
    try:
        rows, report = read_manifest(
            path,
            audio_root=opts.audio_root,
            tokenizer=tokenizer,
            filters=filters,
            max_unknown_fraction=opts.max_unknown_fraction,
        )
    except ManifestError as err:
        print(err.report)
        raise FinetuneUsageError(f"{option} {err} (--max-unknown-fraction sets the limit)") from None
    except (OSError, UnicodeDecodeError) as err:
        raise FinetuneUsageError(f"{option} {path}: cannot read it: {_one_line(err)}") from None
    print(report)
    if not rows:
        reasons = "; ".join(f"{count} {reason}" for reason, count in report.skipped.most_common())
        raise FinetuneUsageError(
            f"{option} {path}: no usable rows"
            + (f" (all {report.total} skipped: {reasons})" if report.total else " (the file has no rows)")
        )
    return rows


def _one_line(message) -> str:
    return " ".join(str(message).split())


# -- the trainer ------------------------------------------------------------------------------------------------


def training_arguments(opts: FinetuneOptions, *, use_cpu: bool) -> TrainingArguments:
    """transformers' ``TrainingArguments`` of a run.

    Evaluation and saving come every ``eval_steps`` steps; with ``minutes`` they come from the budget
    (:class:`_TimeBudget`) instead, so their step interval is the (unreachable) last step. ``keep_best_only``
    saves only a checkpoint that beats the best metric so far and loads the best one at the end.
    """
    budget = opts.minutes is not None
    max_steps = opts.max_steps if not budget or opts.max_steps > 0 else UNREACHABLE_STEPS
    every = max_steps if budget else opts.eval_steps
    evaluate = opts.evaluates
    return TrainingArguments(
        output_dir=opts.output_dir,
        num_train_epochs=opts.epochs,
        max_steps=max_steps,
        per_device_train_batch_size=opts.batch_size,
        per_device_eval_batch_size=opts.batch_size,
        gradient_accumulation_steps=opts.grad_accum,
        learning_rate=opts.lr,
        warmup_steps=opts.warmup_steps,
        lr_scheduler_type="cosine",  # replaced by the budget's lr_lambda with minutes
        bf16=opts.bf16,
        use_cpu=use_cpu,
        logging_steps=opts.logging_steps,
        eval_strategy="steps" if evaluate else "no",
        eval_steps=every,
        save_strategy="best" if evaluate and opts.keep_best_only else "steps",
        save_steps=every,
        save_total_limit=1 if opts.keep_best_only else None,
        metric_for_best_model=opts.metric if evaluate else None,
        load_best_model_at_end=evaluate and opts.keep_best_only,
        greater_is_better=False,
        remove_unused_columns=False,  # the collator needs the raw text
        train_sampling_strategy="group_by_length",
        report_to=[],
        seed=opts.seed,
        disable_tqdm=budget,  # a bar towards an unreachable step says nothing; the logs are printed instead
    )


class _FinetuneTrainer(GraniteSpeechNarTrainer):
    """The trainer, with an optional learning-rate lambda (a wall-clock budget's) instead of ``lr_scheduler_type``."""

    def __init__(self, *args, lr_lambda=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.lr_lambda = lr_lambda

    def create_scheduler(self, num_training_steps: int, optimizer: torch.optim.Optimizer | None = None):
        if self.lr_lambda is None:
            return super().create_scheduler(num_training_steps, optimizer)
        if self.lr_scheduler is None:
            optimizer = optimizer if optimizer is not None else self.optimizer
            self.lr_scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, self.lr_lambda)
        return self.lr_scheduler


class _TimeBudget(WallClockBudget):
    """:class:`WallClockBudget` for ``granite-nar finetune``: it counts ``spent_seconds`` (the time of the run
    before a resumed checkpoint), saves a checkpoint with every evaluation it asks for (and at the end of the
    budget), and asks for a save instead of an evaluation when there is no dev set."""

    def __init__(
        self, seconds: float, *, warmup_steps: int, evaluate_every_seconds: float | None, can_evaluate: bool
    ):
        super().__init__(seconds, warmup_steps=warmup_steps, evaluate_every_seconds=evaluate_every_seconds)
        self.can_evaluate = can_evaluate
        self.spent_seconds = 0.0

    def on_step_begin(self, args, state, control, **kwargs):
        if self.start is None:
            self.start = time.monotonic() - self.spent_seconds
            self._last_evaluation = self.spent_seconds  # a checkpoint is saved with each evaluation
        return super().on_step_begin(args, state, control, **kwargs)

    def on_step_end(self, args, state, control, **kwargs):
        control = super().on_step_end(args, state, control, **kwargs) or control
        if control.should_evaluate:
            control.should_save = True  # with keep_best_only the trainer decides after the evaluation
            if not self.can_evaluate:
                control.should_evaluate = False
        return control


class _EvaluateAtStart(TrainerCallback):
    """Score the dev set before the first step; its metric becomes the best to beat. With ``keep_best_only``
    the starting model is saved as ``checkpoint-0`` and recorded as the best checkpoint, so the trainer keeps it
    (and loads it at the end) unless a later evaluation beats it. Not run again when resuming past step 0."""

    def __init__(self, trainer: GraniteSpeechNarTrainer, opts: FinetuneOptions):
        self.trainer = trainer
        self.opts = opts
        self.metrics: dict[str, float] | None = None

    def on_train_begin(self, args, state, control, **kwargs):
        if state.global_step > 0:
            return None
        trainer = self.trainer
        self.metrics = metrics = trainer.evaluate()
        if state.is_world_process_zero:
            print(f"before training: {format_metrics(metrics, self.opts.num_editing_steps)}", flush=True)
        state.best_metric = metrics[self.opts.metric_key]
        state.best_global_step = 0
        if self.opts.keep_best_only:
            state.best_model_checkpoint = os.path.join(args.output_dir, f"{PREFIX_CHECKPOINT_DIR}-0")
            # The trainer's own checkpoint (weights, optimizer, scheduler, random state, trainer state).
            trainer._save_checkpoint(trainer.model, trial=None)
            trainer.callback_handler.on_save(args, state, control)
        return None


class _RunState(TrainerCallback):
    """Writes ``finetune_state.safetensors`` into every checkpoint: the generator states of the draft noise and
    of the sequence stage's sampling, and the seconds spent (for a wall-clock budget); :meth:`restore` reads
    them back when resuming."""

    def __init__(
        self, noise: DraftNoise, budget: _TimeBudget | None, sequence: SequenceObjective | None = None
    ):
        self.noise = noise
        self.budget = budget
        self.sequence = sequence

    def on_save(self, args, state, control, **kwargs):
        folder = Path(args.output_dir) / f"{PREFIX_CHECKPOINT_DIR}-{state.global_step}"
        if state.is_world_process_zero and folder.is_dir():
            from safetensors.torch import save_file

            spent = self.budget.elapsed() if self.budget is not None else 0.0
            tensors = {"draft_noise_generator": self.noise._generator.get_state()}
            if self.sequence is not None:
                tensors["sequence_sampling_generator"] = self.sequence._generator.get_state()
            save_file(
                tensors,
                str(folder / STATE_NAME),
                metadata={"spent_seconds": repr(spent)},
            )

    def restore(self, checkpoint: str) -> None:
        path = Path(checkpoint) / STATE_NAME
        if not path.is_file():  # a checkpoint of an older run: the noise starts again from its seed
            return
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as f:
            self.noise._generator.set_state(f.get_tensor("draft_noise_generator"))
            if self.sequence is not None and "sequence_sampling_generator" in f.keys():
                self.sequence._generator.set_state(f.get_tensor("sequence_sampling_generator"))
            spent = float((f.metadata() or {}).get("spent_seconds", 0.0))
        if self.budget is not None:
            self.budget.spent_seconds = spent


def format_metrics(metrics: dict[str, float], num_editing_steps: int) -> str:
    """``draft CER 10.00 % WER 26.92 %, edit1 CER …, loss 0.8130`` of an evaluation's metrics."""
    parts = []
    for step in range(num_editing_steps + 1):
        name = step_name(step)
        cer, wer = metrics.get(f"eval_{name}_cer"), metrics.get(f"eval_{name}_wer")
        if cer is not None and wer is not None:
            parts.append(f"{name} CER {100 * cer:.2f} % WER {100 * wer:.2f} %")
    if "eval_loss" in metrics:
        parts.append(f"loss {metrics['eval_loss']:.4f}")
    return ", ".join(parts)


def build_trainer(
    opts: FinetuneOptions,
    *,
    model,
    processor: GraniteSpeechNarProcessor,
    collator: DataCollatorForGraniteSpeechNar,
    train_set: SpeechDataset,
    eval_set: SpeechDataset | None,
    noise: DraftNoise,
    use_cpu: bool,
) -> tuple[_FinetuneTrainer, _TimeBudget | None, _RunState, _EvaluateAtStart | None]:
    """The trainer of a run with its callbacks: ``(trainer, budget or None, run state, evaluate-at-start or None)``."""
    budget = None
    if opts.minutes is not None:
        budget = _TimeBudget(
            opts.minutes * 60.0,
            warmup_steps=opts.warmup_steps,
            evaluate_every_seconds=None if opts.eval_minutes is None else opts.eval_minutes * 60.0,
            can_evaluate=eval_set is not None,
        )
    sequence = sequence_objective(opts)
    evaluator = None
    if eval_set is not None:
        evaluator = TranscriptionEvaluator(
            eval_set,
            collator,
            processor.tokenizer,
            num_editing_steps=opts.num_editing_steps,
            batch_size=opts.batch_size,
            normalize=build_normalizer(opts.normalize),
            ignore_spaces=opts.ignore_spaces,
        )
    trainer = _FinetuneTrainer(
        model=model,
        args=training_arguments(opts, use_cpu=use_cpu),
        train_dataset=train_set,
        eval_dataset=eval_set,
        data_collator=collator,
        draft_noise=noise,
        edit_loss_weight=opts.edit_loss_weight,
        transcription_evaluator=evaluator,
        processor=processor,
        sequence_objective=sequence,
        lr_lambda=budget.lr_lambda if budget is not None else None,
        callbacks=[budget] if budget is not None else None,
    )
    run_state = _RunState(noise, budget, sequence)
    trainer.add_callback(run_state)
    at_start = None
    eval_at_start = opts.eval_at_start if opts.eval_at_start is not None else eval_set is not None
    if eval_at_start and eval_set is not None:
        # After the progress callback, so that the baseline's log lines are printed like the others.
        at_start = _EvaluateAtStart(trainer, opts)
        trainer.add_callback(at_start)
    return trainer, budget, run_state, at_start


# -- the run ----------------------------------------------------------------------------------------------------


def run_finetune(opts: FinetuneOptions) -> FinetuneResult:
    """Fine-tune as ``opts`` says (see the module docstring); raises :class:`FinetuneUsageError` before the
    model is loaded when the options, the model's configuration or a manifest cannot be used."""
    opts = check_options(opts)
    use_cpu = select_device(opts)
    config = load_config(opts.model)
    check_config(opts, config)
    previous_threads = torch.get_num_threads()
    if opts.threads:
        torch.set_num_threads(opts.threads)
    try:
        return _run(opts, config, use_cpu)
    finally:
        torch.set_num_threads(previous_threads)


def _run(opts: FinetuneOptions, config: GraniteSpeechNarConfig, use_cpu: bool) -> FinetuneResult:
    try:
        processor = GraniteSpeechNarProcessor.from_pretrained(opts.model)
    except Exception as err:
        raise FinetuneUsageError(
            f"--model {opts.model}: cannot load its processor: {_one_line(err)}"
        ) from None
    filters = ManifestFilter(
        min_duration_sec=opts.min_duration,
        max_duration_sec=opts.max_duration,
        max_text_chars=opts.max_text_chars,
        score_field=opts.score_field,
        max_score=opts.max_score,
        pooling_window=config.encoder_config.pooling_window,
    )
    fe, tokenizer = processor.feature_extractor, processor.tokenizer
    train_set = SpeechDataset(
        read_data("--train-manifest", opts.train_manifest, opts, tokenizer, filters), fe
    )
    eval_set = None
    if opts.eval_manifest is not None:
        eval_set = SpeechDataset(
            read_data("--eval-manifest", opts.eval_manifest, opts, tokenizer, filters), fe
        )

    # Everything checked: now the model.
    model = GraniteSpeechNarForCTC.from_pretrained(opts.model, dtype=torch.float32)
    if opts.ce_loss_lambda is not None:
        model.config.ce_loss_lambda = opts.ce_loss_lambda
    if opts.encoder_ctc_loss_lambda is not None:
        model.config.encoder_ctc_loss_lambda = opts.encoder_ctc_loss_lambda
    collator = DataCollatorForGraniteSpeechNar.from_processor(
        processor, blank_token_id=model.config.blank_token_id
    )
    model, _ = apply_preset(
        model,
        opts.preset,
        num_layers=opts.num_layers,
        lora_targets=opts.lora_targets,
        lora_rank=opts.lora_rank,
        lora_alpha=opts.lora_alpha,
        lora_dropout=opts.lora_dropout,
    )
    special = set(tokenizer.all_special_ids) | {model.config.blank_token_id}
    noise = DraftNoise(
        substitution_prob=opts.substitution_prob,
        deletion_prob=opts.deletion_prob,
        insertion_prob=opts.insertion_prob,
        reference_prob=opts.reference_prob,
        self_correction_prob=opts.self_correction_prob,
        vocab_size=model.config.text_config.vocab_size,
        excluded_ids=sorted(special),
        seed=opts.seed,
    )
    trainer, _, run_state, _ = build_trainer(
        opts,
        model=model,
        processor=processor,
        collator=collator,
        train_set=train_set,
        eval_set=eval_set,
        noise=noise,
        use_cpu=use_cpu,
    )
    resume = opts.resume_from_checkpoint
    if resume is not None:
        print(f"resuming from {resume}")
        run_state.restore(resume)
    tic = time.monotonic()
    trainer.train(resume_from_checkpoint=resume)
    seconds = time.monotonic() - tic

    # The model (LoRA merged, the adapter in final/adapter) and the processor, as in every checkpoint.
    final = Path(opts.output_dir) / "final"
    trainer.save_model(str(final))
    result = _result(trainer, opts, seconds, final)
    if trainer.args.should_save:
        summary = {**dataclasses.asdict(result), "arguments": dataclasses.asdict(opts)}
        (Path(opts.output_dir) / SUMMARY_NAME).write_text(json.dumps(summary, indent=2) + "\n")
        print(result.line(), flush=True)
    return result


def _result(trainer, opts: FinetuneOptions, seconds: float, final: Path) -> FinetuneResult:
    state = trainer.state
    evaluations: dict[int, dict[str, float]] = {}
    for entry in state.log_history:
        scores = {k: v for k, v in entry.items() if k.startswith("eval_") and isinstance(v, (int, float))}
        if scores:
            evaluations.setdefault(entry.get("step", 0), {"step": entry.get("step", 0)}).update(scores)
    evaluated = opts.evaluates and state.best_metric is not None and math.isfinite(state.best_metric)
    best_step = state.best_global_step if evaluated else None
    start = evaluations.get(0)  # the starting model's scores (eval_at_start), also after a resume
    return FinetuneResult(
        steps=state.global_step,
        seconds=round(seconds, 3),
        metric=opts.metric_key if opts.evaluates else None,
        best_metric=state.best_metric if evaluated else None,
        best_step=best_step,
        best_checkpoint=state.best_model_checkpoint if evaluated else None,
        start_metrics={k: v for k, v in start.items() if k.startswith("eval_")} if start else None,
        evaluations=[evaluations[step] for step in sorted(evaluations)],
        final=str(final),
        resumed_from=opts.resume_from_checkpoint,
    )


def run_from_args(args: argparse.Namespace) -> int:
    """``granite-nar finetune``: the parsed command line through :func:`run_finetune`; returns the exit status
    (0). Raises :class:`FinetuneUsageError` for a run that cannot start."""
    run_finetune(FinetuneOptions.from_args(args))
    return 0
