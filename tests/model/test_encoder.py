"""``granite_nar.model.modeling_encoder``: self-conditioning, layer export, masking, and the fast paths
(posterior-weighted pooling, block attention) against the slow references in ``granite_nar.testing.reference``."""

import pytest
import torch
from testers import GraniteSpeechNarEncoderModelTester

from granite_nar.testing.reference import reference_block_attention, reference_pool


def test_model():
    tester = GraniteSpeechNarEncoderModelTester()
    tester.create_and_check_model(*tester.prepare_config_and_inputs())


def test_hidden_states_and_export_after_self_conditioning():
    tester = GraniteSpeechNarEncoderModelTester(
        num_layers=3, cat_hidden_layers=[1, 2], self_conditioning_layer=2
    )
    enc = tester.create_model(seed=0)
    feats, mask = tester.prepare_features([30], seed=0)
    captured = {}
    enc.layers[1].register_forward_hook(lambda m, i, o: captured.__setitem__("block2", o))
    out = enc(feats, mask, output_hidden_states=True)
    assert len(out.hidden_states) == 3 + 1
    width = enc.config.hidden_dim
    exported_2 = out.projector_input[..., width : 2 * width]
    # The block-2 export carries the self-conditioning residual (released model, docs/reference_behaviour.md §3.1.5)...
    assert torch.equal(exported_2, out.hidden_states[2])
    assert not torch.allclose(exported_2, captured["block2"])
    torch.testing.assert_close(exported_2 - captured["block2"], enc.out_mid(out.char_logits.softmax(-1)))
    # ... and the newest port's behaviour is one config switch away.
    enc.config.export_after_self_conditioning = False
    before = enc(feats, mask).projector_input[..., width : 2 * width]
    assert torch.equal(before, captured["block2"])
    enc.config.export_after_self_conditioning = True


def test_masked_frames_do_not_influence_valid_frames():
    tester = GraniteSpeechNarEncoderModelTester()
    enc = tester.create_model(seed=1)
    feats, mask = tester.prepare_features([21, 21], seed=1)
    feats[1, :14] = feats[0, :14]
    mask[1, 14:] = False  # second row: the same first 14 frames, then 7 masked frames of other content
    out = enc(feats, mask)
    alone = enc(feats[:1, :14])
    torch.testing.assert_close(
        out.last_hidden_state[1, :14], alone.last_hidden_state[0], atol=1e-5, rtol=1e-5
    )
    torch.testing.assert_close(out.projector_input[1, :14], alone.projector_input[0], atol=1e-5, rtol=1e-5)
    assert out.pooled_lengths.tolist() == [6, 4]


def test_pooling_matches_reference():
    tester = GraniteSpeechNarEncoderModelTester()
    enc = tester.create_model(seed=3).double()
    feats, mask = tester.prepare_features([23, 9, 16], seed=1)
    out = enc(feats.double(), mask)
    blank = enc.out(_layer_output(enc, feats.double(), mask)).softmax(-1)[..., 0]
    for b, n in enumerate(mask.sum(1).tolist()):
        ref = reference_pool(out.last_hidden_state[b, :n], blank[b, :n], window=4)
        torch.testing.assert_close(out.pooled_hidden_states[b, : ref.shape[0]], ref, atol=1e-10, rtol=0)
        assert out.pooled_lengths[b] == ref.shape[0]


def _layer_output(enc, feats, mask):
    """Hidden state entering the self-conditioning head (layer 1 in the tiny config)."""
    hidden = enc.input_linear(feats)
    return enc.layers[0](hidden, enc.attention_dists, mask, mask)


def test_block_attention_matches_reference():
    tester = GraniteSpeechNarEncoderModelTester()
    encoder = tester.create_model(seed=5).double()
    attn = encoder.layers[0].attn
    cfg = encoder.config
    feats, mask = tester.prepare_features([37, 20], seed=3)
    hidden = torch.randn(2, 37, cfg.hidden_dim, dtype=torch.float64)
    fast = attn(hidden, encoder.attention_dists, mask)
    for b, n in enumerate(mask.sum(1).tolist()):
        h = attn.pre_norm(hidden[b, :n])
        q = attn.to_q(h).view(n, cfg.num_heads, -1).transpose(0, 1)
        k, v = (x.view(n, cfg.num_heads, -1).transpose(0, 1) for x in attn.to_kv(h).chunk(2, dim=-1))
        ref = reference_block_attention(q, k, v, attn.rel_pos_emb.weight, cfg.context_size, cfg.max_pos_emb)
        ref = attn.to_out(ref.transpose(0, 1).reshape(n, -1))
        torch.testing.assert_close(fast[b, :n], ref, atol=1e-10, rtol=0)


