"""``granite_nar.training.noise``: draft noise operations, and drafts sampled from the encoder posterior."""

from __future__ import annotations

import pytest
import torch
from testers import BLANK, PAD, VOCAB, GraniteSpeechNarForCTCModelTester

from granite_nar.training import DraftNoise, compute_nar_losses

model_tester = GraniteSpeechNarForCTCModelTester()


def test_draft_noise_operations():
    tokens = torch.arange(1, 41)
    excluded = [0, PAD, BLANK]
    assert torch.equal(DraftNoise(vocab_size=VOCAB).corrupt(tokens), tokens)
    sub = DraftNoise(substitution_prob=1.0, vocab_size=VOCAB, excluded_ids=excluded).corrupt(tokens)
    assert sub.shape == tokens.shape and not set(sub.tolist()) & set(excluded)
    assert DraftNoise(deletion_prob=1.0, vocab_size=VOCAB).corrupt(tokens).numel() == 0
    ins = DraftNoise(insertion_prob=1.0, vocab_size=VOCAB, excluded_ids=excluded).corrupt(tokens)
    assert ins.numel() == 81 and torch.equal(ins[1::2], tokens)
    # Same seed, same noise; the reference replaces the draft with reference_prob=1.
    a = DraftNoise(0.2, 0.2, 0.2, vocab_size=VOCAB, seed=3)([tokens])
    b = DraftNoise(0.2, 0.2, 0.2, vocab_size=VOCAB, seed=3)([tokens])
    assert torch.equal(a[0], b[0]) and not torch.equal(a[0], tokens)
    labels = torch.tensor([[7, 8, 9, -100]])
    out = DraftNoise(reference_prob=1.0, vocab_size=VOCAB)([torch.tensor([1, 2])], labels, torch.tensor([3]))
    assert out[0].tolist() == [7, 8, 9]
    with pytest.raises(ValueError):
        DraftNoise(substitution_prob=0.7, deletion_prob=0.5)


def test_sampled_drafts_follow_the_encoder_posterior():
    # Windows: [a, a, _ | b or _ (50/50), _, c]; a and c are certain, b is a coin flip.
    logits = torch.full((6, 5), -30.0)
    logits[[0, 1], 2] = logits[2, 4] = logits[[4], 4] = logits[5, 1] = 0.0
    logits[3, 3] = logits[3, 4] = 0.0
    seen = set()
    noise = DraftNoise(sampling_temperature=1.0, seed=0)
    for _ in range(40):
        first, second = noise.sample_drafts(logits, [3, 3], blank=4)
        assert first.tolist() == [2]
        seen.add(tuple(second.tolist()))
    assert seen == {(1,), (3, 1)}
    # In training, sampled drafts replace the greedy ones before editing.
    model = GraniteSpeechNarForCTCModelTester(encoder_ctc_loss_lambda=0.0).create_model().train()
    feats, mask = model_tester.prepare_features([40, 27], seed=6)
    labels, lengths = torch.tensor([[3, 4, 5], [6, 7, -100]]), torch.tensor([3, 2])
    greedy = compute_nar_losses(model.eval(), feats, mask, labels, lengths)
    sampled = compute_nar_losses(
        model.eval(), feats, mask, labels, lengths, draft_noise=DraftNoise(sampling_temperature=3.0, seed=1)
    )
    assert sampled.encoder_ctc_loss is None and not torch.equal(sampled.ctc_loss, greedy.ctc_loss)
