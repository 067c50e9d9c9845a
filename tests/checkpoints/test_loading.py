"""``granite_nar.checkpoints.loading``: original-layout checkpoints loaded directly by ``from_pretrained``
(base model and Auto classes, dtypes), and repo ids resolved offline from the Hub cache. No network."""

from __future__ import annotations

import huggingface_hub.constants
import pytest
import torch
from testers import GraniteSpeechNarForCTCModelTester
from transformers import AutoModel, AutoModelForCTC

from granite_nar import GraniteSpeechNarForCTC, GraniteSpeechNarModel

model_tester = GraniteSpeechNarForCTCModelTester()


# --------------------------------------------------------------------------------------------------------
# The direct path


def test_base_model_loads_the_original_layout(tiny_original):
    full = GraniteSpeechNarForCTC.from_pretrained(tiny_original)
    base = GraniteSpeechNarModel.from_pretrained(tiny_original)
    assert type(base) is GraniteSpeechNarModel
    assert type(AutoModelForCTC.from_pretrained(tiny_original)) is GraniteSpeechNarForCTC
    assert type(AutoModel.from_pretrained(tiny_original)) is GraniteSpeechNarModel
    assert base.state_dict().keys() == full.model.state_dict().keys()
    feats, mask = model_tester.prepare_features([40, 23])
    a, b = full.model(feats, mask), base(feats, mask)
    assert torch.equal(a.last_hidden_state, b.last_hidden_state)


def test_dtype_argument_of_the_direct_path(tiny_original):
    bf16 = GraniteSpeechNarForCTC.from_pretrained(tiny_original, dtype=torch.bfloat16)
    assert {p.dtype for p in bf16.parameters()} == {torch.bfloat16}
    assert GraniteSpeechNarForCTC.from_pretrained(tiny_original, dtype="bfloat16").dtype == torch.bfloat16
    feats, mask = model_tester.prepare_features([30], dtype=torch.bfloat16)
    assert len(bf16.generate(feats, mask)) == 1


def test_mixed_dtype_checkpoint_loads_in_its_dominant_dtype(original_copy, edit_weights):
    def mixed(tensors):
        for name in list(tensors):
            if tensors[name].is_floating_point():
                keep_fp32 = ".batch_norm.running_" in name
                tensors[name] = tensors[name].to(torch.float32 if keep_fp32 else torch.bfloat16)

    edit_weights(original_copy, mixed)
    model = GraniteSpeechNarForCTC.from_pretrained(original_copy)
    assert {t.dtype for t in model.state_dict().values() if t.is_floating_point()} == {torch.bfloat16}
    feats, mask = model_tester.prepare_features([30], dtype=torch.bfloat16)
    assert len(model.generate(feats, mask)) == 1


# --------------------------------------------------------------------------------------------------------
# Offline Hub cache


@pytest.mark.parametrize("cls", [GraniteSpeechNarForCTC, GraniteSpeechNarModel])
def test_repo_id_loads_offline_from_the_hub_cache(cls, tiny_original, tmp_path, monkeypatch, fake_hub_cache):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    commit = fake_hub_cache(tmp_path / "cache", tiny_original)
    reference = cls.from_pretrained(tiny_original)
    # A snapshot folder named by a short revision: snapshot_download refuses it offline but transformers finds
    # it, and the original layout must still be recognised (not loaded by name into random weights).
    fake_hub_cache(tmp_path / "cache", tiny_original, repo="org/short-rev", commit="abc1234")
    for repo, revision in [
        ("org/granite-tiny", None),
        ("org/granite-tiny", commit),
        ("org/short-rev", "abc1234"),
    ]:
        model = cls.from_pretrained(repo, cache_dir=tmp_path / "cache", revision=revision)
        assert type(model) is cls
        for name, tensor in reference.state_dict().items():
            assert torch.equal(model.state_dict()[name], tensor), (revision, name)
