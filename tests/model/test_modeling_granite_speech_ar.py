"""``granite_nar.model.modeling_granite_speech_ar``: the autoregressive counterpart has the same parts as the NAR
model, and batches and caches correctly."""

from __future__ import annotations

import inspect

import pytest
import torch
from testers import BLANK, GraniteSpeechNarForCTCModelTester, single
from torch import nn
from transformers import AutoConfig, AutoModelForSpeechSeq2Seq

import granite_nar.model.modeling_granite_speech_ar as ar_module
from granite_nar import GraniteSpeechNarForCTC
from granite_nar.model.modeling_encoder import GraniteSpeechNarEncoder
from granite_nar.model.modeling_granite_speech_ar import (
    GraniteSpeechArConfig,
    GraniteSpeechArForConditionalGeneration,
)
from granite_nar.model.modeling_projector import GraniteSpeechNarProjector

model_tester = GraniteSpeechNarForCTCModelTester()
LENGTHS = [40, 23, 31, 12]  # encoder frames: 8, 4, 6 and 2 audio tokens, mixed on purpose


def sharp_ar(seed: int = 0) -> GraniteSpeechArForConditionalGeneration:
    """An AR model whose greedy output depends visibly on the audio.

    With the released multipliers and 0.02-std weights a tiny model's start token just predicts itself (EOS);
    unit multipliers and 1/sqrt(fan_in) weights make every utterance decode to a different, long sequence.
    """
    nar = GraniteSpeechNarForCTCModelTester(
        text_kwargs=dict(
            attention_multiplier=1.0, residual_multiplier=1.0, embedding_multiplier=1.0, logits_scaling=1.0
        ),
        scale_projected_embeddings=False,
    ).create_model(seed)
    ar = GraniteSpeechArForConditionalGeneration.from_nar(nar).eval()
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for param in ar.parameters():
            if param.dim() == 2:
                param.copy_(torch.randn(param.shape, generator=g) / param.shape[1] ** 0.5)
    return ar


def greedy_without_cache(ar, feats, mask, steps: int) -> torch.Tensor:
    """Reference decoding: at every step run the full left-padded sequence again (no cache) and take the argmax.

    EOS is excluded, as ``generate(min_new_tokens=steps)`` does."""
    audio, audio_lengths = ar.get_audio_features(feats, mask)
    prompt, attention_mask = ar.build_inputs(audio, audio_lengths)
    tokens = torch.empty(feats.shape[0], 0, dtype=torch.long)
    for _ in range(steps):
        embeds = torch.cat([prompt, ar.get_input_embeddings()(tokens)], dim=1)
        full_mask = torch.cat([attention_mask, torch.ones_like(tokens)], dim=1)
        positions = (full_mask.cumsum(-1) - 1).clamp_min(0)
        logits = ar(
            inputs_embeds=embeds, attention_mask=full_mask, position_ids=positions, use_cache=False
        ).logits
        logits[..., ar.config.text_config.eos_token_id] = -float("inf")
        tokens = torch.cat([tokens, logits[:, -1].argmax(-1, keepdim=True)], dim=1)
    return tokens


# -- same parts as the NAR model ---------------------------------------------------------------------------
def test_encoder_and_projector_are_the_nar_classes_not_copies():
    nar = model_tester.create_model()
    ar = GraniteSpeechArForConditionalGeneration.from_nar(nar)
    assert type(ar.encoder) is type(nar.model.encoder) is GraniteSpeechNarEncoder
    assert type(ar.projector) is type(nar.model.projector) is GraniteSpeechNarProjector
    assert ar_module.GraniteSpeechNarEncoder is GraniteSpeechNarEncoder
    # The AR module defines no network block of its own: only its config and its two model classes.
    own = {
        name
        for name, obj in inspect.getmembers(ar_module, inspect.isclass)
        if obj.__module__ == ar_module.__name__
    }
    assert own == {
        "GraniteSpeechArConfig",
        "GraniteSpeechArPreTrainedModel",
        "GraniteSpeechArForConditionalGeneration",
    }
    own_modules = {type(m) for m in ar.modules() if type(m).__module__ == ar_module.__name__}
    assert own_modules == {GraniteSpeechArForConditionalGeneration}


