"""``granite_nar.model.ctc``: greedy collapse and insertion slots against the slow references in
``granite_nar.testing.reference``, and the three training losses (docs/reference_behaviour.md §5): hand-computed values, and where
their gradients go."""

import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from testers import BLANK, GraniteSpeechNarForCTCModelTester

from granite_nar.model.ctc import (
    copy_loss,
    ctc_collapse,
    ctc_collapse_with_scores,
    ctc_loss_from_flat_logits,
    insert_slots,
    vocabulary_argmax,
)
from granite_nar.testing.reference import reference_ctc_collapse, reference_insert_slots

model_tester = GraniteSpeechNarForCTCModelTester()

# -- greedy collapse and insertion slots ---------------------------------------------------------------------

ids_lists = st.lists(st.lists(st.integers(0, 4), max_size=30), min_size=1, max_size=6)


@settings(max_examples=200, deadline=None)
@given(ids_lists)
def test_ctc_collapse_matches_reference(batch):
    flat = torch.tensor([i for ids in batch for i in ids], dtype=torch.long)
    fast = ctc_collapse(flat, [len(ids) for ids in batch], blank=4)
    assert [f.tolist() for f in fast] == [reference_ctc_collapse(ids, blank=4) for ids in batch]


@settings(max_examples=200, deadline=None)
@given(ids_lists)
def test_collapse_with_scores_keeps_each_tokens_best_frame_score(batch):
    flat = torch.tensor([i for ids in batch for i in ids], dtype=torch.long)
    scores = torch.rand(flat.numel(), generator=torch.Generator().manual_seed(len(flat)))
    tokens, token_scores = ctc_collapse_with_scores(flat, scores, [len(ids) for ids in batch], blank=4)
    offset = 0
    for ids, got_tokens, got_scores in zip(batch, tokens, token_scores, strict=True):
        expected_tokens, expected_scores = [], []
        for position, token in enumerate(ids):  # readable: one run at a time
            if position == 0 or token != ids[position - 1]:
                run_scores = []
                if token != 4:
                    expected_tokens.append(token)
                    expected_scores.append(run_scores)
            run_scores.append(float(scores[offset + position]))
        offset += len(ids)
        assert got_tokens.tolist() == expected_tokens == reference_ctc_collapse(ids, blank=4)
        assert got_scores.tolist() == pytest.approx([max(r) for r in expected_scores])


def test_ctc_collapse_merges_repeats_before_dropping_blanks():
    assert ctc_collapse(torch.tensor([1, 1, 0, 1, 2, 2, 0]), [7], blank=0)[0].tolist() == [1, 1, 2]
    # Utterance boundaries break runs: the second utterance's leading 3 is kept.
    assert [x.tolist() for x in ctc_collapse(torch.tensor([3, 3, 3]), [2, 1], blank=0)] == [[3], [3]]


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(0, 9), max_size=12), st.integers(1, 20))
def test_insert_slots_matches_reference(tokens, minimum):
    fast = insert_slots(torch.tensor(tokens, dtype=torch.long), blank=10, min_length=minimum)
    assert fast.tolist() == reference_insert_slots(tokens, blank=10, min_length=minimum)
    assert reference_ctc_collapse(fast.tolist(), blank=10) == tokens  # slots collapse back to the draft


# -- losses ---------------------------------------------------------------------------------------------------

LENGTHS = [40, 27]


def test_ctc_loss_matches_the_direct_formula_on_two_slots():
    # Two slots, target "a": the alignments are (a, a), (a, _), (_, a).
    torch.manual_seed(0)
    logits = torch.randn(2, 5)
    a, blank = 2, 4
    p = logits.softmax(-1)
    likelihood = p[0, a] * p[1, a] + p[0, a] * p[1, blank] + p[0, blank] * p[1, a]
    expected = -math.log(likelihood) / 2  # summed over the batch, divided by the 2 slot positions
    loss = ctc_loss_from_flat_logits(logits, [2], torch.tensor([[a]]), torch.tensor([1]), blank)
    assert loss.item() == pytest.approx(expected, rel=1e-5)
    # Target "a a" needs a blank between the repeats: infeasible in 2 slots -> 0 (zero_infinity).
    infeasible = ctc_loss_from_flat_logits(logits, [2], torch.tensor([[a, a]]), torch.tensor([2]), blank)
    assert infeasible.item() == 0.0


def test_ctc_loss_is_normalised_by_all_slot_positions():
    torch.manual_seed(1)
    logits = torch.randn(7, 6)
    labels = torch.tensor([[1, 2, 0], [3, 0, 0]])
    lengths = torch.tensor([2, 1])
    loss = ctc_loss_from_flat_logits(logits, [4, 3], labels, lengths, blank=5)
    per_utt = [
        F.ctc_loss(x.log_softmax(-1)[:, None], y[None, :n], [x.shape[0]], [n], blank=5, reduction="sum")
        for x, y, n in zip(logits.split([4, 3]), labels, lengths.tolist(), strict=True)
    ]
    assert loss.item() == pytest.approx(sum(per_utt).item() / 7, rel=1e-5)


def test_copy_loss_is_plain_cross_entropy():
    torch.manual_seed(2)
    logits = torch.randn(9, 6)
    slots = torch.tensor([5, 1, 5, 2, 5, 5, 3, 5, 5])
    manual = -sum(logits[i].log_softmax(-1)[slots[i]] for i in range(9)) / 9
    assert copy_loss(logits, slots).item() == pytest.approx(manual.item(), rel=1e-6)


