"""``granite_nar.training.presets``: each trainable-parameter preset freezes exactly what it says, LoRA adapts only
the named linear layers, and frozen BatchNorm keeps its statistics."""

from __future__ import annotations

import pytest
import torch
from testers import GraniteSpeechNarForCTCModelTester

from granite_nar.training import (
    apply_preset,
    compute_nar_losses,
    count_parameters,
    is_peft_model,
    merged_state_dict,
)
from granite_nar.training.presets import lora_linear_layers, trainable_parameter_names

model_tester = GraniteSpeechNarForCTCModelTester()


def _trainable_parts(model):
    return {k: t for k, (t, _) in count_parameters(model).parts.items() if t}


@pytest.mark.parametrize("preset", ["full", "encoder", "projector", "editor"])
def test_presets_freeze_exactly_what_they_say(preset):
    model = model_tester.create_model()
    totals = {k: n for k, (_, n) in count_parameters(model).parts.items()}
    _, summary = apply_preset(model, preset, verbose=False)
    expected = {
        "full": set(totals),
        "encoder": {"encoder", "out_bpe"},
        "projector": {"projector"},
        "editor": {"editor"},
    }[preset]
    assert _trainable_parts(model) == {k: totals[k] for k in expected}
    assert summary.trainable == sum(totals[k] for k in expected)
    assert summary.total == sum(totals.values())


def test_editor_last_n_trains_the_last_layers_and_final_norm():
    model = model_tester.create_model()
    apply_preset(model, "editor_last_n", num_layers=1, verbose=False)
    names = trainable_parameter_names(model)
    assert names and all(
        n.startswith(("model.language_model.layers.1.", "model.language_model.norm.")) for n in names
    )
    assert "model.language_model.norm.weight" in names
    assert not model.model.language_model.embed_tokens.weight.requires_grad
    with pytest.raises(ValueError, match="num_layers"):
        apply_preset(model_tester.create_model(), "editor_last_n", num_layers=3, verbose=False)


def test_editor_last_n_head_trains_the_last_layers_the_final_norm_and_the_tied_head(tmp_path):
    model = model_tester.create_model().train()
    head = model.get_output_embeddings().weight
    assert head is model.get_input_embeddings().weight  # lm_head is tied to the editor's embedding
    totals = {k: n for k, (_, n) in count_parameters(model).parts.items()}
    _, summary = apply_preset(model, "editor_last_n_head", num_layers=1, verbose=False)

    # Exactly the last layer, the final norm and the one head / embedding tensor (under both of its names).
    last = len(model.model.language_model.layers) - 1
    every = dict(model.named_parameters(remove_duplicate=False))
    expected = {n for n in every if n.startswith(f"model.language_model.layers.{last}.")}
    expected |= {
        "model.language_model.norm.weight",
        "model.language_model.embed_tokens.weight",
        "lm_head.weight",
    }
    assert {n for n, p in every.items() if p.requires_grad} == expected
    assert summary.trainable == sum(every[n].numel() for n in expected - {"lm_head.weight"})
    assert _trainable_parts(model) == {"editor": summary.trainable} and summary.total == sum(totals.values())
    with pytest.raises(ValueError, match="editor_last_n_head needs num_layers"):
        apply_preset(model_tester.create_model(), "editor_last_n_head", num_layers=3, verbose=False)

    # One optimizer step over all parameters: the frozen ones (and the frozen BatchNorm statistics) do not
    # move, the head does, and it is still the embedding.
    before = {k: v.clone() for k, v in model.state_dict().items()}
    feats, mask = model_tester.prepare_features([30, 20], seed=1)
    labels, lengths = torch.tensor([[3, 4, 5], [5, 6, -100]]), torch.tensor([3, 2])
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    compute_nar_losses(model, feats, mask, labels, lengths, encoder_ctc_loss_lambda=1.0).loss.backward()
    optimizer.step()
    after = model.state_dict()
    assert [k for k in before if k not in expected and not torch.equal(before[k], after[k])] == []
    for name in (
        "lm_head.weight",
        "model.language_model.norm.weight",
        f"model.language_model.layers.{last}.mlp.up_proj.weight",
    ):
        assert not torch.equal(before[name], after[name]), name
    assert model.get_output_embeddings().weight is model.get_input_embeddings().weight is head

    # Saved and loaded, the head is still tied and holds the trained values.
    model.save_pretrained(tmp_path)
    loaded = type(model).from_pretrained(tmp_path)
    assert loaded.get_output_embeddings().weight is loaded.get_input_embeddings().weight
    assert all(torch.equal(v, after[k]) for k, v in loaded.state_dict().items())


