"""``granite_nar.model.modeling_granite_speech_nar``: the behaviour of GraniteSpeechNarForCTC (batching, frame
arithmetic, backends, editing steps, persistence, Auto classes, input errors, the full-size parameter counts).

The editor's own behaviour inside the model (packing, bidirectionality, isolation) is tested in ``test_editor.py``."""

import pytest
import torch
from testers import BLANK, VOCAB, GraniteSpeechNarForCTCModelTester, single

from granite_nar import GraniteSpeechNarConfig, GraniteSpeechNarForCTC, GraniteSpeechNarModel
from granite_nar.lengths import num_audio_tokens, num_bpe_windows

model_tester = GraniteSpeechNarForCTCModelTester()

# 12 < one projector window (15); 37 is not a multiple of the 16-frame attention block; 70 spans 5 blocks.
# (Also the encoder tester's default batch.)
LENGTHS = [37, 12, 70, 16, 5]


@pytest.fixture(scope="module")
def model():
    return model_tester.create_model(seed=0)


def test_model():
    model_tester.create_and_check_model(*model_tester.prepare_config_and_inputs())


def test_generate():
    model_tester.create_and_check_generate(*model_tester.prepare_config_and_inputs(seed=1))


def test_batch_equals_single(model):
    feats, mask = model_tester.prepare_features(LENGTHS, seed=1)
    batched = model.generate(feats, mask, num_editing_steps=2, return_dict_in_generate=True)
    for b in range(len(LENGTHS)):
        alone = model.generate(single(feats, mask, b), num_editing_steps=2, return_dict_in_generate=True)
        assert batched.draft_ids[b].tolist() == alone.draft_ids[0].tolist()
        assert batched.sequences[b].tolist() == alone.sequences[0].tolist()
        torch.testing.assert_close(batched.logits[b], alone.logits[0], atol=2e-5, rtol=1e-5)


def test_batch_of_one_without_mask_equals_full_mask(model):
    feats, mask = model_tester.prepare_features([40], seed=2)
    a = model.generate(feats, return_dict_in_generate=True)
    b = model.generate(feats, mask, return_dict_in_generate=True)
    assert torch.equal(a.logits[0], b.logits[0])


def test_padding_content_is_ignored(model):
    feats, mask = model_tester.prepare_features(LENGTHS, seed=3)
    noisy = feats.clone()
    noisy[~mask] = 1e3  # garbage in the padding must not leak into any utterance
    a = model.generate(feats, mask, return_dict_in_generate=True)
    b = model.generate(noisy, mask, return_dict_in_generate=True)
    for x, y in zip(a.logits, b.logits, strict=True):
        torch.testing.assert_close(x, y, atol=2e-5, rtol=1e-5)


def test_lengths_follow_frame_arithmetic(model):
    feats, mask = model_tester.prepare_features(LENGTHS, seed=4)
    audio = model.model.encode_audio(feats, mask, output_bpe_logits=True)
    frames = torch.tensor(LENGTHS)
    assert audio.audio_lengths.tolist() == [num_audio_tokens(t, 5) for t in LENGTHS]
    assert audio.bpe_lengths.tolist() == [num_bpe_windows(t, 4) for t in LENGTHS]
    assert audio.bpe_logits.shape[0] == int(num_bpe_windows(frames, 4).sum())
    out = model(feats, mask)
    drafts = [len(d) for d in out.draft_ids]
    assert out.seq_lengths.tolist() == [max(2 * n + 1, 8) for n in drafts]
    assert out.logits.shape == (1, sum(out.seq_lengths.tolist()), VOCAB)