def _labels():
    return torch.tensor([[3, 4, 5, -100], [6, 7, -100, -100]]), torch.tensor([3, 2])


def test_total_loss_combines_the_components():
    model = GraniteSpeechNarForCTCModelTester(ce_loss_lambda=0.5, encoder_ctc_loss_lambda=0.3).create_model(
        seed=0
    )
    feats, mask = model_tester.prepare_features(LENGTHS, seed=3)
    labels, lengths = _labels()
    out = model(feats, mask, labels=labels, label_lengths=lengths)
    assert all(torch.isfinite(x) and x > 0 for x in (out.ctc_loss, out.ce_loss, out.encoder_ctc_loss))
    assert out.loss.item() == pytest.approx(
        (out.ctc_loss + 0.5 * out.ce_loss + 0.3 * out.encoder_ctc_loss).item(), rel=1e-6
    )
    # The components equal the stand-alone formulas on the returned tensors.
    seq = out.seq_lengths.tolist()
    assert out.ctc_loss.item() == pytest.approx(
        ctc_loss_from_flat_logits(out.logits[0], seq, labels.clamp_min(0), lengths, BLANK).item(), rel=1e-6
    )
    assert out.ce_loss.item() == pytest.approx(
        copy_loss(out.logits[0], out.inserted_ctc_token_ids).item(), rel=1e-6
    )
    # -100 padding is understood without label_lengths.
    assert model(feats, mask, labels=labels).loss.item() == pytest.approx(out.loss.item(), rel=1e-6)


def test_no_loss_without_labels_and_no_encoder_logits_kept():
    model = model_tester.create_model(seed=0)
    feats, mask = model_tester.prepare_features(LENGTHS, seed=4)
    out = model(feats, mask)
    assert out.loss is None and out.bpe_logits is None


def _grads(model, **loss_weights):
    for key, value in loss_weights.items():
        setattr(model.config, key, value)
    model.train()
    model.zero_grad()
    feats, mask = model_tester.prepare_features(LENGTHS, seed=5)
    labels, lengths = _labels()
    model(feats, mask, labels=labels, label_lengths=lengths).loss.backward()
    return {n: p.grad for n, p in model.named_parameters()}


def _has(grads, prefix):
    return any(g is not None and g.abs().sum() > 0 for n, g in grads.items() if n.startswith(prefix))


def test_editing_loss_trains_editor_projector_encoder_but_not_the_bpe_head():
    grads = _grads(model_tester.create_model(seed=0))
    for prefix in (
        "model.language_model.layers",
        "model.projector",
        "model.encoder.layers",
        "model.encoder.out_mid",
    ):
        assert _has(grads, prefix), prefix
    assert grads["model.language_model.embed_tokens.weight"] is not None  # tied head + slot embeddings
    assert not _has(grads, "model.out_bpe")  # the draft is an argmax: no gradient path


def test_encoder_ctc_loss_alone_reaches_only_the_encoder_side():
    model = model_tester.create_model(seed=0)
    model.train()
    feats, mask = model_tester.prepare_features(LENGTHS, seed=6)
    labels, lengths = _labels()
    out = model(feats, mask, labels=labels, label_lengths=lengths, output_bpe_logits=True)
    loss = ctc_loss_from_flat_logits(
        out.bpe_logits, out.bpe_lengths.tolist(), labels.clamp_min(0), lengths, BLANK
    )
    loss.backward()
    grads = {n: p.grad for n, p in model.named_parameters()}
    assert _has(grads, "model.out_bpe") and _has(grads, "model.encoder.layers")
    assert not _has(grads, "model.projector") and not _has(grads, "model.language_model")


def test_bad_labels_are_rejected():
    model = model_tester.create_model(seed=0)
    feats, mask = model_tester.prepare_features(LENGTHS, seed=7)
    with pytest.raises(ValueError, match="must not contain the blank"):
        model(feats, mask, labels=torch.tensor([[BLANK], [1]]), label_lengths=torch.tensor([1, 1]))
    with pytest.raises(ValueError, match="labels must be"):
        model(feats, mask, labels=torch.tensor([[1, 2]]))
    with pytest.raises(ValueError, match="label_lengths must be"):
        model(feats, mask, labels=torch.tensor([[1], [2]]), label_lengths=torch.tensor([2, 1]))


def test_gradient_checkpointing_gives_the_same_gradients():
    model = model_tester.create_model(seed=0)
    plain = _grads(model)
    model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
    assert all(layer.gradient_checkpointing for layer in model.model.encoder.layers)
    checkpointed = _grads(model)
    assert plain.keys() == checkpointed.keys()
    for name, grad in plain.items():
        if grad is not None:
            torch.testing.assert_close(checkpointed[name], grad, atol=1e-6, rtol=1e-5, msg=name)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float32])
def test_vocabulary_argmax_is_argmax_with_ties_and_nan(dtype):
    g = torch.Generator().manual_seed(0)
    logits = torch.randint(0, 7, (64, 1000), generator=g).to(dtype)  # every row has many tied maxima
    logits[5, 17] = float("nan")
    logits[6] = float("-inf")
    ids = vocabulary_argmax(logits)
    assert torch.equal(ids, logits.argmax(-1))
    assert ids[5] == 17 and ids[6] == 0
    first_max = (logits[:4] == logits[:4].max(-1, keepdim=True).values).int().argmax(-1)
    assert torch.equal(ids[:4], first_max)
