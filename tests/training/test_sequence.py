"""``granite_nar.training.sequence``: sampled paths collapse into valid hypotheses with the model's own
collapse; path log-probabilities; the estimator's gradient matches the exact gradient of the expected risk
(enumerated on a small case); a group whose samples are all equally good gives no gradient at all; the
trainer runs the stage; self-correction drafts are the model's own edit-1 output."""

from __future__ import annotations

import functools
import itertools
from pathlib import Path

import numpy as np
import pytest
import torch
from testers import BLANK, VOCAB

from granite_nar.model.ctc import ctc_collapse, ctc_loss_from_flat_logits
from granite_nar.training import DraftNoise, compute_nar_losses, word_error_rate
from granite_nar.training.sequence import (
    SequenceObjective,
    collapse_paths,
    compute_sequence_losses,
    group_advantages,
    hypothesis_risks,
    path_log_probs,
    policy_loss,
    sample_ctc_paths,
)

REPO = Path(__file__).resolve().parents[2]
TINY = REPO / "examples" / "models" / "tiny-synth"
FIXTURES = REPO / "tests" / "fixtures" / "tiny_synth"
BLANK_TINY = 319  # the tiny-synth model's blank (end of text)


def _ids_to_text(batch: list[list[int]]) -> list[str]:
    return [" ".join(f"w{i}" for i in ids) for ids in batch]


# -- sampling -------------------------------------------------------------------------------------------------


def test_collapsed_samples_are_valid_hypotheses():
    torch.manual_seed(0)
    lengths = [7, 1, 12]
    logits = torch.randn(sum(lengths), VOCAB) * 3
    logits[:, BLANK] += 2.0  # blanks frequent, as in real slot posteriors
    paths = sample_ctc_paths(logits, 16, generator=torch.Generator().manual_seed(1))
    assert paths.shape == (16, sum(lengths)) and int(paths.min()) >= 0 and int(paths.max()) < VOCAB
    hypotheses = collapse_paths(paths, lengths, BLANK)
    for g, group in enumerate(hypotheses):
        segments = paths[g].split(lengths)
        for b, hyp in enumerate(group):
            path = segments[b].tolist()
            # A hypothesis is its own path with repeats merged, then blanks dropped: never a blank, never
            # longer than its path, and no two equal neighbours unless a blank separated them.
            expected = [t for k, t in enumerate(path) if t != BLANK and (k == 0 or path[k - 1] != t)]
            assert hyp.tolist() == expected
            assert BLANK not in hyp.tolist() and hyp.numel() <= lengths[b]
    # Different samples differ (the posterior is spread), and a near-zero temperature gives the greedy path.
    assert len({tuple(p.tolist()) for p in paths}) > 1
    cold = sample_ctc_paths(logits, 4, temperature=1e-4, generator=torch.Generator().manual_seed(2))
    assert all(torch.equal(p, logits.argmax(-1)) for p in cold)


def test_samples_follow_the_tempered_posterior():
    logits = torch.tensor([[2.0, 0.0, -1.0, 1.0]])
    for temperature in (1.0, 2.0):
        paths = sample_ctc_paths(logits, 40000, temperature, torch.Generator().manual_seed(3))
        freq = torch.bincount(paths[:, 0], minlength=4).float() / paths.shape[0]
        torch.testing.assert_close(freq, torch.softmax(logits[0] / temperature, -1), atol=0.01, rtol=0)


def test_path_log_probs_sum_each_utterance_positions():
    torch.manual_seed(4)
    lengths = [3, 2]
    logits = torch.randn(5, 6)
    paths = torch.tensor([[0, 1, 2, 3, 4], [5, 5, 5, 0, 0]])
    log_probs = path_log_probs(logits, paths, lengths, temperature=2.0)
    table = torch.log_softmax(logits / 2.0, -1)
    for g in range(2):
        picked = [table[k, paths[g, k]] for k in range(5)]
        torch.testing.assert_close(log_probs[g], torch.stack([sum(picked[:3]), sum(picked[3:])]))


# -- the estimator --------------------------------------------------------------------------------------------