def test_lora_preset_adapts_only_the_named_linear_layers():
    pytest.importorskip("peft")
    model = model_tester.create_model()
    targets = set(lora_linear_layers(model, ["encoder", "editor"]))
    assert any(".attn.to_q" in t for t in targets) and any(".self_attn.q_proj" in t for t in targets)
    assert not any("projector" in t for t in targets)
    wrapped, summary = apply_preset(
        model, "lora", lora_targets=["encoder", "editor"], lora_rank=2, verbose=False
    )
    names = trainable_parameter_names(wrapped)
    assert names and all(".lora_A." in n or ".lora_B." in n for n in names)
    adapted = {n.split(".lora_")[0] for n in names}
    assert adapted == targets
    assert summary.parts["projector"][0] == 0 and summary.parts["out_bpe"][0] == 0
    # Gradients reach the adapters through the wrapped model.
    feats, mask = model_tester.prepare_features([30, 20], seed=1)
    losses = compute_nar_losses(
        wrapped,
        feats,
        mask,
        torch.tensor([[3, 4], [5, 6]]),
        torch.tensor([2, 2]),
        encoder_ctc_loss_lambda=1.0,
    )
    losses.loss.backward()
    assert all(p.grad is not None for p in wrapped.parameters() if p.requires_grad)


def test_frozen_batch_norm_keeps_its_statistics():
    model = model_tester.create_model().train()
    apply_preset(model, "projector", verbose=False)
    bn = model.model.encoder.layers[0].conv.batch_norm
    before = bn.running_mean.clone()
    feats, mask = model_tester.prepare_features([30, 20], seed=2)
    compute_nar_losses(
        model, feats, mask, torch.tensor([[3, 4], [5, 6]]), torch.tensor([2, 2])
    ).loss.backward()
    assert torch.equal(bn.running_mean, before)
    # With the encoder trainable, BatchNorm updates its statistics as usual.
    model = model_tester.create_model().train()
    apply_preset(model, "full", verbose=False)
    bn = model.model.encoder.layers[0].conv.batch_norm
    before = bn.running_mean.clone()
    compute_nar_losses(model, feats, mask, torch.tensor([[3, 4], [5, 6]]), torch.tensor([2, 2]))
    assert not torch.equal(bn.running_mean, before)


def test_merged_state_dict_equals_merge_and_unload_and_leaves_the_model_alone():
    pytest.importorskip("peft")
    import copy

    model, _ = apply_preset(
        model_tester.create_model(), "lora", lora_targets=["encoder", "editor"], lora_rank=4, verbose=False
    )
    generator = torch.Generator().manual_seed(0)
    for name, param in model.named_parameters():
        if "lora_B" in name:  # zero at initialisation: give the adapters something to merge
            param.data = torch.randn(param.shape, generator=generator) * 0.1
    before = {k: v.clone() for k, v in model.state_dict().items()}

    merged = merged_state_dict(model)
    reference = copy.deepcopy(model).merge_and_unload().state_dict()
    assert set(merged) == set(reference) == set(model_tester.create_model().state_dict())
    for name, tensor in reference.items():
        torch.testing.assert_close(merged[name], tensor, rtol=0, atol=1e-6, msg=name)
    assert any(not torch.equal(merged[n], t) for n, t in model_tester.create_model().state_dict().items())
    # The peft model is unchanged (not merged in place), so training can go on.
    assert is_peft_model(model) and all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    # The tied head and embedding stay one tensor.
    assert merged["lm_head.weight"] is merged["model.language_model.embed_tokens.weight"]
    # A model without adapters: its own state dict.
    plain = model_tester.create_model()
    assert not is_peft_model(plain)
    assert all(torch.equal(merged_state_dict(plain)[k], v) for k, v in plain.state_dict().items())