def test_from_nar_copies_every_weight_exactly():
    nar = model_tester.create_model()
    ar = GraniteSpeechArForConditionalGeneration.from_nar(nar).eval()
    nar_state = nar.state_dict()
    for name, tensor in ar.state_dict().items():
        source = "model." + name if not name.startswith("lm_head") else name
        assert torch.equal(tensor, nar_state[source]), name
    assert ar.lm_head.weight is ar.language_model.embed_tokens.weight
    assert isinstance(ar.language_model, nn.Module) and type(ar.language_model).__name__ == "GraniteModel"

    feats, mask = model_tester.prepare_features(LENGTHS)
    with torch.no_grad():
        expected = nar.model.encode_audio(feats, mask)
        audio, audio_lengths = ar.get_audio_features(feats, mask)
    assert torch.equal(audio_lengths, expected.audio_lengths)
    assert torch.equal(audio, expected.audio_embeds)

    # A copy: training the AR model leaves the NAR model alone; share_weights aliases instead.
    with torch.no_grad():
        ar.encoder.input_linear.weight.add_(1.0)
    assert not torch.equal(ar.encoder.input_linear.weight, nar.model.encoder.input_linear.weight)
    shared = GraniteSpeechArForConditionalGeneration.from_nar(nar, share_weights=True)
    assert shared.encoder.input_linear.weight.data_ptr() == nar.model.encoder.input_linear.weight.data_ptr()
    assert shared.lm_head.weight.data_ptr() == nar.lm_head.weight.data_ptr()


def test_config_keeps_the_nar_sizes_and_registers():
    nar = model_tester.create_model()
    config = GraniteSpeechArConfig.from_nar_config(nar.config)
    assert config.model_type == "granite_speech_ar"
    assert config.text_config.to_dict() == nar.config.text_config.to_dict()
    assert config.encoder_config.to_dict() == nar.config.encoder_config.to_dict()
    assert type(AutoConfig.for_model("granite_speech_ar")) is GraniteSpeechArConfig


# -- generation -----------------------------------------------------------------------------------------------
def test_batched_generation_equals_one_by_one():
    ar = sharp_ar()
    feats, mask = model_tester.prepare_features(LENGTHS, seed=3)
    batch = ar.generate(
        input_features=feats,
        input_features_mask=mask,
        max_new_tokens=8,
        return_dict_in_generate=True,
        output_logits=True,
    )
    assert len({tuple(row.tolist()) for row in batch.sequences}) == len(LENGTHS)  # the audio matters
    for b in range(len(LENGTHS)):
        alone = ar.generate(
            input_features=single(feats, mask, b),
            max_new_tokens=8,
            return_dict_in_generate=True,
            output_logits=True,
        )
        assert torch.equal(batch.sequences[b], alone.sequences[0]), b
        for step_batch, step_alone in zip(batch.logits, alone.logits, strict=True):
            torch.testing.assert_close(step_batch[b], step_alone[0], atol=1e-4, rtol=1e-4)


def test_kv_cache_generation_equals_full_recomputation():
    ar = sharp_ar(seed=1)
    feats, mask = model_tester.prepare_features(LENGTHS, seed=4)
    cached = ar.generate(input_features=feats, input_features_mask=mask, min_new_tokens=7, max_new_tokens=7)
    with torch.no_grad():
        reference = greedy_without_cache(ar, feats, mask, steps=7)
    assert torch.equal(cached, reference)


def test_audio_prompt_is_fed_once_then_the_cache_is_used():
    ar = sharp_ar()
    feats, mask = model_tester.prepare_features(LENGTHS[:2])
    calls = []

    def record(module, args, kwargs):
        past = kwargs.get("cache", kwargs.get("past_key_values"))  # "cache" from transformers 5.24
        calls.append(
            (
                None if kwargs.get("inputs_embeds") is None else tuple(kwargs["inputs_embeds"].shape),
                None if kwargs.get("input_ids") is None else tuple(kwargs["input_ids"].shape),
                0 if past is None else past.get_seq_length(),
                "input_features" in kwargs,
            )
        )

    handle = ar.register_forward_pre_hook(record, with_kwargs=True)
    try:
        ar.generate(input_features=feats, input_features_mask=mask, min_new_tokens=4, max_new_tokens=4)
    finally:
        handle.remove()
    prompt_length = max(LENGTHS[:2]) // 5 + 1  # left-padded audio tokens + the start token
    assert calls[0] == ((2, prompt_length, 24), None, 0, False)
    for step, call in enumerate(calls[1:], start=1):
        assert call == (None, (2, 1), prompt_length + step - 1, False)
    assert len(calls) == 4


def test_default_length_limit_is_one_token_per_bpe_window():
    ar = sharp_ar()
    feats, mask = model_tester.prepare_features([21])  # ceil(21 / 4) = 6 windows
    eos = ar.config.text_config.eos_token_id
    out = ar.generate(input_features=feats, input_features_mask=mask, suppress_tokens=[eos])
    assert out.shape[1] == 6 + 1