def test_estimator_matches_the_exact_expected_risk_gradient():
    """Three slots over {w0, w1, blank}: the expected WER of the collapsed hypothesis, enumerated over all
    27 paths, against the sampled minimum-risk estimator of its gradient."""
    blank, reference = 2, "w0 w1"
    logits = torch.tensor([[1.0, -0.5, 0.3], [0.2, 0.4, -0.3], [-1.0, 1.2, 0.5]], requires_grad=True)

    def risk(path) -> float:
        (hyp,) = ctc_collapse(torch.tensor(path), [3], blank)
        return word_error_rate(reference, _ids_to_text([hyp.tolist()])[0]).rate

    probs = torch.softmax(logits, -1)
    expected = sum(
        probs[0, a] * probs[1, b] * probs[2, c] * risk((a, b, c))
        for a, b, c in itertools.product(range(3), repeat=3)
    )
    (exact,) = torch.autograd.grad(expected, logits)

    group = 40000
    paths = sample_ctc_paths(logits, group, generator=torch.Generator().manual_seed(5))
    hyps = [_ids_to_text([h.tolist() for h in g]) for g in collapse_paths(paths, [3], blank)]
    risks = hypothesis_risks([reference], hyps, functools.cache(lambda r, h: word_error_rate(r, h).rate))
    loss = policy_loss(path_log_probs(logits, paths, [3]), group_advantages(risks, "mwer"), 1)
    (estimate,) = torch.autograd.grad(loss, logits)
    # The group-mean baseline scales the gradient by (1 - 1/G); sampling noise is about 0.002 here.
    torch.testing.assert_close(estimate, exact * (1 - 1 / group), atol=0.006, rtol=0)
    assert float(exact.abs().max()) > 0.08  # the case is not flat: the tolerance is well below the gradient


def test_group_advantages():
    risks = torch.tensor([[0.0, 0.5, 1.0], [1.0, 0.5, 1.0], [0.5, 0.5, 1.0]])  # (G=3, B=3)
    mwer = group_advantages(risks, "mwer")
    torch.testing.assert_close(mwer[:, 0], torch.tensor([0.5, -0.5, 0.0]))
    torch.testing.assert_close(mwer[:, 1:], torch.zeros(3, 2))
    group = group_advantages(risks, "group")
    std = float(np.std([0.0, 1.0, 0.5]))
    torch.testing.assert_close(group[:, 0], torch.tensor([0.5, -0.5, 0.0]) / std)
    assert torch.equal(group[:, 1:], torch.zeros(3, 2))  # equal risks: exactly zero, no division by 0
    with pytest.raises(ValueError, match="advantage"):
        group_advantages(risks, "ppo")


def test_equally_good_samples_give_no_gradient():
    logits = torch.randn(6, VOCAB, requires_grad=True)
    paths = sample_ctc_paths(logits, 5, generator=torch.Generator().manual_seed(6))
    risks = torch.full((5, 2), 0.25)
    for advantage in ("group", "mwer"):
        loss = policy_loss(path_log_probs(logits, paths, [4, 2]), group_advantages(risks, advantage), 6)
        (grad,) = torch.autograd.grad(loss, logits)
        assert torch.equal(grad, torch.zeros_like(grad))


def test_objective_settings_are_checked():
    for bad, match in (
        (dict(group_size=1), "group_size"),
        (dict(temperature=0.0), "temperature"),
        (dict(risk="bleu"), "risk"),
        (dict(advantage="x"), "advantage"),
        (dict(anchor_weight=-1.0), "anchor_weight"),
    ):
        with pytest.raises(ValueError, match=match):
            SequenceObjective(**bad)


# -- on a model -----------------------------------------------------------------------------------------------


def _tiny_batch(count: int = 3):
    from granite_nar import GraniteSpeechNarForCTC, GraniteSpeechNarProcessor
    from granite_nar.training import DataCollatorForGraniteSpeechNar, load_waveform, read_manifest

    model = GraniteSpeechNarForCTC.from_pretrained(TINY, dtype=torch.float32)
    processor = GraniteSpeechNarProcessor.from_pretrained(TINY)
    rows, _ = read_manifest(FIXTURES / "manifest.jsonl")
    items = [{"audio": load_waveform(row.audio_path), "text": row.text} for row in rows[:count]]
    collator = DataCollatorForGraniteSpeechNar.from_processor(
        processor, blank_token_id=model.config.blank_token_id
    )
    return model, processor, collator(items), [item["text"] for item in items]


def _decode(processor):
    return lambda ids: processor.tokenizer.batch_decode(ids, skip_special_tokens=True)


def test_sequence_losses_on_the_tiny_model():
    model, processor, batch, texts = _tiny_batch()
    model.eval()  # no dropout: the anchor is then the model's own editing CTC loss
    objective = SequenceObjective(group_size=4, temperature=1.0, anchor_weight=0.5, seed=0)
    losses = compute_sequence_losses(
        model,
        batch["input_features"],
        batch["input_features_mask"],
        batch["labels"],
        batch["label_lengths"],
        objective,
        _decode(processor),
        encoder_ctc_loss_lambda=0.0,
    )
    reference = model(
        batch["input_features"],
        batch["input_features_mask"],
        labels=batch["labels"],
        label_lengths=batch["label_lengths"],
    )
    torch.testing.assert_close(losses.anchor.ctc_loss, reference.ctc_loss)
    torch.testing.assert_close(losses.loss, losses.policy_loss + 0.5 * reference.ctc_loss)
    # The greedy risk is the edit-1 WER of these utterances, as transcription reports it.
    edits = model.generate(batch["input_features"], batch["input_features_mask"], num_editing_steps=1)
    hyps = processor.tokenizer.batch_decode([e.tolist() for e in edits], skip_special_tokens=True)
    per_utt = [word_error_rate(r, h).rate for r, h in zip(texts, hyps, strict=True)]
    assert losses.greedy_risk == pytest.approx(sum(per_utt) / len(per_utt))
    assert 0.0 <= losses.greedy_risk <= losses.sample_risk  # sampling at T=1 errs more than greedy
    losses.loss.backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.model.language_model.parameters())


