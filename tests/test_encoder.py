"""Encoder sub-model: self-conditioning, layer export, masking."""

import torch
from tiny import random_features, tiny_model


def test_hidden_states_and_export_after_self_conditioning():
    model = tiny_model(
        seed=0, encoder={"num_layers": 3, "cat_hidden_layers": [1, 2], "self_conditioning_layer": 2}
    )
    enc = model.model.encoder
    feats, mask = random_features([30], seed=0)
    captured = {}
    enc.layers[1].register_forward_hook(lambda m, i, o: captured.__setitem__("block2", o))
    out = enc(feats, mask, output_hidden_states=True)
    assert len(out.hidden_states) == 3 + 1
    width = enc.config.hidden_dim
    exported_2 = out.projector_input[..., width : 2 * width]
    # The block-2 export carries the self-conditioning residual (released model, SPEC §3.1.5)...
    assert torch.equal(exported_2, out.hidden_states[2])
    assert not torch.allclose(exported_2, captured["block2"])
    torch.testing.assert_close(exported_2 - captured["block2"], enc.out_mid(out.char_logits.softmax(-1)))
    # ... and the newest port's behaviour is one config switch away.
    enc.config.export_after_self_conditioning = False
    before = enc(feats, mask).projector_input[..., width : 2 * width]
    assert torch.equal(before, captured["block2"])
    enc.config.export_after_self_conditioning = True


def test_masked_frames_do_not_influence_valid_frames():
    model = tiny_model(seed=1)
    enc = model.model.encoder
    feats, mask = random_features([21, 21], seed=1)
    feats[1, :14] = feats[0, :14]
    mask[1, 14:] = False  # second row: the same first 14 frames, then 7 masked frames of other content
    out = enc(feats, mask)
    alone = enc(feats[:1, :14])
    torch.testing.assert_close(
        out.last_hidden_state[1, :14], alone.last_hidden_state[0], atol=1e-5, rtol=1e-5
    )
    torch.testing.assert_close(out.projector_input[1, :14], alone.projector_input[0], atol=1e-5, rtol=1e-5)
    assert out.pooled_lengths.tolist() == [6, 4]
