"""``granite_nar.training.trainer``: ``compute_nar_losses`` (equal to the model's forward without noise, the
character CTC term, fitting one batch), the trainer's logging and checkpointing, and the wall-clock schedule.
The tokenizer comes from ``conftest.py``."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from testers import BLANK, PAD, VOCAB, GraniteSpeechNarForCTCModelTester

from granite_nar.audio.feature_extraction_granite_speech_nar import GraniteSpeechNarFeatureExtractor
from granite_nar.training import (
    DataCollatorForGraniteSpeechNar,
    DraftNoise,
    GraniteSpeechNarTrainer,
    TranscriptionEvaluator,
    WallClockBudget,
    compute_nar_losses,
)

model_tester = GraniteSpeechNarForCTCModelTester()


# -- losses ---------------------------------------------------------------------------------------------------


def test_character_ctc_term():
    model = GraniteSpeechNarForCTCModelTester(encoder_ctc_loss_lambda=0.3).create_model()
    feats, mask = model_tester.prepare_features([40, 27], seed=5)
    labels, lengths = torch.tensor([[3, 4, 5], [6, 7, -100]]), torch.tensor([3, 2])
    chars, char_lengths = torch.tensor([[1, 2, 3, 1], [4, 5, -100, -100]]), torch.tensor([4, 2])
    base = compute_nar_losses(model, feats, mask, labels, lengths)
    with_chars = compute_nar_losses(
        model,
        feats,
        mask,
        labels,
        lengths,
        char_labels=chars,
        char_label_lengths=char_lengths,
        char_ctc_loss_lambda=2.0,
    )
    # The character head's own CTC at the 20 ms frame rate, normalised by all frames; blank = 0.
    enc = model.model.encoder(feats, mask)
    log_probs = enc.char_logits.float().log_softmax(-1)
    manual = sum(
        torch.nn.functional.ctc_loss(
            log_probs[b, :n, None], chars[b : b + 1, :k], [n], [k], blank=0, reduction="sum"
        )
        for b, (n, k) in enumerate([(40, 4), (27, 2)])
    ) / (40 + 27)
    torch.testing.assert_close(with_chars.char_ctc_loss, manual)
    torch.testing.assert_close(with_chars.loss, base.loss + 2.0 * manual)
    with pytest.raises(ValueError, match="char_labels"):
        compute_nar_losses(model, feats, mask, labels, lengths, char_ctc_loss_lambda=1.0)


def test_losses_without_noise_equal_the_model_forward():
    model = GraniteSpeechNarForCTCModelTester(ce_loss_lambda=0.5, encoder_ctc_loss_lambda=0.3).create_model()
    feats, mask = model_tester.prepare_features([40, 27], seed=3)
    labels, lengths = torch.tensor([[3, 4, 5], [6, 7, -100]]), torch.tensor([3, 2])
    ref = model(feats, mask, labels=labels, label_lengths=lengths)
    ours = compute_nar_losses(model, feats, mask, labels, lengths)
    for name in ("loss", "ctc_loss", "ce_loss", "encoder_ctc_loss"):
        torch.testing.assert_close(getattr(ours, name), getattr(ref, name), rtol=0, atol=0)
    # Encoder-only training skips the editor.
    enc = compute_nar_losses(model, feats, mask, labels, lengths, edit_loss_weight=0.0)
    assert enc.ctc_loss is None and enc.ce_loss is None
    torch.testing.assert_close(enc.loss, 0.3 * ref.encoder_ctc_loss)


def test_overfitting_one_batch_learns_the_targets():
    # Standard parameterisation (the Granite multipliers are tuned for a 2048-wide editor, and slow a
    # 24-wide one down), no dropout: a few dozen steps fit two utterances.
    text = dict(
        embedding_multiplier=1.0, logits_scaling=1.0, residual_multiplier=1.0, attention_multiplier=6**-0.5
    )
    model = (
        GraniteSpeechNarForCTCModelTester(encoder_ctc_loss_lambda=1.0, text_kwargs=text)
        .create_model(seed=0)
        .train()
    )
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
    feats, mask = model_tester.prepare_features([48, 36], seed=4)
    labels, lengths = torch.tensor([[3, 9, 4, 12], [21, 5, 8, -100]]), torch.tensor([4, 3])
    optimizer = torch.optim.Adam(model.parameters(), lr=5e-3)
    history = []
    for _ in range(150):
        losses = compute_nar_losses(model, feats, mask, labels, lengths)
        optimizer.zero_grad()
        losses.loss.backward()
        optimizer.step()
        history.append(losses.ctc_loss.item())
    assert history[-1] < 0.05 * history[0]
    out = model.eval().generate(feats, mask, num_editing_steps=2, return_dict_in_generate=True)
    assert [s.tolist() for s in out.draft_ids] == [[3, 9, 4, 12], [21, 5, 8]]
    assert [s.tolist() for s in out.sequences] == [[3, 9, 4, 12], [21, 5, 8]]


# -- trainer --------------------------------------------------------------------------------------------------


def test_trainer_logs_components_and_keeps_the_best_checkpoint(tmp_path, tokenizer):
    from transformers import TrainingArguments

    texts = ["a cat", "the dog", "a red bird", "my cat"]
    rng = np.random.default_rng(0)
    items = [{"audio": rng.standard_normal(16000).astype(np.float32) * 0.1, "text": t} for t in texts]
    collator = DataCollatorForGraniteSpeechNar(GraniteSpeechNarFeatureExtractor(), tokenizer)
    model = GraniteSpeechNarForCTCModelTester(ce_loss_lambda=0.1, encoder_ctc_loss_lambda=0.5).create_model()
    records = []
    args = TrainingArguments(
        output_dir=str(tmp_path),
        per_device_train_batch_size=2,
        max_steps=4,
        logging_steps=2,
        eval_strategy="steps",
        eval_steps=2,
        save_strategy="best",
        save_total_limit=1,
        save_only_model=True,
        metric_for_best_model="edit1_cer",
        greater_is_better=False,
        remove_unused_columns=False,
        use_cpu=True,
        report_to=[],
        disable_tqdm=True,
    )
    trainer = GraniteSpeechNarTrainer(
        model=model,
        args=args,
        train_dataset=items,
        eval_dataset=items[:2],
        data_collator=collator,
        draft_noise=DraftNoise(0.1, 0.1, 0.1, vocab_size=VOCAB, excluded_ids=[PAD, BLANK]),
        transcription_evaluator=TranscriptionEvaluator(items[:2], collator, tokenizer, num_editing_steps=2),
        log_fn=records.append,
    )
    trainer.train()
    train_logs = [r for r in records if "loss" in r]
    assert train_logs and all({"ctc_loss", "ce_loss", "encoder_ctc_loss"} <= set(r) for r in train_logs)
    r = train_logs[0]
    assert r["loss"] == pytest.approx(
        r["ctc_loss"] + 0.1 * r["ce_loss"] + 0.5 * r["encoder_ctc_loss"], rel=1e-4
    )
    evals = [r for r in records if "eval_edit1_cer" in r]
    assert len(evals) == 2 and all({"eval_draft_cer", "eval_edit2_wer", "eval_rtfx"} <= set(r) for r in evals)
    (checkpoint,) = tmp_path.glob("checkpoint-*")
    # The processor (built from the collator's feature extractor and tokenizer) is saved with the weights, so
    # the checkpoint is a complete model folder.
    from granite_nar import GraniteSpeechNarForCTC, GraniteSpeechNarProcessor

    GraniteSpeechNarForCTC.from_pretrained(checkpoint)
    processor = GraniteSpeechNarProcessor.from_pretrained(checkpoint)
    assert processor.tokenizer("a cat")["input_ids"] == tokenizer("a cat")["input_ids"]


def test_wall_clock_schedule():
    budget = WallClockBudget(100.0, warmup_steps=10, final_lr_ratio=0.1)
    assert budget.lr_lambda(0) == pytest.approx(0.1)  # warm-up, before the clock starts
    budget.start = __import__("time").monotonic() - 50.0  # half-way through the budget
    assert budget.lr_lambda(20) == pytest.approx(0.1 + 0.9 * 0.5, abs=0.02)
    budget.start -= 60.0
    assert budget.fraction() == 1.0 and budget.lr_lambda(1000) == pytest.approx(0.1)
    assert math.isclose(WallClockBudget(10.0).lr_lambda(0), 1.0)
