"""``granite_nar.checkpoints.conversion``: original (remote-code) checkpoints converted to the native layout, the
direct load and the conversion giving the same model, and their failures.

Everything runs on tiny synthetic checkpoints written in the exact original layout (docs/reference_behaviour.md §6.2, §6.3) and
on the reference fixture. No network. The name mapping itself is tested in ``test_original_layout.py``, the
direct load path alone in ``test_loading.py``.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import huggingface_hub.constants
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file
from testers import FIXTURES, REPO, GraniteSpeechNarForCTCModelTester

from granite_nar import GraniteSpeechNarForCTC
from granite_nar.checkpoints.conversion import ConversionError, VerificationResult, convert_checkpoint
from granite_nar.checkpoints.loading import ModelNotFoundError
from granite_nar.checkpoints.original_layout import OriginalLayoutError
from granite_nar.testing.synthetic_checkpoint import write_synthetic_original_checkpoint

REF = FIXTURES / "reference_tiny"
SCRIPT = REPO / "conversion" / "convert_granite_speech_nar.py"
model_tester = GraniteSpeechNarForCTCModelTester()


def _assert_same_outputs(a, b, lengths=(40, 23), atol=0.0):
    feats, mask = model_tester.prepare_features(lengths, dtype=a.dtype)
    out_a = a.generate(feats, mask, return_dict_in_generate=True)
    out_b = b.generate(feats, mask, return_dict_in_generate=True)
    assert [t.tolist() for t in out_a.draft_ids] == [t.tolist() for t in out_b.draft_ids]
    assert [t.tolist() for t in out_a.sequences] == [t.tolist() for t in out_b.sequences]
    for x, y in zip(out_a.logits, out_b.logits, strict=True):
        torch.testing.assert_close(x, y, atol=atol, rtol=0)


def _sha(folder: Path) -> dict[str, str]:
    return {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir()) if p.is_file()
    }


def _edit_config(folder: Path, edit) -> None:
    config = json.loads((folder / "config.json").read_text())
    edit(config)
    (folder / "config.json").write_text(json.dumps(config))


# --------------------------------------------------------------------------------------------------------
# The reference fixture through both paths


@pytest.fixture(scope="module")
def fixture_converted(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("ref") / "native"
    report = convert_checkpoint(REF / "original", out)
    assert report.verification.passed
    return out


@pytest.mark.parametrize("path", ["direct", "converted"])
def test_reference_fixture_reproduced_by_both_paths(path, fixture_converted):
    """Golden ids exactly and logits to 1e-5, for all six cases in one padded batch."""
    folder = REF / "original" if path == "direct" else fixture_converted
    model = GraniteSpeechNarForCTC.from_pretrained(folder)
    cases = load_file(REF / "cases.safetensors")
    expected = json.loads((REF / "expected.json").read_text())
    lengths = expected["lengths"]
    feats = torch.zeros(len(lengths), max(lengths), 160)
    for i, n in enumerate(lengths):
        feats[i, :n] = cases[f"features.{i}"]
    mask = torch.arange(max(lengths))[None, :] < torch.tensor(lengths)[:, None]
    audio = model.model.encode_audio(feats, mask)
    embeds = {"audio_embeds": audio.audio_embeds, "audio_lengths": audio.audio_lengths}
    one = model.generate(**embeds, input_ids=audio.draft_ids, return_dict_in_generate=True)
    two = model.generate(**embeds, input_ids=one.sequences)
    assert [t.tolist() for t in audio.draft_ids] == expected["draft_ids"]
    assert [t.tolist() for t in one.sequences] == expected["edited_ids"]
    assert [t.tolist() for t in two] == expected["edited_ids_2_steps"]
    for i, logits in enumerate(one.logits):
        torch.testing.assert_close(logits, cases[f"logits.{i}"], atol=1e-5, rtol=0)


def test_converted_fixture_folder_is_native(fixture_converted):
    config = json.loads((fixture_converted / "config.json").read_text())
    assert config["model_type"] == "granite_speech_nar" and "auto_map" not in config
    assert config["text_config"]["model_type"] == "granite_speech_nar_text"
    assert config["encoder_config"]["vocabulary_size"] == 97 and config["encoder_config"][
        "cat_hidden_layers"
    ] == [1, 2, 3]
    with safe_open(fixture_converted / "model.safetensors", framework="pt") as f:
        names = set(f.keys())
    assert "model.projector.qformer.pos_emb" in names and "lm_head.weight" not in names
    assert not any("layer_norms" in n or "out_norm" in n or "attn_norm" in n for n in names)
    fe = json.loads((fixture_converted / "preprocessor_config.json").read_text())
    assert (
        fe["feature_size"] == 80 and fe["frame_stacking"] == 2 and "n_mels" not in fe and "auto_map" not in fe
    )
    assert fe["feature_extractor_type"] == "GraniteSpeechNarFeatureExtractor"
    assert (fixture_converted / "tokenizer.json").read_bytes() == (
        REF / "original" / "tokenizer.json"
    ).read_bytes()


# --------------------------------------------------------------------------------------------------------
# Synthetic checkpoints: direct == converted


@pytest.mark.parametrize("sharded", [False, True], ids=["single", "sharded"])
def test_direct_load_equals_converted_load(sharded, tmp_path):
    source = write_synthetic_original_checkpoint(
        tmp_path / "orig", model_tester.get_config(), seed=1, max_shard_size="40KB" if sharded else None
    )
    assert (source / "model.safetensors.index.json").is_file() == sharded
    report = convert_checkpoint(source, tmp_path / "native", max_shard_size="40KB" if sharded else "5GB")
    assert report.verification.passed and report.verification.max_abs_logit_diff == 0.0
    assert ("model.safetensors.index.json" in report.weight_files) == sharded
    direct = GraniteSpeechNarForCTC.from_pretrained(source)
    converted = GraniteSpeechNarForCTC.from_pretrained(tmp_path / "native")
    _assert_same_outputs(direct, converted)
    for name, tensor in converted.state_dict().items():
        assert torch.equal(tensor, direct.state_dict()[name]), name


# --------------------------------------------------------------------------------------------------------
# Strict failures: every bad case names the tensor or field


def _load_direct(folder):
    return GraniteSpeechNarForCTC.from_pretrained(folder)


def _convert(folder):
    return convert_checkpoint(folder, folder.parent / "out")


BAD_WEIGHTS = {
    "missing": (
        lambda t: t.pop("encoder.layers.1.conv.batch_norm.running_var"),
        r"missing tensors \(1\): model\.encoder\.layers\.1\.conv\.batch_norm\.running_var",
    ),
    "extra_unknown_name": (
        lambda t: t.__setitem__("decoder.extra.weight", torch.zeros(2)),
        r"unexpected tensor 'decoder\.extra\.weight'",
    ),
    "extra_known_prefix": (
        lambda t: t.__setitem__("encoder.layers.9.ff1.up_proj.weight", torch.zeros(2)),
        r"unexpected tensors \(1\): model\.encoder\.layers\.9\.ff1\.up_proj\.weight",
    ),
    "wrong_shape": (
        lambda t: t.__setitem__("projector.query", torch.zeros(1, 4, 24)),
        r"model\.projector\.qformer\.queries: checkpoint \(1, 4, 24\) vs model \(1, 3, 24\)",
    ),
    "layernorm_weight_not_identity": (
        lambda t: t["projector.layer_norms.1.weight"].__setitem__(3, 1.5),
        r"projector\.layer_norms\.1\.weight is not an identity LayerNorm weight",
    ),
    "layernorm_bias_not_identity": (
        lambda t: t["projector.qformer.layers.0.mlp_norm.bias"].__setitem__(0, 1e-7),
        r"projector\.qformer\.layers\.0\.mlp_norm\.bias is not an identity LayerNorm bias",
    ),
    "untied_head": (
        lambda t: t.__setitem__("language_model.lm_head.weight", torch.randn(61, 24)),
        r"language_model\.lm_head\.weight differs from the token embeddings",
    ),
}


BAD_CONFIGS = {
    "unknown_top_field": (lambda c: c.__setitem__("use_magic", True), r"unknown field \.use_magic"),
    "unknown_encoder_field": (
        lambda c: c["encoder_config"].__setitem__("num_experts", 4),
        r"unknown field encoder_config\.num_experts",
    ),
    "unknown_projector_field": (
        lambda c: c["projector_config"].__setitem__("gate", 1),
        r"unknown field projector_config\.gate",
    ),
    "old_snapshot_head": (
        lambda c: c["encoder_config"].__setitem__("bpe_output_dim", 62),
        r"vocab_size \+ 1 .*revision 99a4df9",
    ),
}


@pytest.mark.parametrize("load", [_load_direct, _convert], ids=["direct", "convert"])
@pytest.mark.parametrize("case", sorted(BAD_WEIGHTS))
def test_bad_weights_fail_with_the_tensor_name(case, load, original_copy, edit_weights):
    edit, message = BAD_WEIGHTS[case]
    edit_weights(original_copy, edit)
    with pytest.raises(OriginalLayoutError, match=message):
        load(original_copy)
    assert not (original_copy.parent / "out").exists()


@pytest.mark.parametrize("load", [_load_direct, _convert], ids=["direct", "convert"])
@pytest.mark.parametrize("case", sorted(BAD_CONFIGS))
def test_bad_config_fails_with_the_field_name(case, load, original_copy):
    edit, message = BAD_CONFIGS[case]
    _edit_config(original_copy, edit)
    with pytest.raises(OriginalLayoutError, match=message):
        load(original_copy)


def test_tied_head_equal_to_embeddings_is_accepted(original_copy, tmp_path, edit_weights):
    edit_weights(
        original_copy,
        lambda t: t.__setitem__(
            "language_model.lm_head.weight", t["language_model.model.embed_tokens.weight"].clone()
        ),
    )
    report = convert_checkpoint(original_copy, tmp_path / "native", verify=False)
    assert report.dropped_tied_head
    assert report.num_original_tensors == report.num_native_tensors + len(report.dropped_identity_norms) + 1


@pytest.mark.parametrize("load", [_load_direct, _convert], ids=["direct", "convert"])
def test_old_snapshot_layout_is_refused_naming_the_revision(load, tmp_path):
    source = write_synthetic_original_checkpoint(
        tmp_path / "old", model_tester.get_config(), old_snapshot=True
    )
    assert "llm_config" in json.loads((source / "config.json").read_text())
    with pytest.raises(OriginalLayoutError, match=r"7d20732d.*revision 99a4df9"):
        load(source)


# --------------------------------------------------------------------------------------------------------
# Idempotence and output safety


def test_converting_a_native_checkpoint_is_refused_and_changes_nothing(fixture_converted, tmp_path):
    before = _sha(fixture_converted)
    with pytest.raises(ConversionError, match="already in the native layout"):
        convert_checkpoint(fixture_converted, tmp_path / "again")
    assert _sha(fixture_converted) == before and not (tmp_path / "again").exists()


def test_output_folder_guards(tiny_original, tmp_path):
    with pytest.raises(ConversionError, match="overlaps the input"):
        convert_checkpoint(tiny_original, tiny_original)
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "keep.txt").write_text("mine")
    with pytest.raises(ConversionError, match="not empty"):
        convert_checkpoint(tiny_original, busy)
    assert (busy / "keep.txt").read_text() == "mine"
    report = convert_checkpoint(tiny_original, busy, overwrite=True, verify=False)
    assert report.verification is None and not (busy / "keep.txt").exists()
    first = _sha(busy)
    convert_checkpoint(tiny_original, busy, overwrite=True, verify=False)
    assert _sha(busy) == first  # deterministic: converting twice writes the same bytes


def test_failed_verification_keeps_nothing_at_the_output(tiny_original, tmp_path, monkeypatch):
    import granite_nar.checkpoints.conversion as conversion

    def broken(reference, converted):  # stands for a converted model that edits differently
        return VerificationResult(torch.float32, [1], True, False, 0.0, 1e-5)

    monkeypatch.setattr(conversion, "_compare_outputs", broken)
    with pytest.raises(ConversionError, match="FAILED.*kept at"):
        convert_checkpoint(tiny_original, tmp_path / "native")
    assert not (tmp_path / "native").exists() and (tmp_path / ".native.partial").is_dir()


# --------------------------------------------------------------------------------------------------------
# dtype


def test_bf16_checkpoint_stays_bf16(tmp_path):
    source = write_synthetic_original_checkpoint(
        tmp_path / "orig", model_tester.get_config(), dtype=torch.bfloat16
    )
    report = convert_checkpoint(source, tmp_path / "native")
    # Same bf16 weights and fp32 RoPE frequencies on both sides, so the logits agree exactly.
    assert report.dtype == torch.bfloat16 and report.verification.max_abs_logit_diff == 0.0
    direct = GraniteSpeechNarForCTC.from_pretrained(source)
    native = GraniteSpeechNarForCTC.from_pretrained(tmp_path / "native")
    assert direct.model.language_model.rotary_emb.inv_freq.dtype == torch.float32
    for (name, a), (_, b) in zip(direct.named_buffers(), native.named_buffers(), strict=True):
        assert a.dtype == b.dtype and torch.equal(a, b), name
    stored = load_file(tmp_path / "native" / "model.safetensors")
    assert {t.dtype for t in stored.values()} == {torch.bfloat16, torch.int64}
    assert json.loads((tmp_path / "native" / "config.json").read_text())["dtype"] == "bfloat16"
    assert direct.dtype == torch.bfloat16  # default = "auto"
    assert GraniteSpeechNarForCTC.from_pretrained(source, dtype="auto").dtype == torch.bfloat16
    assert GraniteSpeechNarForCTC.from_pretrained(source, dtype=torch.float32).dtype == torch.float32

    upcast = convert_checkpoint(source, tmp_path / "fp32", dtype="float32", verify=False)
    assert upcast.dtype == torch.float32
    assert {t.dtype for t in load_file(tmp_path / "fp32" / "model.safetensors").values()} == {
        torch.float32,
        torch.int64,
    }


# --------------------------------------------------------------------------------------------------------
# Offline Hub cache


def test_convert_from_the_offline_hub_cache(tiny_original, tmp_path, monkeypatch, fake_hub_cache):
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    fake_hub_cache(tmp_path / "cache", tiny_original)
    report = convert_checkpoint(
        "org/granite-tiny", tmp_path / "native", cache_dir=tmp_path / "cache", verify=False
    )
    assert "snapshots" in str(report.source) and report.num_native_tensors == 112


# --------------------------------------------------------------------------------------------------------
# Processor files


def test_tokenizer_files_copied_without_auto_map(original_copy, tmp_path):
    config = json.loads((original_copy / "tokenizer_config.json").read_text())
    config["auto_map"] = {"AutoTokenizer": ["tokenization_remote.Tok", None]}
    (original_copy / "tokenizer_config.json").write_text(json.dumps(config))
    (original_copy / "special_tokens_map.json").write_text(json.dumps({"eos_token": "<|end_of_text|>"}))
    (original_copy / "modeling_granite_speech_nar.py").write_text("raise RuntimeError('remote code')\n")
    report = convert_checkpoint(original_copy, tmp_path / "native", verify=False)
    assert "special_tokens_map.json" in report.processor_files
    assert report.skipped_files == ["modeling_granite_speech_nar.py"]
    written = json.loads((tmp_path / "native" / "tokenizer_config.json").read_text())
    assert "auto_map" not in written and written["eos_token"] == "<|end_of_text|>"

    from transformers import PreTrainedTokenizerFast

    tokenizer = PreTrainedTokenizerFast.from_pretrained(tmp_path / "native")
    assert tokenizer.convert_tokens_to_ids("<|end_of_text|>") == 60
    assert tokenizer.decode([5, 60, 7], skip_special_tokens=True) == "w5 w7"


# --------------------------------------------------------------------------------------------------------
# The script


def _script():
    spec = importlib.util.spec_from_file_location("convert_granite_speech_nar", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_script_converts_and_pushes_to_a_mocked_hub(tiny_original, tmp_path, monkeypatch, capsys):
    calls = []

    class FakeApi:
        def __init__(self, token=None):
            calls.append(("init", token))

        def create_repo(self, repo_id, **kwargs):
            calls.append(("create_repo", repo_id, kwargs))

        def upload_folder(self, **kwargs):
            calls.append(("upload_folder", kwargs))
            return "https://example.invalid/commit/1"

    monkeypatch.setattr(huggingface_hub, "HfApi", FakeApi)
    out = tmp_path / "native"
    code = _script().main(
        ["--input", str(tiny_original), "--output", str(out), "--push-to-hub", "me/granite-native"]
    )
    printed = capsys.readouterr().out
    assert code == 0 and "verification PASSED" in printed and "peak resident memory" in printed
    assert calls[1] == (
        "create_repo",
        "me/granite-native",
        {"repo_type": "model", "private": None, "exist_ok": True},
    )
    upload = calls[2][1]
    assert upload["folder_path"] == str(out) and upload["repo_id"] == "me/granite-native"


def test_script_reports_refusals_and_shows_the_mapping(fixture_converted, tmp_path, capsys):
    script = _script()
    assert script.main(["--input", str(fixture_converted), "--output", str(tmp_path / "x")]) == 1
    assert "already in the native layout" in capsys.readouterr().err
    assert script.main(["--show-mapping"]) == 0
    shown = capsys.readouterr().out
    assert (
        "projector\\.window_positions$" in shown
        and "bpe_output_dim" in shown
        and "n_mels -> feature_size" in shown
    )


# --------------------------------------------------------------------------------------------------------
# The script: every user error is one line on stderr and a non-zero status


def _half(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])  # what `head -c` leaves


SCRIPT_ERRORS = {
    "missing_input": (
        lambda src, out: (src.parent / "nope_dir", out),
        lambda src, out: f"no such model folder: {src.parent / 'nope_dir'}",
    ),
    "mistyped_bare_name": (
        lambda src, out: ("nope_dir", out),
        lambda src, out: "no such model folder: nope_dir",
    ),
    "not_a_checkpoint": (
        lambda src, out: ((src / "config.json").unlink(), src)[1:] + (out,),
        lambda src, out: f"no config.json in {src}: not a model folder",
    ),
    "another_model": (
        lambda src, out: (
            _edit_config(src, lambda c: c.update(model_type="wav2vec2", auto_map={})),
            src,
            out,
        )[1:],
        lambda src, out: "model_type is 'wav2vec2', not 'granite_speech_nar'",
    ),
    "config_not_json": (
        lambda src, out: ((src / "config.json").write_text("{ nope"), src, out)[1:],
        lambda src, out: f"{src / 'config.json'} is not valid JSON",
    ),
    "output_not_empty": (
        lambda src, out: (out.mkdir(), (out / "keep.txt").write_text("mine"), src, out)[2:],
        lambda src, out: f"{out} is not empty; pass overwrite=True (--overwrite)",
    ),
    "output_is_a_file": (
        lambda src, out: (out.write_text("x"), src, out)[1:],
        lambda src, out: f"{out} exists and is not a folder",
    ),
    "unknown_field": (
        lambda src, out: (_edit_config(src, lambda c: c["encoder_config"].update(num_experts=4)), src, out)[
            1:
        ],
        lambda src, out: "unknown field encoder_config.num_experts",
    ),
    "truncated_weights": (
        lambda src, out: (_half(src / "model.safetensors"), src, out)[1:],
        lambda src, out: f"{src / 'model.safetensors'} is truncated",
    ),
    "corrupt_weights": (
        lambda src, out: ((src / "model.safetensors").write_bytes(b"\xff" * 64), src, out)[1:],
        lambda src, out: f"{src / 'model.safetensors'} is truncated or not a safetensors file",
    ),
    "missing_weights": (
        lambda src, out: ((src / "model.safetensors").unlink(), src, out)[1:],
        lambda src, out: f"no model.safetensors (nor model.safetensors.index.json) in {src}",
    ),
    "hub_id_offline": (
        lambda src, out: ("nobody/granite-nowhere", out),
        lambda src, out: "nobody/granite-nowhere is not in the Hub cache",
    ),
}


@pytest.mark.parametrize("case", sorted(SCRIPT_ERRORS))
def test_script_user_errors_are_one_line(case, original_copy, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    prepare, expected = SCRIPT_ERRORS[case]
    out = tmp_path / "out_dir"
    src, out = prepare(original_copy, out)
    code = _script().main(["--input", str(src), "--output", str(out), "--no-verify"])
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert code == 1 and captured.out == ""
    assert len(lines) == 1, lines
    assert lines[0].startswith("convert_granite_speech_nar.py: error: ")
    assert expected(original_copy, out) in lines[0]
    assert "Traceback" not in captured.err


def test_script_checks_the_shard_size_before_loading(original_copy, tmp_path, capsys):
    code = _script().main(
        ["--input", str(original_copy), "--output", str(tmp_path / "o"), "--max-shard-size", "5 gigs"]
    )
    assert code == 1
    assert "max shard size '5 gigs' is not a size" in capsys.readouterr().err


def test_script_process_prints_no_traceback(tmp_path):
    """The real process (the reported case: 17-95 line tracebacks for a missing --input folder)."""
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--input", "nope_dir", "--output", "out_dir"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
        timeout=300,
    )
    assert proc.returncode == 1 and proc.stdout == ""
    assert proc.stderr.splitlines() == [
        f"convert_granite_speech_nar.py: error: no such model folder: nope_dir (looked for {tmp_path / 'nope_dir'}). "
        "Check the path; a Hugging Face Hub id has the form org/name, e.g. ibm-granite/granite-speech-4.1-2b-nar."
    ]


def test_script_debug_shows_the_traceback(tmp_path):
    with pytest.raises(ModelNotFoundError):
        _script().main(["--input", str(tmp_path / "nope"), "--output", str(tmp_path / "o"), "--debug"])
