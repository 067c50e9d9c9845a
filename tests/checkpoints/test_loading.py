"""``granite_nar.checkpoints.loading``: original-layout checkpoints loaded directly by ``from_pretrained``
(base model and Auto classes, dtypes), repo ids resolved offline from the Hub cache, and the failures: a
mistyped folder refused without the Hub, Hub ids that cannot be had, missing, truncated or corrupt files
named with what to do. No network."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import huggingface_hub
import huggingface_hub.constants
import pytest
import torch
from testers import GraniteSpeechNarForCTCModelTester
from transformers import AutoModel, AutoModelForCTC

import granite_nar.checkpoints.loading as loading
from granite_nar import CheckpointFileError, GraniteSpeechNarForCTC, GraniteSpeechNarModel, ModelNotFoundError
from granite_nar.checkpoints.loading import is_hub_id

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


# --------------------------------------------------------------------------------------------------------
# Where the checkpoint is: mistyped folders never reach the Hub, Hub failures say what to do


@pytest.mark.parametrize("ref", ["tiny-synth", "./tiny-synth", "/no/such/model", "a/b/c", "my model", "org/"])
def test_mistyped_folder_is_refused_without_the_hub(ref, no_hub, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert not is_hub_id(ref)
    with pytest.raises(ModelNotFoundError, match=f"no such model folder: {re.escape(ref)} ") as info:
        GraniteSpeechNarForCTC.from_pretrained(ref)
    assert "org/name" in str(info.value)
    with pytest.raises(ModelNotFoundError, match="no such model folder"):
        GraniteSpeechNarModel.from_pretrained(ref)


def test_hub_ids_are_org_slash_name():
    assert is_hub_id("ibm-granite/granite-speech-4.1-2b-nar") and is_hub_id("org/name_1.2")
    assert not any(map(is_hub_id, ["gpt2", "org/na..me", "org--x/y", "/abs/x", "org/name/", "~/x"]))


def test_offline_hub_id_not_in_the_cache_says_what_to_do(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(ModelNotFoundError) as info:
        GraniteSpeechNarForCTC.from_pretrained("nobody/granite-nowhere", cache_dir=tmp_path / "cache")
    message = str(info.value)
    for part in (
        "nobody/granite-nowhere is not in the Hub cache",
        str(tmp_path / "cache"),
        "HF_HUB_OFFLINE=1",
        "hf download nobody/granite-nowhere",
        "HF_HUB_CACHE",
        "local model folder",
    ):
        assert part in message, part


def _raise(error):
    def hub(*args, **kwargs):
        raise error

    return hub


def test_unreachable_hub_says_what_to_do(monkeypatch):
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        raise ConnectionError("Name or service not known")
    except ConnectionError as cause:
        try:
            raise LocalEntryNotFoundError("cannot find the requested files") from cause
        except LocalEntryNotFoundError as err:
            error = err
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(huggingface_hub, "snapshot_download", _raise(error))
    monkeypatch.setattr(loading, "resolve_config_folder", lambda *args, **kwargs: None)
    with pytest.raises(ModelNotFoundError) as info:
        GraniteSpeechNarForCTC.from_pretrained("nobody/granite-nowhere")
    message = str(info.value)
    assert message.startswith("cannot reach the Hugging Face Hub to fetch nobody/granite-nowhere")
    assert "Name or service not known" in message and "local model folder" in message
    assert "HF_HUB_OFFLINE=1" in message


def test_unknown_repo_says_what_to_do(monkeypatch):
    from huggingface_hub.errors import RepositoryNotFoundError

    error = RepositoryNotFoundError.__new__(RepositoryNotFoundError)
    Exception.__init__(error, "404 Client Error")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(huggingface_hub, "snapshot_download", _raise(error))
    monkeypatch.setattr(loading, "resolve_config_folder", lambda *args, **kwargs: None)
    with pytest.raises(
        ModelNotFoundError, match=r"nobody/granite-nowhere was not found on the Hugging Face Hub"
    ):
        GraniteSpeechNarForCTC.from_pretrained("nobody/granite-nowhere")


# --------------------------------------------------------------------------------------------------------
# Broken files are named, with what to do


@pytest.fixture(scope="module")
def tiny_native(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("native") / "tiny"
    GraniteSpeechNarForCTC(model_tester.get_config()).save_pretrained(folder)
    return folder


@pytest.fixture(params=["native", "original"])
def broken(request, tiny_native, tiny_original, tmp_path) -> Path:
    """A private copy of a native or an original-layout folder, to break."""
    folder = tmp_path / request.param
    shutil.copytree(tiny_native if request.param == "native" else tiny_original, folder)
    return folder


def _truncate(path: Path, size: int | None = None) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2 if size is None else size])  # what `head -c` leaves


@pytest.mark.parametrize("cut", [None, 5, 100], ids=["half", "5_bytes", "in_the_header"])
def test_truncated_weights_name_the_file(cut, broken):
    weights = broken / "model.safetensors"
    _truncate(weights, cut)
    with pytest.raises(CheckpointFileError) as info:
        GraniteSpeechNarForCTC.from_pretrained(broken)
    message = str(info.value)
    assert message.startswith(f"{weights} is truncated") and "Re-download the checkpoint" in message


def test_corrupt_header_names_the_file(broken):
    weights = broken / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[8:16] = b"\x00garbage"
    weights.write_bytes(bytes(data))
    with pytest.raises(CheckpointFileError, match=rf"^{re.escape(str(weights))} is corrupt .*Re-download"):
        GraniteSpeechNarForCTC.from_pretrained(broken)


def test_missing_weights_name_the_folder(broken):
    (broken / "model.safetensors").unlink()
    with pytest.raises(CheckpointFileError) as info:
        GraniteSpeechNarForCTC.from_pretrained(broken)
    message = str(info.value)
    assert f"no model.safetensors (nor model.safetensors.index.json) in {broken}" in message
    assert "the weights are missing" in message and "re-download the checkpoint" in message


def test_missing_shard_names_the_file(tmp_path):
    folder = tmp_path / "sharded"
    GraniteSpeechNarForCTC(model_tester.get_config()).save_pretrained(folder, max_shard_size="40KB")
    shards = sorted(folder.glob("model-*.safetensors"))
    assert len(shards) > 1
    shards[-1].unlink()
    with pytest.raises(
        CheckpointFileError,
        match=rf"{re.escape(str(shards[-1]))} is missing \(model\.safetensors\.index\.json lists it\)",
    ):
        GraniteSpeechNarForCTC.from_pretrained(folder)


def test_config_that_is_not_json_names_the_file(broken):
    (broken / "config.json").write_text("{ not json")
    with pytest.raises(
        OSError, match=rf"{re.escape(str(broken / 'config.json'))} is not valid JSON .*re-download"
    ):
        GraniteSpeechNarForCTC.from_pretrained(broken)


def test_folder_without_config_is_not_a_model_folder(tmp_path):
    (tmp_path / "model.safetensors").write_bytes(b"")
    with pytest.raises(
        CheckpointFileError, match=rf"no config\.json in {re.escape(str(tmp_path))}: not a model folder"
    ):
        GraniteSpeechNarForCTC.from_pretrained(tmp_path)


def test_truncated_file_in_the_hub_cache_names_the_repo(tiny_native, tmp_path, monkeypatch, fake_hub_cache):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    commit = fake_hub_cache(tmp_path / "cache", tiny_native)
    weights = tmp_path / "cache" / "models--org--granite-tiny" / "snapshots" / commit / "model.safetensors"
    _truncate(weights)
    with pytest.raises(CheckpointFileError) as info:
        GraniteSpeechNarForCTC.from_pretrained("org/granite-tiny", cache_dir=tmp_path / "cache")
    message = str(info.value)
    assert message.startswith(f"{weights} is truncated")
    assert "hf download org/granite-tiny --force-download" in message