def test_eager_and_sdpa_agree():
    feats, mask = model_tester.prepare_features(LENGTHS, seed=5)
    sdpa = model_tester.create_model(seed=7, attn_implementation="sdpa").generate(
        feats, mask, return_dict_in_generate=True
    )
    eager = model_tester.create_model(seed=7, attn_implementation="eager").generate(
        feats, mask, return_dict_in_generate=True
    )
    for a, b in zip(sdpa.logits, eager.logits, strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
    assert [s.tolist() for s in sdpa.sequences] == [s.tolist() for s in eager.sequences]


def test_two_editing_steps_run_the_encoder_once(model):
    calls = {"encoder": 0, "projector": 0, "editor": 0}
    hooks = [
        getattr(model.model, name if name != "editor" else "language_model").register_forward_hook(
            lambda *_, n=name: calls.__setitem__(n, calls[n] + 1)
        )
        for name in calls
    ]
    feats, mask = model_tester.prepare_features(LENGTHS, seed=9)
    out = model.generate(feats, mask, num_editing_steps=2, return_dict_in_generate=True)
    for h in hooks:
        h.remove()
    assert calls == {"encoder": 1, "projector": 1, "editor": 2}
    # Step 2 edits step 1's output: re-running one step on step-1 hypotheses gives step-2 output.
    again = model.generate(feats, mask, num_editing_steps=1, input_ids=out.step_sequences[0])
    assert [s.tolist() for s in again] == [s.tolist() for s in out.sequences]


def test_zero_editing_steps_returns_the_draft(model):
    feats, mask = model_tester.prepare_features(LENGTHS, seed=10)
    out = model.generate(feats, mask, num_editing_steps=0, return_dict_in_generate=True)
    assert [s.tolist() for s in out.sequences] == [s.tolist() for s in out.draft_ids]


def test_precomputed_audio_path_matches_features_path(model):
    feats, mask = model_tester.prepare_features(LENGTHS, seed=11)
    audio = model.model.encode_audio(feats, mask)
    via_features = model.generate(feats, mask)
    via_embeds = model.generate(
        audio_embeds=audio.audio_embeds, audio_lengths=audio.audio_lengths, input_ids=audio.draft_ids
    )
    as_list = [audio.audio_embeds[b, :n] for b, n in enumerate(audio.audio_lengths.tolist())]
    via_list = model.generate(audio_embeds=as_list, input_ids=audio.draft_ids)
    assert (
        [s.tolist() for s in via_features]
        == [s.tolist() for s in via_embeds]
        == [s.tolist() for s in via_list]
    )


def test_min_edit_sequence_length_is_a_config_field():
    feats, mask = model_tester.prepare_features([6], seed=12)
    for minimum, expected in [(8, 8), (1, None)]:
        model = GraniteSpeechNarForCTCModelTester(min_edit_sequence_length=minimum).create_model(seed=0)
        out = model.generate(feats, mask, return_dict_in_generate=True)
        n = len(out.draft_ids[0])
        assert out.seq_lengths.item() == (max(2 * n + 1, 8) if expected else 2 * n + 1)


def test_save_load_identical(model, tmp_path):
    model.save_pretrained(tmp_path)
    loaded = GraniteSpeechNarForCTC.from_pretrained(tmp_path)
    assert loaded.lm_head.weight.data_ptr() == loaded.model.language_model.embed_tokens.weight.data_ptr()
    for key, value in model.state_dict().items():
        assert torch.equal(value, loaded.state_dict()[key]), key
    feats, mask = model_tester.prepare_features(LENGTHS, seed=13)
    a = model.generate(feats, mask, return_dict_in_generate=True)
    b = loaded.eval().generate(feats, mask, return_dict_in_generate=True)
    for x, y in zip(a.logits, b.logits, strict=True):
        assert torch.equal(x, y)


def test_bf16_is_kept_on_save_load(tmp_path):
    model = model_tester.create_model(seed=1).to(torch.bfloat16)
    model.save_pretrained(tmp_path)
    loaded = GraniteSpeechNarForCTC.from_pretrained(tmp_path, dtype="auto")
    assert loaded.dtype == torch.bfloat16
    feats, mask = model_tester.prepare_features([30, 20], seed=14)
    assert [s.tolist() for s in model.generate(feats, mask)] == [
        s.tolist() for s in loaded.generate(feats, mask)
    ]


def test_auto_classes(tmp_path):
    from transformers import AutoConfig, AutoModel, AutoModelForCTC

    model = model_tester.create_model(seed=2)
    model.save_pretrained(tmp_path)
    assert isinstance(AutoConfig.from_pretrained(tmp_path), GraniteSpeechNarConfig)
    assert isinstance(AutoModelForCTC.from_pretrained(tmp_path), GraniteSpeechNarForCTC)
    base = AutoModel.from_config(model.config)
    assert isinstance(base, GraniteSpeechNarModel)


def test_bad_inputs_get_clear_errors(model):
    feats, mask = model_tester.prepare_features([20, 10], seed=16)
    with pytest.raises(ValueError, match=r"input_features must be \(batch, frames, 160\)"):
        model.generate(feats[0])
    with pytest.raises(ValueError, match="input_features_mask has shape"):
        model.generate(feats, mask[:, :5])
    holes = mask.clone()
    holes[0, 3] = False
    with pytest.raises(ValueError, match="right-padding mask"):
        model.generate(feats, holes)
    empty = mask.clone()
    empty[1] = False
    with pytest.raises(ValueError, match=r"utterances \[1\] have no valid encoder frame"):
        model.generate(feats, empty)
    with pytest.raises(ValueError, match="num_editing_steps"):
        model.generate(feats, mask, num_editing_steps=-1)
    with pytest.raises(ValueError, match="outside the vocabulary"):
        model.generate(feats, mask, input_ids=[torch.tensor([VOCAB]), torch.tensor([1])])
    with pytest.raises(ValueError, match="audio_embeds together with input_ids"):
        model.generate()


def test_full_size_parameter_counts_on_meta():
    with torch.device("meta"):
        model = GraniteSpeechNarForCTC(GraniteSpeechNarConfig())

    def count(module):
        return sum(p.numel() for p in module.parameters())

    # docs/reference_behaviour.md §6.2: encoder + BPE head 543.03 M, projector 79.79 M (79.76 M without the identity
    # LayerNorm affines the native layout drops), language model 1631.75 M, 2.2546 B in all.
    assert count(model.model.encoder) + count(model.model.out_bpe) == 543_029_596
    assert count(model.model.projector) == 79_761_408
    assert count(model.model.projector) + 4 * 2 * 1024 + 2 * 2 * 2 * 2048 + 2 * 2048 == 79_790_080
    assert count(model.model.language_model) == 1_631_750_144
    assert count(model) == 2_254_541_148  # the tied head adds nothing
    assert model.lm_head.weight is model.model.language_model.embed_tokens.weight
    assert model.model.out_bpe.weight.shape == (100352, 1024)


def test_blank_is_the_configured_id(model):
    assert model.config.blank_token_id == BLANK == model.config.text_config.eos_token_id