# -- training --------------------------------------------------------------------------------------------------
def test_loss_equals_hand_computed_cross_entropy():
    nar = model_tester.create_model(seed=2)
    ar = GraniteSpeechArForConditionalGeneration.from_nar(nar).eval()
    feats, mask = model_tester.prepare_features([33, 17], seed=5)
    labels = torch.tensor([[5, 9, 14], [7, -100, -100]])
    out = ar(input_features=feats, input_features_mask=mask, labels=labels)
    same = ar(
        input_features=feats, input_features_mask=mask, labels=labels.clamp_min(0), label_lengths=[3, 1]
    )
    torch.testing.assert_close(out.loss, same.loss, rtol=0, atol=0)
    assert out.logits.shape == (2, 4, ar.config.text_config.vocab_size)

    # By hand: each utterance alone, [audio ; <start> ; labels] with no padding, ordinary causal LM.
    eos = ar.config.text_config.eos_token_id
    embed = ar.get_input_embeddings()
    terms = []
    for b, targets in enumerate([[5, 9, 14], [7]]):
        audio, audio_lengths = ar.get_audio_features(single(feats, mask, b))
        text = embed(torch.tensor([[eos, *targets]]))
        hidden = ar.language_model(inputs_embeds=torch.cat([audio, text], dim=1)).last_hidden_state
        logits = (hidden[0, -len(targets) - 1 :] @ embed.weight.T) / ar.config.text_config.logits_scaling
        for row, target in zip(logits, [*targets, eos], strict=True):
            terms.append(torch.logsumexp(row, dim=0) - row[target])  # -log softmax(row)[target]
    expected = torch.stack(terms).mean()  # 4 + 2 target tokens, averaged over the batch
    torch.testing.assert_close(out.loss, expected, rtol=1e-5, atol=1e-5)


def test_loss_reaches_every_parameter():
    ar = GraniteSpeechArForConditionalGeneration.from_nar(model_tester.create_model()).train()
    feats, mask = model_tester.prepare_features([33, 17])
    ar(
        input_features=feats, input_features_mask=mask, labels=torch.tensor([[1, 2], [3, -100]])
    ).loss.backward()
    missing = [n for n, p in ar.named_parameters() if p.grad is None or not bool(p.grad.abs().sum() > 0)]
    assert not missing


def test_bad_inputs_get_clear_errors():
    ar = GraniteSpeechArForConditionalGeneration.from_nar(model_tester.create_model()).eval()
    feats, mask = model_tester.prepare_features([20])
    with pytest.raises(ValueError, match="labels need input_features"):
        ar(input_ids=torch.tensor([[1]]), labels=torch.tensor([[1]]))
    with pytest.raises(ValueError, match="do not pass it"):
        ar.generate(input_features=feats, inputs_embeds=torch.zeros(1, 2, 24))
    with pytest.raises(ValueError, match="padding must come last"):
        ar(input_features=feats, labels=torch.tensor([[-100, 3]]))
    with pytest.raises(ValueError, match="shorter than one audio token"):
        ar.generate(input_features=feats[:, :4])
    with pytest.raises(ValueError, match="outside the vocabulary"):
        ar(input_features=feats, labels=torch.tensor([[BLANK + 1]]))


def test_save_and_load_round_trip(tmp_path):
    ar = sharp_ar()
    ar.save_pretrained(tmp_path)
    loaded = AutoModelForSpeechSeq2Seq.from_pretrained(tmp_path).eval()
    assert type(loaded) is GraniteSpeechArForConditionalGeneration
    assert loaded.lm_head.weight is loaded.language_model.embed_tokens.weight
    feats, mask = model_tester.prepare_features(LENGTHS[:2], seed=6)
    expected = ar.generate(input_features=feats, input_features_mask=mask, max_new_tokens=5)
    assert torch.equal(
        loaded.generate(input_features=feats, input_features_mask=mask, max_new_tokens=5), expected
    )


def test_built_directly_from_a_config():
    nar = model_tester.create_model()
    ar = GraniteSpeechArForConditionalGeneration(GraniteSpeechArConfig.from_nar_config(nar.config))
    assert sum(p.numel() for p in ar.parameters()) == sum(
        p.numel() for n, p in nar.named_parameters() if not n.startswith("model.out_bpe")
    )
    assert not isinstance(ar, GraniteSpeechNarForCTC)
