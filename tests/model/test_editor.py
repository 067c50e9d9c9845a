"""``granite_nar.model.modeling_editor``: the bidirectional editor over packed utterances, alone and inside the
model (packing against the slow reference in ``granite_nar.testing.reference``, bidirectionality, isolation
of the utterances, no dense attention mask)."""

import pytest
import torch
from testers import GraniteSpeechNarEditorModelTester, GraniteSpeechNarForCTCModelTester

from granite_nar.lengths import num_audio_tokens
from granite_nar.model.ctc import build_slots
from granite_nar.model.modeling_editor import PackedSequences
from granite_nar.testing.reference import reference_pack

model_tester = GraniteSpeechNarForCTCModelTester()
LENGTHS = [37, 12, 70, 16, 5]  # as in test_modeling_granite_speech_nar.py


@pytest.fixture(scope="module")
def model():
    return model_tester.create_model(seed=0)


def test_model():
    tester = GraniteSpeechNarEditorModelTester()
    tester.create_and_check_model(*tester.prepare_config_and_inputs())


def test_packed_sequences_positions_restart():
    packed = PackedSequences.from_lengths([3, 1, 2])
    assert packed.position_ids.tolist() == [[0, 1, 2, 0, 0, 1]]
    assert packed.cu_seqlens.tolist() == [0, 3, 4, 6]
    with pytest.raises(ValueError, match="at least one row"):
        PackedSequences.from_lengths([3, 0])


def test_packing_matches_reference():
    model = model_tester.create_model(seed=6)
    feats, mask = model_tester.prepare_features([23, 9, 40], seed=4)
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


def test_editor_is_bidirectional_and_utterances_are_isolated(model):
    feats, mask = model_tester.prepare_features([40, 33], seed=6)
    audio = model.model.encode_audio(feats, mask)
    drafts = [torch.tensor([3, 4, 5, 6]), torch.tensor([7, 8])]

    def slot_logits(token_ids):
        out = model.model.edit(audio.audio_embeds, audio.audio_lengths, token_ids)
        return model.slot_logits(out.last_hidden_state)[0].split(out.seq_lengths.tolist())

    with torch.no_grad():
        base = slot_logits(drafts)
        later = slot_logits([torch.tensor([3, 4, 5, 9]), drafts[1]])  # change the *last* token of utterance 0
        other = slot_logits([drafts[0], torch.tensor([7, 1])])
    # Its *first* slot sees the change (a causal editor would give bit-identical logits there).
    assert (later[0][0] - base[0][0]).abs().max() > 1e-6
    torch.testing.assert_close(later[1], base[1], atol=0, rtol=0)  # the other utterance does not
    torch.testing.assert_close(other[0], base[0], atol=0, rtol=0)


def test_packed_attention_never_builds_a_dense_mask(model, monkeypatch):
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

    seen = []
    original = ALL_ATTENTION_FUNCTIONS["sdpa"]

    def spy(module, q, k, v, mask, **kw):
        seen.append((q.shape[2], k.shape[2], mask))
        return original(module, q, k, v, mask, **kw)

    monkeypatch.setitem(ALL_ATTENTION_FUNCTIONS._global_mapping, "sdpa", spy)
    feats, mask = model_tester.prepare_features(LENGTHS, seed=8)
    out = model.generate(feats, mask, return_dict_in_generate=True)
    audio_lengths = [num_audio_tokens(t, 5) for t in LENGTHS]
    longest = max(a + s for a, s in zip(audio_lengths, out.seq_lengths.tolist(), strict=True))
    assert seen and all(m is None and q == k <= longest for q, k, m in seen)
