"""Fine-tuning Granite Speech NAR with transformers' ``Trainer``.

The training objective (docs/reference_behaviour.md §5) is::

    L = w_edit · L_ctc + λ_ce · L_ce + λ_enc · L_enc

* ``L_ctc``: CTC of the editor's slot logits towards the reference (the "latent alignment" loss),
  summed over the batch and divided by the number of slot positions;
* ``L_ce``: cross-entropy of the slot logits towards the slots the editor was given (the copy
  regulariser), weight ``config.ce_loss_lambda``;
* ``L_enc``: CTC of the encoder's pooled BPE logits towards the reference, divided by the number of
  80 ms windows, weight ``config.encoder_ctc_loss_lambda``;
* ``w_edit`` (``edit_loss_weight``, 1 in the model) can be set to 0 to train the encoder alone; the
  editor is then not run at all.

One optional term is not in docs/reference_behaviour.md §5: ``λ_char · L_char``, CTC of the encoder's mid-layer character head
(the self-conditioning head, blank = index 0) towards the transcript's characters, at the 20 ms frame
rate, divided by the number of frames. The released encoder carries this head because it was trained
with such a loss; training an encoder from scratch converges much faster with it (docs/training.md).
It needs ``char_labels`` / ``char_label_lengths`` from a collator built with a ``char_vocabulary``.

:class:`GraniteSpeechNarTrainer` runs the model's public parts (``encode_audio`` → optional draft noise →
the model on the precomputed audio), weighs the components with the same
:func:`~granite_nar.model.ctc.nar_losses` as the model's ``forward``, logs each of them, and adds transcription
metrics (draft / edit-1 / edit-2 CER and WER) to every evaluation through a
:class:`TranscriptionEvaluator`, so ``metric_for_best_model="edit1_cer"`` with ``save_strategy="best"``
and ``save_total_limit=1`` keeps only the best checkpoint.

Every checkpoint it saves loads with ``GraniteSpeechNarForCTC.from_pretrained`` and
``GraniteSpeechNarProcessor.from_pretrained`` (so ``granite-nar transcribe --model CHECKPOINT`` works): the
processor files are written next to the weights, and a LoRA (peft) model is saved merged
(``config.json``, ``model.safetensors``) with its adapter in the ``adapter/`` subfolder, from which
``resume_from_checkpoint`` and ``load_best_model_at_end`` restore it.
"""

from __future__ import annotations

import math
import os
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from functools import partial

import torch
from torch import nn
from transformers import Trainer, TrainerCallback
from transformers.trainer_pt_utils import LengthGroupedSampler

from ..lengths import ENCODER_FRAME_SECONDS, lengths_to_mask
from ..model.ctc import Divisor, NarLosses, nar_losses
from .metrics import Normalizer, basic_normalize, char_error_rate, word_error_rate
from .noise import DraftNoise
from .presets import is_peft_model, merged_state_dict, unwrap_model

__all__ = [
    "NarLosses",
    "compute_nar_losses",
    "TranscriptionEvaluator",
    "GraniteSpeechNarTrainer",
    "WallClockBudget",
    "step_name",
    "save_merged_model",
    "ADAPTER_SUBFOLDER",
]

# Subfolder of a checkpoint that holds the LoRA adapter of a peft model (the merged model is at the top).
ADAPTER_SUBFOLDER = "adapter"


def save_merged_model(model: nn.Module, folder: str | os.PathLike) -> None:
    """Write ``model`` to ``folder`` as a plain :class:`~granite_nar.GraniteSpeechNarForCTC` checkpoint
    (``config.json``, ``model.safetensors``): a peft model with its LoRA adapters merged (``model`` itself is
    not changed), anything else as it is."""
    base = unwrap_model(model)
    base.save_pretrained(folder, state_dict=merged_state_dict(model) if is_peft_model(model) else None)


