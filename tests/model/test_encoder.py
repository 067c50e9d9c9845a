"""``granite_nar.model.modeling_encoder``: self-conditioning, layer export, masking, and the fast paths
(posterior-weighted pooling, block attention) against the slow references in ``granite_nar.testing.reference``."""

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