def _run_with_layout(enc, layout, feats, mask):
    enc.config.batch_layout = layout
    try:
        return enc(feats, mask, output_hidden_states=True)
    finally:
        enc.config.batch_layout = "auto"


def test_flat_layout_gives_the_padded_batch_valid_frames():
    # 16 and 15 frames leave fewer than conv_kernel_size // 2 masked frames before the next 16-frame block
    # boundary, so the next utterance must start one block later; 14 leaves exactly enough.
    tester = GraniteSpeechNarEncoderModelTester(seq_lengths=(37, 16, 70, 15, 5, 14, 33))
    enc = tester.create_model(seed=7).double().eval()
    feats, mask = tester.prepare_features(tester.seq_lengths, seed=7)
    feats = feats.double()
    rows = []
    enc.layers[0].register_forward_hook(lambda m, i, o: rows.append(tuple(o.shape)))
    padded = _run_with_layout(enc, "padded", feats, mask)
    flat = _run_with_layout(enc, "flat", feats, mask)
    # The flat run is one row, shorter than the padded batch: the spans are 48, 32, 80, 32, 16, 16 and 33.
    assert rows == [(7, 70, 32), (1, 257, 32)]
    for name in ("last_hidden_state", "projector_input", "char_logits"):
        a, b = getattr(padded, name), getattr(flat, name)
        torch.testing.assert_close(b[mask], a[mask], atol=1e-12, rtol=0, msg=name)
        assert not b[~mask].any(), f"{name}: frames past an utterance's end are zero in the flat layout"
    for a, b in zip(padded.hidden_states, flat.hidden_states, strict=True):
        torch.testing.assert_close(b[mask], a[mask], atol=1e-12, rtol=0)
    assert torch.equal(flat.pooled_lengths, padded.pooled_lengths)
    for b, n in enumerate(flat.pooled_lengths.tolist()):
        torch.testing.assert_close(
            flat.pooled_hidden_states[b, :n], padded.pooled_hidden_states[b, :n], atol=1e-12, rtol=0
        )


def test_flat_layout_equals_each_utterance_alone():
    tester = GraniteSpeechNarEncoderModelTester(seq_lengths=(16, 31, 3, 48))
    enc = tester.create_model(seed=8).eval()
    feats, mask = tester.prepare_features(tester.seq_lengths, seed=8)
    batch = _run_with_layout(enc, "flat", feats, mask)
    for b, n in enumerate(tester.seq_lengths):
        alone = enc(feats[b : b + 1, :n])
        torch.testing.assert_close(
            batch.projector_input[b, :n], alone.projector_input[0], atol=1e-5, rtol=1e-5
        )
        torch.testing.assert_close(batch.char_logits[b, :n], alone.char_logits[0], atol=1e-5, rtol=1e-5)


def test_auto_layout_choice():
    tester = GraniteSpeechNarEncoderModelTester(seq_lengths=(40, 40))
    enc = tester.create_model(seed=9).eval()
    shapes = []
    enc.layers[0].register_forward_hook(lambda m, i, o: shapes.append(tuple(o.shape[:2])))
    same, mask = tester.prepare_features((40, 40), seed=9)
    enc(same, mask)  # equal lengths, no padding: the padded batch is the reference's computation
    mixed, mask = tester.prepare_features((40, 5), seed=9)
    enc(mixed, mask)  # 48 + 5 frames in one row instead of 2 x 40
    one, mask = tester.prepare_features((40, 5), seed=9)
    enc(one[1:], mask[1:])  # a padded single utterance runs its own 5 frames only
    not_prefix = mask.clone()
    not_prefix[0, 3] = False
    enc(mixed, not_prefix)  # a mask with holes has no utterance boundaries to lay out: padded
    enc.train()
    enc(mixed, mask)  # training: BatchNorm statistics of the padded batch
    assert shapes == [(2, 40), (1, 53), (1, 5), (2, 40), (2, 40)]


def test_batch_layout_is_a_checked_config_field():
    tester = GraniteSpeechNarEncoderModelTester()
    config = tester.get_config()
    assert config.batch_layout == "auto"
    with pytest.raises(ValueError, match="batch_layout must be 'auto', 'flat' or 'padded'"):
        type(config)(**{**config.to_dict(), "batch_layout": "packed"})