def compute_nar_losses(
    model: nn.Module,
    input_features: torch.Tensor,
    input_features_mask: torch.Tensor | None,
    labels: torch.Tensor,
    label_lengths: torch.Tensor,
    draft_noise: DraftNoise | None = None,
    edit_loss_weight: float = 1.0,
    ce_loss_lambda: float | None = None,
    encoder_ctc_loss_lambda: float | None = None,
    char_labels: torch.Tensor | None = None,
    char_label_lengths: torch.Tensor | None = None,
    char_ctc_loss_lambda: float = 0.0,
    divisor: Divisor | None = None,
) -> NarLosses:
    """The training losses for one batch, with optional draft noise, through :func:`granite_nar.model.ctc.nar_losses`.

    The model's ``forward`` computes its losses with the same function; without noise and with
    ``edit_loss_weight=1`` the two agree exactly. What this adds: drafts can be corrupted (or sampled from
    the encoder's posterior) before editing, the editor can be skipped (``edit_loss_weight=0``), and the
    optional character CTC of the encoder's mid-layer head can be added.

    Args:
        model: a :class:`~granite_nar.GraniteSpeechNarForCTC` (or a peft model wrapping one).
        input_features, input_features_mask: ``(B, T, 160)`` and ``(B, T)``.
        labels, label_lengths: ``(B, S_max)`` reference ids (padding ignored) and their lengths.
        draft_noise: corrupts the encoder drafts before editing (training only).
        edit_loss_weight: weight of the editing CTC loss; 0 skips the editor entirely.
        ce_loss_lambda, encoder_ctc_loss_lambda: override the config's weights.
        char_labels, char_label_lengths, char_ctc_loss_lambda: the optional character CTC of the encoder's
            self-conditioning head (``(B, C_max)`` ids with 0 = blank never used as a label).
        divisor: the normaliser of the loss terms (:func:`granite_nar.model.ctc.nar_losses`); the trainer
            passes :func:`data_parallel_divisor` when several processes train together.
    """
    base = unwrap_model(model)
    cfg = base.config
    blank = cfg.blank_token_id
    lambda_ce = cfg.ce_loss_lambda if ce_loss_lambda is None else ce_loss_lambda
    lambda_enc = cfg.encoder_ctc_loss_lambda if encoder_ctc_loss_lambda is None else encoder_ctc_loss_lambda
    if edit_loss_weight <= 0 and lambda_enc <= 0:
        raise ValueError("nothing to train: edit_loss_weight and encoder_ctc_loss_lambda are both 0.")
    label_lengths = torch.as_tensor(label_lengths, device=labels.device).long()
    labels = labels.clamp_min(0)  # padding (e.g. -100) is never read past label_lengths

    sample = draft_noise is not None and draft_noise.sampling_temperature > 0 and edit_loss_weight > 0
    audio = base.model.encode_audio(
        input_features, input_features_mask, output_bpe_logits=lambda_enc > 0 or sample
    )
    edited = None
    if edit_loss_weight > 0:
        drafts = audio.draft_ids
        if sample:
            drafts = draft_noise.sample_drafts(audio.bpe_logits, audio.bpe_lengths.tolist(), blank)
        if draft_noise is not None and draft_noise.enabled:
            drafts = draft_noise(drafts, labels, label_lengths)
        if draft_noise is not None and draft_noise.self_correction_prob > 0:
            chosen = draft_noise.self_correction_mask(len(drafts))
            if bool(chosen.any()):
                drafts = _self_correction_drafts(base, audio, drafts, chosen)
        # The inner model, not base(...): this may run inside the root's forward (loss_closure), and a
        # wrapped root forward (accelerate's autocast) must not be entered twice.
        edited = base.model(
            audio_embeds=audio.audio_embeds,
            audio_lengths=audio.audio_lengths,
            input_ids=drafts,
            return_dict=True,
        )
    char_logits = None
    if char_ctc_loss_lambda > 0:
        # (ΣT, C): the valid frames of the mid-layer character head's logits, utterance after utterance.
        char_logits = audio.char_logits[lengths_to_mask(audio.frame_lengths, audio.char_logits.shape[1])]
    return nar_losses(
        labels,
        label_lengths,
        blank,
        slot_logits=None if edited is None else base.slot_logits(edited.last_hidden_state)[0],
        slot_lengths=None if edited is None else edited.seq_lengths.tolist(),
        slot_ids=None if edited is None else edited.inserted_ctc_token_ids,
        edit_loss_weight=edit_loss_weight,
        ce_loss_lambda=lambda_ce,
        bpe_logits=audio.bpe_logits,
        bpe_lengths=audio.bpe_lengths.tolist(),
        encoder_ctc_loss_lambda=lambda_enc,
        char_logits=char_logits,
        char_lengths=audio.frame_lengths.tolist(),
        char_labels=char_labels,
        char_label_lengths=char_label_lengths,
        char_ctc_loss_lambda=char_ctc_loss_lambda,
        divisor=divisor,
    )


