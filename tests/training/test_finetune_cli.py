"""``examples/finetune.py``: arguments, the model's configuration and the manifests are checked before the model
is loaded (one ``finetune.py: error: ...`` line, exit status 2); ``--bf16`` trains on a CPU; every checkpoint of a
LoRA run loads with ``from_pretrained`` and transcribes; ``--resume-from-checkpoint`` restores the adapter."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[2]
TINY = REPO / "examples" / "models" / "tiny-synth"
FIXTURES = REPO / "tests" / "fixtures" / "tiny_synth"


@pytest.fixture(scope="module")
def finetune():
    spec = importlib.util.spec_from_file_location("finetune_example", REPO / "examples" / "finetune.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(autouse=True)
def _restore_visible_devices():
    """``--device auto | cuda | cuda:N`` pins the run to one GPU through ``CUDA_VISIBLE_DEVICES``: undo it."""
    before = os.environ.get("CUDA_VISIBLE_DEVICES")
    yield
    if before is None:
        os.environ.pop("CUDA_VISIBLE_DEVICES", None)
    else:
        os.environ["CUDA_VISIBLE_DEVICES"] = before


@pytest.fixture
def no_model_load(finetune, monkeypatch):
    """Fail the test if the model is loaded: every refusal below must come before that."""

    def refuse(*args, **kwargs):
        raise AssertionError("the model was loaded before the arguments and data were checked")

    monkeypatch.setattr(finetune.GraniteSpeechNarForCTC, "from_pretrained", refuse)


@pytest.fixture
def manifest(tmp_path):
    """The four bundled test utterances, copied with their manifest (relative paths)."""
    for wav in FIXTURES.glob("*.wav"):
        shutil.copy(wav, tmp_path / wav.name)
    shutil.copy(FIXTURES / "manifest.jsonl", tmp_path / "manifest.jsonl")
    return tmp_path / "manifest.jsonl"


def _refusal(finetune, capsys, *argv) -> str:
    code = finetune.main(["--model", str(TINY), *argv])
    out = capsys.readouterr()
    assert code == 2, out
    lines = out.err.strip().splitlines()
    assert len(lines) == 1, out.err
    assert lines[0].startswith("finetune.py: error: ")
    return lines[0].removeprefix("finetune.py: error: ")


def test_argument_errors_are_one_line_before_the_model_loads(
    finetune, capsys, tmp_path, manifest, no_model_load
):
    common = ["--train-manifest", str(manifest), "--output-dir", str(tmp_path / "out")]
    assert _refusal(finetune, capsys, *common, "--preset", "editor_last_n") == (
        "--preset editor_last_n needs --num-layers N (how many of the last editor layers to train)"
    )
    assert _refusal(finetune, capsys, *common, "--preset", "editor_last_n", "--num-layers", "3") == (
        f"--num-layers 3: the editor of {TINY} has 2 layer(s); choose 1..2"
    )
    assert _refusal(finetune, capsys, *common, "--preset", "editor_last_n", "--num-layers", "0") == (
        "--num-layers must be at least 1, got 0"
    )
    assert _refusal(finetune, capsys, *common, "--preset", "lora", "--num-layers", "1") == (
        "--num-layers only applies to --preset editor_last_n, not to --preset lora"
    )
    missing = tmp_path / "nope.jsonl"
    assert _refusal(finetune, capsys, "--train-manifest", str(missing), "--output-dir", str(tmp_path)) == (
        f"--train-manifest {missing}: no such file"
    )
    assert _refusal(finetune, capsys, *common, "--eval-manifest", str(missing)) == (
        f"--eval-manifest {missing}: no such file"
    )
    assert _refusal(finetune, capsys, *common, "--resume-from-checkpoint") == (
        f"--resume-from-checkpoint: no checkpoint-N folder in --output-dir {tmp_path / 'out'} to resume from"
    )
    assert _refusal(finetune, capsys, *common, "--resume-from-checkpoint", str(missing)) == (
        f"--resume-from-checkpoint {missing}: no such checkpoint folder"
    )
    for model, message in [
        (tmp_path, f"--model {tmp_path}: no config.json in this folder (not a checkpoint folder)"),
        (tmp_path / "gone", f"--model {tmp_path / 'gone'}: no such folder"),
        (manifest, f"--model {manifest}: not a folder"),
    ]:
        argv = ["--model", str(model), "--train-manifest", str(manifest), "--output-dir", str(tmp_path)]
        assert _refusal(finetune, capsys, *argv) == message


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without CUDA")
def test_a_cuda_device_that_is_not_there_is_refused(finetune, capsys, tmp_path, manifest, no_model_load):
    message = _refusal(
        finetune,
        capsys,
        "--train-manifest",
        str(manifest),
        "--output-dir",
        str(tmp_path),
        "--device",
        "cuda:1",
    )
    if torch.version.cuda is None:
        assert message == (
            f"--device cuda:1: this torch build has no CUDA support (torch {torch.__version__}); use --device cpu"
        )
    else:
        assert message.startswith("--device cuda:1: ")
    with pytest.raises(SystemExit):
        finetune.parse_args(["--model", "m", "--train-manifest", "t", "--output-dir", "o", "--device", "gpu"])
    assert "expected auto, cpu, cuda or cuda:N, got 'gpu'" in capsys.readouterr().err


def test_a_manifest_without_usable_rows_is_refused(finetune, capsys, tmp_path, no_model_load):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(
        json.dumps({"audio_path": "gone.wav", "text": "a cat"})
        + "\n{not json\n"
        + json.dumps({"audio_path": "gone.wav", "text": " "})
        + "\n"
    )
    assert _refusal(finetune, capsys, "--train-manifest", str(bad), "--output-dir", str(tmp_path)) == (
        f"--train-manifest {bad}: no usable rows (all 3 skipped: 1 missing audio file; 1 invalid JSON; 1 empty text)"
    )
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")
    assert _refusal(finetune, capsys, "--train-manifest", str(empty), "--output-dir", str(tmp_path)) == (
        f"--train-manifest {empty}: no usable rows (the file has no rows)"
    )


def test_text_the_tokenizer_cannot_represent_is_reported_and_refused(
    finetune, capsys, tmp_path, manifest, no_model_load
):
    rows = [json.loads(line) for line in manifest.read_text().splitlines()]
    rows[1]["text"] = "Do not chase some children!"
    manifest.write_text("".join(json.dumps(row) + "\n" for row in rows))
    argv = ["--model", str(TINY), "--train-manifest", str(manifest), "--output-dir", str(tmp_path / "out")]
    assert finetune.main(argv) == 2
    out = capsys.readouterr()
    assert out.err.strip() == (
        f"finetune.py: error: --train-manifest {manifest}: 1 of 4 kept rows (25.0 %) have characters the tokenizer "
        "cannot represent, which would be trained on as <unk>: 'D' (1 row), '!' (1 row) (first lines 2); the limit "
        "is max_unknown_fraction=0.01. Normalise the text to the tokenizer's alphabet (e.g. lowercase it, spell out "
        "digits) or raise the limit. (--max-unknown-fraction sets the limit)"
    )
    # The report (printed before the refusal) names the rows and characters too.
    assert (
        "       1  kept rows with characters the tokenizer cannot represent, trained on as <unk> (lines 2): "
        "'D' (1 row), '!' (1 row)"
    ) in out.out.splitlines()


def test_lora_run_on_cpu_with_bf16_saves_loadable_checkpoints_and_resumes(
    finetune, capsys, tmp_path, manifest
):
    pytest.importorskip("peft")
    from safetensors.torch import load_file

    from granite_nar import GraniteSpeechNarForCTC, GraniteSpeechNarProcessor, transcribe

    out = tmp_path / "run"
    argv = [
        "--model", str(TINY), "--train-manifest", str(manifest), "--output-dir", str(out),
        "--preset", "lora", "--lora-rank", "4", "--max-steps", "2", "--batch-size", "2", "--eval-steps", "1",
        "--warmup-steps", "0", "--lr", "5e-3", "--bf16", "--device", "cpu",
    ]  # fmt: skip
    assert finetune.main(argv) == 0, capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == ["checkpoint-1", "checkpoint-2", "final"]

    # An intermediate checkpoint is a complete model folder: weights (LoRA merged), config and processor …
    checkpoint = out / "checkpoint-1"
    model, info = GraniteSpeechNarForCTC.from_pretrained(checkpoint, output_loading_info=True)
    assert not any(info[key] for key in ("missing_keys", "unexpected_keys", "mismatched_keys"))
    processor = GraniteSpeechNarProcessor.from_pretrained(checkpoint)
    text = transcribe([sorted(FIXTURES.glob("*.wav"))[0]], model=model, processor=processor)
    assert len(text) == 1 and isinstance(text[0], str) and text[0]
    # … whose merged weights are the base model plus the saved adapter (in checkpoint/adapter).
    from peft import PeftModel

    base = GraniteSpeechNarForCTC.from_pretrained(TINY)
    reference = PeftModel.from_pretrained(base, checkpoint / "adapter").merge_and_unload().state_dict()
    saved = load_file(checkpoint / "model.safetensors")
    assert any(not torch.equal(saved[k], v) for k, v in load_file(TINY / "model.safetensors").items())
    for name, tensor in saved.items():
        torch.testing.assert_close(tensor, reference[name], rtol=0, atol=1e-6, msg=name)

    # Resuming from the last checkpoint restores its adapter (not a fresh one), optimizer and step: with no
    # step left to take, the final model is the checkpoint's.
    shutil.rmtree(out / "final")
    assert finetune.main([*argv, "--resume-from-checkpoint"]) == 0
    assert f"resuming from {out / 'checkpoint-2'}" in capsys.readouterr().out
    final, last = (
        load_file(out / "final" / "model.safetensors"),
        load_file(out / "checkpoint-2" / "model.safetensors"),
    )
    assert all(torch.equal(final[k], last[k]) for k in last)