def test_cold_sampling_gives_zero_policy_gradient_on_the_model():
    """At a near-zero temperature every sample is the greedy path: equal risks, zero advantage, and (with no
    anchor) not a single non-zero gradient anywhere in the model."""
    model, processor, batch, _ = _tiny_batch()
    model.eval()
    objective = SequenceObjective(group_size=4, temperature=1e-4, anchor_weight=0.0, seed=0)
    losses = compute_sequence_losses(
        model,
        batch["input_features"],
        batch["input_features_mask"],
        batch["labels"],
        batch["label_lengths"],
        objective,
        _decode(processor),
        encoder_ctc_loss_lambda=0.0,
    )
    assert losses.sample_risk == pytest.approx(losses.greedy_risk)
    losses.loss.backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and all(torch.equal(g, torch.zeros_like(g)) for g in grads)


def test_self_correction_drafts_are_the_models_edit1_output():
    model, _, batch, _ = _tiny_batch()
    model.eval()
    seen = []
    inner_forward = model.model.forward

    def spy(*args, **kwargs):
        seen.append([t.tolist() for t in kwargs["input_ids"]])
        return inner_forward(*args, **kwargs)

    model.model.forward = spy
    noise = DraftNoise(self_correction_prob=1.0, seed=0)
    args = (batch["input_features"], batch["input_features_mask"], batch["labels"], batch["label_lengths"])
    losses = compute_nar_losses(model, *args, draft_noise=noise)
    model.model.forward = inner_forward
    edits = model.generate(batch["input_features"], batch["input_features_mask"], num_editing_steps=1)
    assert seen == [[e.tolist() for e in edits]]
    # The loss is the editing CTC loss of a second step: the editor run on those edits.
    audio = model.model.encode_audio(batch["input_features"], batch["input_features_mask"])
    edited = model.model(
        audio_embeds=audio.audio_embeds, audio_lengths=audio.audio_lengths, input_ids=edits, return_dict=True
    )
    expected = ctc_loss_from_flat_logits(
        model.slot_logits(edited.last_hidden_state)[0],
        edited.seq_lengths.tolist(),
        batch["labels"].clamp_min(0),
        batch["label_lengths"],
        BLANK_TINY,
    )
    torch.testing.assert_close(losses.ctc_loss, expected)
    # The editor's mode is restored after the edit-1 pass.
    model.train()
    compute_nar_losses(model, *args, draft_noise=DraftNoise(self_correction_prob=1.0))
    assert model.model.language_model.training
    with pytest.raises(ValueError, match="self_correction_prob"):
        DraftNoise(self_correction_prob=1.5)


def test_trainer_runs_the_sequence_stage_and_saves_a_loadable_checkpoint(tmp_path):
    from transformers import TrainingArguments

    from granite_nar import GraniteSpeechNarForCTC
    from granite_nar.training import GraniteSpeechNarTrainer, load_waveform, read_manifest

    model, processor, _, _ = _tiny_batch()
    rows, _ = read_manifest(FIXTURES / "manifest.jsonl")
    items = [{"audio": load_waveform(row.audio_path), "text": row.text} for row in rows]
    from granite_nar.training import DataCollatorForGraniteSpeechNar

    collator = DataCollatorForGraniteSpeechNar.from_processor(
        processor, blank_token_id=model.config.blank_token_id
    )
    before = {k: v.clone() for k, v in model.state_dict().items()}
    records = []
    args = TrainingArguments(
        output_dir=str(tmp_path),
        per_device_train_batch_size=2,
        max_steps=2,
        logging_steps=1,
        learning_rate=1e-3,
        save_strategy="steps",
        save_steps=2,
        remove_unused_columns=False,
        use_cpu=True,
        report_to=[],
        disable_tqdm=True,
    )
    trainer = GraniteSpeechNarTrainer(
        model=model,
        args=args,
        train_dataset=items,
        data_collator=collator,
        processor=processor,
        sequence_objective=SequenceObjective(group_size=3, anchor_weight=0.3),
        log_fn=records.append,
    )
    trainer.train()
    logs = [r for r in records if "loss" in r]
    assert logs and all({"policy_loss", "sample_risk", "greedy_risk", "ctc_loss"} <= set(r) for r in logs)
    loaded = GraniteSpeechNarForCTC.from_pretrained(tmp_path / "checkpoint-2")
    changed = [k for k, v in loaded.state_dict().items() if not torch.equal(v, before[k])]
    assert changed
    torch.testing.assert_close(loaded.state_dict(), trainer.model.state_dict())