def _self_correction_drafts(
    base, audio, drafts: list[torch.Tensor], chosen: torch.Tensor
) -> list[torch.Tensor]:
    """``drafts`` with the chosen utterances' entries replaced by the model's greedy edit of the *encoder's*
    draft (what step 1 writes at inference), computed without gradients and with the editor in inference
    mode (no dropout)."""
    index = chosen.nonzero().flatten().tolist()
    editor = base.model.language_model
    was_training = editor.training
    editor.eval()
    try:
        with torch.no_grad():
            edits = base.generate(
                audio_embeds=[audio.audio_embeds[b, : int(audio.audio_lengths[b])] for b in index],
                input_ids=[audio.draft_ids[b] for b in index],
                num_editing_steps=1,
            )
    finally:
        editor.train(was_training)
    drafts = list(drafts)
    for b, edit in zip(index, edits, strict=True):
        drafts[b] = edit.to(drafts[b].device)
    return drafts


def data_parallel_divisor(count: torch.Tensor) -> torch.Tensor:
    """The global count of positions over every process, divided by their number.

    The reference normalises each loss by the positions of the whole batch. Data-parallel training
    averages the processes' gradients; dividing each process's summed loss by this instead of its own
    count makes that average the gradient of one batch of every process's utterances.
    """
    import torch.distributed as dist

    total = count.detach().to(torch.float64).clone()
    dist.all_reduce(total)
    return (total / dist.get_world_size()).to(torch.float32)


def _data_parallel() -> bool:
    import torch.distributed as dist

    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def step_name(step: int) -> str:
    """Metric prefix of an editing step: ``draft`` for 0 (the CTC draft), ``edit{k}`` otherwise."""
    return "draft" if step == 0 else f"edit{step}"


class TranscriptionEvaluator:
    """Greedy transcription of a dataset and its CER / WER after each editing step.

    Args:
        dataset: items ``{"audio" | "input_features", "text"}`` (a :class:`~granite_nar.training.SpeechDataset`).
        collator: the :class:`~granite_nar.training.DataCollatorForGraniteSpeechNar` (features only are used).
        tokenizer: decodes the token ids (``skip_special_tokens=True``).
        num_editing_steps: the largest editing step to score; every step from the draft (0) up is scored.
        batch_size: utterances per ``generate`` call.
        normalize: text normalisation applied to references and hypotheses before scoring.
        ignore_spaces: CER without spaces (languages written without them).
    """

    def __init__(
        self,
        dataset,
        collator,
        tokenizer,
        num_editing_steps: int = 2,
        batch_size: int = 16,
        normalize: Normalizer | None = basic_normalize,
        ignore_spaces: bool = False,
    ):
        self.dataset = dataset
        self.collator = collator
        self.tokenizer = tokenizer
        self.num_editing_steps = num_editing_steps
        self.batch_size = batch_size
        self.normalize = normalize
        self.ignore_spaces = ignore_spaces

    @torch.no_grad()
    def transcribe(self, model: nn.Module) -> tuple[list[str], dict[int, list[str]], float, float]:
        """``(references, {step: hypotheses}, audio_seconds, compute_seconds)``."""
        base = unwrap_model(model)
        was_training = base.training
        base.eval()
        device = next(base.parameters()).device
        refs: list[str] = []
        hyps: dict[int, list[str]] = defaultdict(list)
        audio_seconds = compute_seconds = 0.0
        try:
            for start in range(0, len(self.dataset), self.batch_size):
                items = [
                    self.dataset[i] for i in range(start, min(start + self.batch_size, len(self.dataset)))
                ]
                batch = self.collator(items)
                feats = batch["input_features"].to(device)
                mask = batch["input_features_mask"].to(device)
                audio_seconds += float(mask.sum()) * ENCODER_FRAME_SECONDS
                tic = time.perf_counter()
                out = base.generate(
                    feats, mask, num_editing_steps=self.num_editing_steps, return_dict_in_generate=True
                )
                compute_seconds += time.perf_counter() - tic
                refs += [item["text"] for item in items]
                steps = [out.draft_ids, *(out.step_sequences or [])]
                for step, sequences in enumerate(steps):
                    hyps[step] += self.tokenizer.batch_decode(
                        [s.tolist() for s in sequences], skip_special_tokens=True
                    )
        finally:
            base.train(was_training)
        return refs, dict(hyps), audio_seconds, compute_seconds

    def score(self, references: Sequence[str], hypotheses: dict[int, list[str]]) -> dict[str, float]:
        metrics = {}
        for step, hyp in hypotheses.items():
            name = step_name(step)
            metrics[f"{name}_cer"] = char_error_rate(references, hyp, self.normalize, self.ignore_spaces).rate
            metrics[f"{name}_wer"] = word_error_rate(references, hyp, self.normalize).rate
        return metrics

    def __call__(self, model: nn.Module) -> dict[str, float]:
        """CER and WER per step (``draft_cer``, ``edit1_cer``, ``edit2_wer`` …) and the RTFx of the pass."""
        refs, hyps, audio_seconds, compute_seconds = self.transcribe(model)
        metrics = self.score(refs, hyps)
        metrics["rtfx"] = audio_seconds / max(compute_seconds, 1e-9)
        return metrics


