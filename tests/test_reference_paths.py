"""Fast paths against the slow, readable references in granite_nar.testing.reference."""

import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from tiny import random_features, tiny_model

from granite_nar.model.ctc import build_slots, ctc_collapse, insert_slots
from granite_nar.lengths import num_projector_tokens
from granite_nar.model.modeling_editor import PackedSequences
from granite_nar.testing.reference import (
    reference_block_attention,
    reference_ctc_collapse,
    reference_insert_slots,
    reference_pack,
    reference_pool,
    reference_windows,
)

ids_lists = st.lists(st.lists(st.integers(0, 4), max_size=30), min_size=1, max_size=6)


@settings(max_examples=200, deadline=None)
@given(ids_lists)
def test_ctc_collapse_matches_reference(batch):
    flat = torch.tensor([i for ids in batch for i in ids], dtype=torch.long)
    fast = ctc_collapse(flat, [len(ids) for ids in batch], blank=4)
    assert [f.tolist() for f in fast] == [reference_ctc_collapse(ids, blank=4) for ids in batch]


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


def test_pooling_matches_reference():
    model = tiny_model(seed=3).double()
    feats, mask = random_features([23, 9, 16], seed=1)
    enc = model.model.encoder
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


def test_projector_window_folding_matches_reference():
    model = tiny_model(seed=4).double()
    projector = model.model.projector
    feats, mask = random_features([23, 9], seed=2)
    width = projector.config.encoder_hidden_size
    states = torch.randn(2, 23, width, dtype=torch.float64)
    fast = projector(states, mask)
    for b, n in enumerate(mask.sum(1).tolist()):
        chunks = states[b, :n].view(n, projector.num_chunks, -1)
        hidden = torch.nn.functional.gelu(projector.proj(projector.norm(chunks).view(n, width)))
        windows = reference_windows(hidden, projector.config.window_size)
        alone = torch.cat([projector.qformer(w[None])[0] for w in windows])
        torch.testing.assert_close(fast[b, : alone.shape[0]], alone, atol=1e-10, rtol=0)
        assert alone.shape[0] == num_projector_tokens(n, 15, 5) == -(n // -15) * 3


def test_block_attention_matches_reference():
    model = tiny_model(seed=5).double()
    attn = model.model.encoder.layers[0].attn
    cfg = model.config.encoder_config
    feats, mask = random_features([37, 20], seed=3)
    hidden = torch.randn(2, 37, cfg.hidden_dim, dtype=torch.float64)
    fast = attn(hidden, model.model.encoder.attention_dists, mask)
    for b, n in enumerate(mask.sum(1).tolist()):
        h = attn.pre_norm(hidden[b, :n])
        q = attn.to_q(h).view(n, cfg.num_heads, -1).transpose(0, 1)
        k, v = (x.view(n, cfg.num_heads, -1).transpose(0, 1) for x in attn.to_kv(h).chunk(2, dim=-1))
        ref = reference_block_attention(q, k, v, attn.rel_pos_emb.weight, cfg.context_size, cfg.max_pos_emb)
        ref = attn.to_out(ref.transpose(0, 1).reshape(n, -1))
        torch.testing.assert_close(fast[b, :n], ref, atol=1e-10, rtol=0)


def test_packing_matches_reference():
    model = tiny_model(seed=6)
    feats, mask = random_features([23, 9, 40], seed=4)
    audio = model.model.encode_audio(feats, mask)
    drafts = [torch.tensor([1, 2]), torch.tensor([], dtype=torch.long), torch.tensor([3])]
    slot_ids, slot_lengths = build_slots(drafts, blank=model.config.blank_token_id, min_length=8)
    embed = model.model.language_model.embed_tokens
    pieces = [audio.audio_embeds[b, :n] for b, n in enumerate(audio.audio_lengths.tolist())]
    rows, positions, text_rows = reference_pack(pieces, list(embed(slot_ids).split(slot_lengths)))
    packed = PackedSequences.from_lengths([a.shape[0] + s for a, s in zip(pieces, slot_lengths, strict=True)])
    assert packed.position_ids[0].tolist() == positions
    with torch.no_grad():
        editor = model.model.language_model
        slow = editor(rows[None], packed).last_hidden_state[0, text_rows]
        fast = model.model.edit(audio.audio_embeds, audio.audio_lengths, drafts).last_hidden_state[0]
        torch.testing.assert_close(fast, slow, atol=0, rtol=0)
        # and each utterance alone, unpacked, gives the same rows
        for b, (a, s) in enumerate(zip(pieces, embed(slot_ids).split(slot_lengths), strict=True)):
            alone = editor(torch.cat([a, s])[None]).last_hidden_state[0, a.shape[0] :]
            start = sum(slot_lengths[:b])
            torch.testing.assert_close(fast[start : start + s.shape[0]], alone, atol=1e-6, rtol=1e-6)