class GraniteSpeechNarTrainer(Trainer):
    """``transformers.Trainer`` for Granite Speech NAR.

    Args (besides ``Trainer``'s):
        draft_noise: :class:`DraftNoise` applied to the encoder drafts of training batches.
        edit_loss_weight: weight of the editing CTC loss (0: train the encoder's BPE CTC only); may be
            changed between steps (e.g. by a callback, to train the encoder first).
        char_ctc_loss_lambda: weight of the optional character CTC of the encoder's self-conditioning head.
        transcription_evaluator: a :class:`TranscriptionEvaluator`; its metrics are added to every
            evaluation (``eval_draft_cer``, ``eval_edit1_cer`` …).
        log_fn: optional callable receiving every logged dict. With ``disable_tqdm=True`` transformers'
            ``PrinterCallback`` prints each log as well: remove it (``trainer.remove_callback(PrinterCallback)``)
            when ``log_fn`` prints.
        processor: saved into every checkpoint (and by ``save_model``), so that each one loads with
            ``GraniteSpeechNarProcessor.from_pretrained``; default: built from the data collator's feature
            extractor and tokenizer when it has both.
        save_merged: save a peft (LoRA) model merged, with its adapter in the ``adapter/`` subfolder
            (default), instead of the adapter alone, so that every checkpoint loads with
            ``GraniteSpeechNarForCTC.from_pretrained``.

    Training logs carry the components ``ctc_loss``, ``ce_loss`` and ``encoder_ctc_loss`` averaged over
    the logging interval, next to the total ``loss``. With ``train_sampling_strategy="group_by_length"``
    batches are grouped by audio duration (the dataset's ``lengths``).
    """

    def __init__(
        self,
        *args,
        draft_noise: DraftNoise | None = None,
        edit_loss_weight: float = 1.0,
        char_ctc_loss_lambda: float = 0.0,
        transcription_evaluator: TranscriptionEvaluator | None = None,
        log_fn: Callable[[dict], None] | None = None,
        processor=None,
        save_merged: bool = True,
        sequence_objective=None,
        **kwargs,
    ):
        super().__init__(*args, **kwargs)
        if self.args.n_gpu > 1:
            raise RuntimeError(
                f"{self.args.n_gpu} GPUs in one process: transformers' Trainer would wrap the model in "
                "nn.DataParallel, which splits the batch by rows and cannot split the packed editor batch. "
                "Run one process per GPU instead: torchrun --nproc_per_node "
                f"{self.args.n_gpu} your_script.py (or accelerate launch), or set CUDA_VISIBLE_DEVICES to one "
                "GPU (docs/scale_out.md)"
            )
        if processor is None:
            processor = _processor_of(self.data_collator)
        self.processor = processor
        self.save_merged = save_merged
        self.draft_noise = draft_noise
        self.edit_loss_weight = edit_loss_weight
        self.char_ctc_loss_lambda = char_ctc_loss_lambda
        self.transcription_evaluator = transcription_evaluator
        self.log_fn = log_fn
        self.sequence_objective = sequence_objective
        if sequence_objective is not None and getattr(self.processor, "tokenizer", None) is None:
            raise ValueError(
                "sequence_objective needs a processor (its tokenizer decodes the sampled hypotheses)."
            )
        # compute_loss returns a per-batch mean: let Trainer divide it for gradient accumulation.
        self.loss_is_scaled_for_ga = False
        self._component_sums: dict[str, float] = defaultdict(float)
        self._component_counts: dict[str, int] = defaultdict(int)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        # Through the model's forward (loss_closure): DistributedDataParallel syncs gradients only for
        # work done inside a forward call, and FSDP gathers its shards there.
        if self.sequence_objective is not None and model.training:
            from .sequence import compute_sequence_losses

            tokenizer = self.processor.tokenizer
            closure = partial(
                compute_sequence_losses,
                input_features=inputs["input_features"],
                input_features_mask=inputs.get("input_features_mask"),
                labels=inputs["labels"],
                label_lengths=inputs["label_lengths"],
                objective=self.sequence_objective,
                decode=partial(tokenizer.batch_decode, skip_special_tokens=True),
                divisor=data_parallel_divisor if _data_parallel() else None,
            )
        else:
            closure = partial(
                compute_nar_losses,
                input_features=inputs["input_features"],
                input_features_mask=inputs.get("input_features_mask"),
                labels=inputs["labels"],
                label_lengths=inputs["label_lengths"],
                draft_noise=self.draft_noise if model.training else None,
                edit_loss_weight=self.edit_loss_weight,
                char_labels=inputs.get("char_labels"),
                char_label_lengths=inputs.get("char_label_lengths"),
                char_ctc_loss_lambda=self.char_ctc_loss_lambda,
                divisor=data_parallel_divisor if _data_parallel() else None,
            )
        losses = model(loss_closure=closure)
        if model.training:
            for name, value in losses.components().items():
                self._component_sums[name] += value
                self._component_counts[name] += 1
        if return_outputs:
            return losses.loss, {"loss": losses.loss}
        return losses.loss

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        if "loss" in logs and self._component_counts:
            for name, total in self._component_sums.items():
                logs[name] = total / self._component_counts[name]
            self._component_sums.clear()
            self._component_counts.clear()
        super().log(logs, start_time)
        if self.log_fn is not None:
            self.log_fn({**logs, "step": self.state.global_step})

    def evaluate(
        self, eval_dataset=None, ignore_keys=None, metric_key_prefix: str = "eval"
    ) -> dict[str, float]:
        metrics = super().evaluate(eval_dataset, ignore_keys, metric_key_prefix)
        if self.transcription_evaluator is not None:
            extra = {
                f"{metric_key_prefix}_{k}": v for k, v in self.transcription_evaluator(self.model).items()
            }
            metrics.update(extra)
            self.log(extra)
        return metrics

    def _save(self, output_dir: str | None = None, state_dict: dict | None = None) -> None:
        """Trainer's save, plus: a peft model merged with its adapter in ``adapter/``, and the processor."""
        output_dir = output_dir if output_dir is not None else self.args.output_dir
        if self.save_merged and state_dict is None and is_peft_model(self.model):
            if self.args.should_save:
                os.makedirs(output_dir, exist_ok=True)
                self.model.save_pretrained(os.path.join(output_dir, ADAPTER_SUBFOLDER))
                save_merged_model(self.model, output_dir)
        else:
            super()._save(output_dir, state_dict)
        if self.args.should_save and self.processor is not None:
            self.processor.save_pretrained(output_dir)

    def _load_adapter(self, folder: str, model: nn.Module, is_trainable: bool) -> bool:
        """Load the adapter saved by :meth:`_save` into a peft ``model``; False when there is none."""
        adapter = os.path.join(folder, ADAPTER_SUBFOLDER)
        if not (is_peft_model(model) and os.path.isfile(os.path.join(adapter, "adapter_config.json"))):
            return False
        model.load_adapter(adapter, model.active_adapters[0], is_trainable=is_trainable)
        return True

    def _load_from_checkpoint(self, resume_from_checkpoint: str, model: nn.Module | None = None) -> None:
        # The merged weights at the top of a LoRA checkpoint are not the peft model's: load its adapter.
        if not self._load_adapter(resume_from_checkpoint, model if model is not None else self.model, True):
            super()._load_from_checkpoint(resume_from_checkpoint, model)

    def _load_best_model(self) -> None:
        if not self._load_adapter(self.state.best_model_checkpoint, self.model, False):
            super()._load_best_model()

    def _length_grouped_sampler(self, dataset, batch_size: int):
        """Batches of similar audio length when the dataset knows its lengths (``SpeechDataset.lengths``)."""
        if self.args.train_sampling_strategy != "group_by_length" or not hasattr(dataset, "lengths"):
            return None
        seed = self.args.data_seed if self.args.data_seed is not None else self.args.seed
        return LengthGroupedSampler(
            batch_size, lengths=dataset.lengths, generator=torch.Generator().manual_seed(seed)
        )

    def _get_train_sampler(self, train_dataset=None):
        dataset = train_dataset if train_dataset is not None else self.train_dataset
        batch = self.args.train_batch_size * self.args.gradient_accumulation_steps
        return self._length_grouped_sampler(dataset, batch) or super()._get_train_sampler(train_dataset)

    def _get_eval_sampler(self, eval_dataset):
        return self._length_grouped_sampler(
            eval_dataset, self.args.eval_batch_size
        ) or super()._get_eval_sampler(eval_dataset)


def _processor_of(collator):
    """A :class:`~granite_nar.GraniteSpeechNarProcessor` of a collator's feature extractor and tokenizer."""
    feature_extractor = getattr(collator, "feature_extractor", None)
    tokenizer = getattr(collator, "tokenizer", None)
    if feature_extractor is None or tokenizer is None:
        return None
    from ..audio.processing_granite_speech_nar import GraniteSpeechNarProcessor

    return GraniteSpeechNarProcessor(feature_extractor, tokenizer)


class WallClockBudget(TrainerCallback):
    """Train for a wall-clock budget instead of a step count, on a machine of unknown (or shared) speed.

    Stops training once ``seconds`` have passed since the first step (with a final evaluation and save),
    requests an evaluation every ``evaluate_every_seconds``, and provides :meth:`lr_lambda`, a linear
    warm-up over ``warmup_steps`` followed by a cosine decay over the *elapsed fraction of the budget*
    down to ``final_lr_ratio``, so the learning rate reaches its floor when time runs out however many
    steps that was. Use it with ``max_steps`` larger than can be reached::

        budget = WallClockBudget(20 * 60, warmup_steps=200)
        optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, budget.lr_lambda)
        trainer = GraniteSpeechNarTrainer(..., optimizers=(optimizer, scheduler), callbacks=[budget])
    """

    def __init__(
        self,
        seconds: float,
        warmup_steps: int = 0,
        final_lr_ratio: float = 0.05,
        evaluate_every_seconds: float | None = None,
    ):
        self.seconds = float(seconds)
        self.warmup_steps = warmup_steps
        self.final_lr_ratio = final_lr_ratio
        self.evaluate_every_seconds = evaluate_every_seconds
        self.start: float | None = None
        self._last_evaluation = 0.0
        self.steps = 0

    def elapsed(self) -> float:
        return 0.0 if self.start is None else time.monotonic() - self.start

    def fraction(self) -> float:
        """Elapsed fraction of the budget, in [0, 1]."""
        return min(1.0, self.elapsed() / self.seconds)

    def lr_lambda(self, step: int) -> float:
        warmup = min(1.0, (step + 1) / self.warmup_steps) if self.warmup_steps else 1.0
        cosine = 0.5 * (1.0 + math.cos(math.pi * self.fraction()))
        return warmup * (self.final_lr_ratio + (1.0 - self.final_lr_ratio) * cosine)

    def on_step_begin(self, args, state, control, **kwargs):
        if self.start is None:
            self.start = time.monotonic()

    def on_step_end(self, args, state, control, **kwargs):
        self.steps = state.global_step
        elapsed = self.elapsed()
        if elapsed >= self.seconds:
            control.should_training_stop = True
            control.should_evaluate = True
        elif self.evaluate_every_seconds and elapsed - self._last_evaluation >= self.evaluate_every_seconds:
            control.should_evaluate = True
        if control.should_evaluate:
            self._last_evaluation = elapsed
        return control
