"""``granite-nar finetune``, run in-process through ``granite_nar_cli.main``: arguments, the model's configuration
and the manifests are checked before the model is loaded (one ``granite-nar: error: ...`` line, exit status 2);
``--bf16`` trains on a CPU; every checkpoint loads with ``from_pretrained`` and ``granite-nar transcribe``;
``--resume-from-checkpoint`` reproduces the uninterrupted run; ``--eval-at-start`` makes the starting model a
candidate for ``--keep-best-only``; ``--minutes`` trains for a wall-clock budget; ``finetune_summary.json``
records the run. ``examples/finetune.py`` is the same command."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import granite_nar_cli
import granite_nar_cli.finetune as cli_finetune
from granite_nar import GraniteSpeechNarForCTC
from granite_nar.training import PRESETS
from granite_nar.training.finetune import (
    NUM_LAYERS_PRESETS,
    STATE_NAME,
    SUMMARY_NAME,
    FinetuneOptions,
)

REPO = Path(__file__).resolve().parents[2]
TINY = REPO / "examples" / "models" / "tiny-synth"
FIXTURES = REPO / "tests" / "fixtures" / "tiny_synth"
ERROR = "granite-nar: error: "


def finetune(*argv) -> int:
    return granite_nar_cli.main(["finetune", *map(str, argv)])


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
def no_model_load(monkeypatch):
    """Fail the test if the model is loaded: every refusal below must come before that."""

    def refuse(*args, **kwargs):
        raise AssertionError("the model was loaded before the arguments and data were checked")

    monkeypatch.setattr(GraniteSpeechNarForCTC, "from_pretrained", refuse)


@pytest.fixture
def manifest(tmp_path):
    """The four bundled test utterances, copied with their manifest (relative paths)."""
    for wav in FIXTURES.glob("*.wav"):
        shutil.copy(wav, tmp_path / wav.name)
    shutil.copy(FIXTURES / "manifest.jsonl", tmp_path / "manifest.jsonl")
    return tmp_path / "manifest.jsonl"


def _refusal(capsys, *argv, model=TINY) -> str:
    code = finetune("--model", model, *argv)
    out = capsys.readouterr()
    assert code == 2, out
    lines = out.err.strip().splitlines()
    assert len(lines) == 1, out.err
    assert lines[0].startswith(ERROR)
    return lines[0].removeprefix(ERROR)


def _summary(out: Path) -> dict:
    return json.loads((out / SUMMARY_NAME).read_text())


def _weights(folder: Path) -> dict[str, torch.Tensor]:
    return load_file(folder / "model.safetensors")


def _same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


# -- the command line: refusals before the model loads ---------------------------------------------------------


def test_argument_errors_are_one_line_before_the_model_loads(capsys, tmp_path, manifest, no_model_load):
    common = ["--train-manifest", manifest, "--output-dir", tmp_path / "out"]
    for preset in ("editor_last_n", "editor_last_n_head"):
        assert _refusal(capsys, *common, "--preset", preset) == (
            f"--preset {preset} needs --num-layers N (how many of the last editor layers to train)"
        )
        assert _refusal(capsys, *common, "--preset", preset, "--num-layers", "3") == (
            f"--num-layers 3: the editor of {TINY} has 2 layer(s); choose 1..2"
        )
    assert _refusal(capsys, *common, "--preset", "editor_last_n", "--num-layers", "0") == (
        "--num-layers must be at least 1, got 0"
    )
    assert _refusal(capsys, *common, "--preset", "lora", "--num-layers", "1") == (
        "--num-layers only applies to --preset editor_last_n or editor_last_n_head, not to --preset lora"
    )
    missing = tmp_path / "nope.jsonl"
    assert _refusal(capsys, "--train-manifest", missing, "--output-dir", tmp_path) == (
        f"--train-manifest {missing}: no such file"
    )
    assert _refusal(capsys, *common, "--eval-manifest", missing) == f"--eval-manifest {missing}: no such file"
    assert _refusal(capsys, *common, "--resume-from-checkpoint") == (
        f"--resume-from-checkpoint: no checkpoint-N folder in --output-dir {tmp_path / 'out'} to resume from"
    )
    assert _refusal(capsys, *common, "--resume-from-checkpoint", missing) == (
        f"--resume-from-checkpoint {missing}: no such checkpoint folder"
    )
    # The options of the wall-clock budget and of the evaluation before the first step.
    assert _refusal(capsys, *common, "--minutes", "0") == "--minutes must be above 0, got 0.0"
    assert _refusal(capsys, *common, "--eval-minutes", "1") == (
        "--eval-minutes only applies to a run with --minutes (use --eval-steps)"
    )
    assert _refusal(capsys, *common, "--minutes", "1", "--eval-minutes", "-1") == (
        "--eval-minutes must be above 0, got -1.0"
    )
    assert _refusal(capsys, *common, "--eval-at-start") == (
        "--eval-at-start needs --eval-manifest (the dev set it scores)"
    )
    assert _refusal(capsys, *common, "--eval-manifest", manifest, "--metric", "edit3_cer") == (
        "--metric edit3_cer: not a metric of this evaluation (--num-editing-steps 2); choose one of loss, "
        "draft_cer, draft_wer, edit1_cer, edit1_wer, edit2_cer, edit2_wer"
    )
    # The sequence-level stage's settings.
    assert _refusal(capsys, *common, "--objective", "sequence", "--group-size", "1") == (
        "--objective sequence: group_size must be at least 2 (a group needs a baseline), got 1."
    )
    assert _refusal(capsys, *common, "--objective", "sequence", "--sample-temperature", "0") == (
        "--objective sequence: temperature must be positive, got 0.0."
    )
    # --model: granite-nar's own checks (before torch is imported), then the checkpoint folder's.
    argv = ["--train-manifest", manifest, "--output-dir", tmp_path]
    assert _refusal(capsys, *argv, model=tmp_path) == (
        f"--model {tmp_path}: no config.json in this folder (not a checkpoint folder)"
    )
    assert _refusal(capsys, *argv, model=tmp_path / "gone") == (
        f"--model {tmp_path / 'gone'}: no such model folder ({tmp_path / 'gone'} does not exist). Check the path; "
        "a Hugging Face Hub id has the form org/name, e.g. ibm-granite/granite-speech-4.1-2b-nar"
    )
    assert _refusal(capsys, *argv, model=manifest) == (
        f"--model {manifest}: a file, not a model folder; pass the folder that holds its config.json and "
        "model.safetensors"
    )
    # examples/finetune.py is the same command.
    spec = importlib.util.spec_from_file_location("finetune_example", REPO / "examples" / "finetune.py")
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    assert example.main(["--model", str(TINY), *map(str, common), "--preset", "editor_last_n"]) == 2
    assert capsys.readouterr().err == (
        f"{ERROR}--preset editor_last_n needs --num-layers N (how many of the last editor layers to train)\n"
    )


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without CUDA")
def test_a_cuda_device_that_is_not_there_is_refused(capsys, tmp_path, manifest, no_model_load):
    message = _refusal(capsys, "--train-manifest", manifest, "--output-dir", tmp_path, "--device", "cuda:1")
    if torch.version.cuda is None:
        assert message == (
            f"--device cuda:1: this torch build has no CUDA support (torch {torch.__version__}); use --device cpu"
        )
    else:
        assert message.startswith("--device cuda:1: ")
    assert finetune("--model", "m", "--train-manifest", "t", "--output-dir", "o", "--device", "gpu") == 2
    assert (
        "granite-nar finetune: error: argument --device: expected auto, cpu, cuda or cuda:N, got 'gpu'"
        in capsys.readouterr().err
    )


def test_a_manifest_without_usable_rows_is_refused(capsys, tmp_path, no_model_load):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(
        json.dumps({"audio_path": "gone.wav", "text": "a cat"})
        + "\n{not json\n"
        + json.dumps({"audio_path": "gone.wav", "text": " "})
        + "\n"
    )
    assert _refusal(capsys, "--train-manifest", bad, "--output-dir", tmp_path) == (
        f"--train-manifest {bad}: no usable rows (all 3 skipped: 1 missing audio file; 1 invalid JSON; 1 empty text)"
    )
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")
    assert _refusal(capsys, "--train-manifest", empty, "--output-dir", tmp_path) == (
        f"--train-manifest {empty}: no usable rows (the file has no rows)"
    )


def test_text_the_tokenizer_cannot_represent_is_reported_and_refused(
    capsys, tmp_path, manifest, no_model_load
):
    rows = [json.loads(line) for line in manifest.read_text().splitlines()]
    rows[1]["text"] = "Do not chase some children!"
    manifest.write_text("".join(json.dumps(row) + "\n" for row in rows))
    assert finetune("--model", TINY, "--train-manifest", manifest, "--output-dir", tmp_path / "out") == 2
    out = capsys.readouterr()
    assert out.err.strip() == (
        f"{ERROR}--train-manifest {manifest}: 1 of 4 kept rows (25.0 %) have characters the tokenizer "
        "cannot represent, which would be trained on as <unk>: 'D' (1 row), '!' (1 row) (first lines 2); the limit "
        "is max_unknown_fraction=0.01. Normalise the text to the tokenizer's alphabet (e.g. lowercase it, spell out "
        "digits) or raise the limit. (--max-unknown-fraction sets the limit)"
    )
    # The report (printed before the refusal) names the rows and characters too.
    assert (
        "       1  kept rows with characters the tokenizer cannot represent, trained on as <unk> (lines 2): "
        "'D' (1 row), '!' (1 row)"
    ) in out.out.splitlines()


def test_every_option_is_a_field_of_the_run_with_the_same_default():
    """The parser (no torch) and FinetuneOptions (the run) name the same options with the same defaults."""
    args = granite_nar_cli.build_parser().parse_args(
        ["finetune", "--model", "m", "--train-manifest", "t", "--output-dir", "o"]
    )
    parsed = {name: value for name, value in vars(args).items() if name != "command"}
    assert parsed == dataclasses.asdict(FinetuneOptions(model="m", train_manifest="t", output_dir="o"))
    assert FinetuneOptions.from_args(args) == FinetuneOptions(model="m", train_manifest="t", output_dir="o")
    assert (cli_finetune.PRESETS, cli_finetune.NUM_LAYERS_PRESETS) == (PRESETS, NUM_LAYERS_PRESETS)


def test_help_and_usage_errors_import_neither_torch_nor_transformers():
    code = (
        "import sys, granite_nar_cli\n"
        "assert granite_nar_cli.main(['finetune', '--help']) == 0\n"
        "argv = ['finetune', '--model', 'tiny-nowhere', '--train-manifest', 't', '--output-dir', 'o']\n"
        "assert granite_nar_cli.main(argv) == 2\n"
        "print('HEAVY', sorted(m for m in ('torch', 'transformers', 'granite_nar', 'numpy') if m in sys.modules))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "HEAVY []" in proc.stdout
    assert "--minutes M" in proc.stdout and "--eval-at-start, --no-eval-at-start" in proc.stdout
    assert "granite-nar: error: --model tiny-nowhere: no such model folder" in proc.stderr


# -- runs ------------------------------------------------------------------------------------------------------


def test_lora_run_on_cpu_with_bf16_saves_loadable_checkpoints_and_resumes(capsys, tmp_path, manifest):
    pytest.importorskip("peft")
    from granite_nar import GraniteSpeechNarProcessor, transcribe

    out = tmp_path / "run"
    argv = [
        "--model", TINY, "--train-manifest", manifest, "--output-dir", out,
        "--preset", "lora", "--lora-rank", "4", "--max-steps", "2", "--batch-size", "2", "--eval-steps", "1",
        "--warmup-steps", "0", "--lr", "5e-3", "--bf16", "--device", "cpu", "--threads", "1",
    ]  # fmt: skip
    assert finetune(*argv) == 0, capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == ["checkpoint-1", "checkpoint-2", "final", SUMMARY_NAME]

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
    saved = _weights(checkpoint)
    assert any(not torch.equal(saved[k], v) for k, v in _weights(TINY).items())
    for name, tensor in saved.items():
        torch.testing.assert_close(tensor, reference[name], rtol=0, atol=1e-6, msg=name)

    # Resuming from the last checkpoint restores its adapter (not a fresh one), optimizer and step: with no
    # step left to take, the final model is the checkpoint's.
    shutil.rmtree(out / "final")
    assert finetune(*argv, "--resume-from-checkpoint") == 0
    assert f"resuming from {out / 'checkpoint-2'}" in capsys.readouterr().out
    assert _same(_weights(out / "final"), _weights(out / "checkpoint-2"))


def test_resume_reproduces_the_uninterrupted_run_and_checkpoints_transcribe(capsys, tmp_path, manifest):
    """4 steps in one run = 2 steps + a resumed run to 4, bit for bit (draft noise and dropout included), for
    the editor_last_n_head preset; a checkpoint transcribes with granite-nar transcribe."""
    from granite_nar import transcribe

    train = tmp_path / "train.jsonl"  # 8 rows: 4 steps of 2 are one epoch, so step 2 is inside it
    train.write_text(manifest.read_text() * 2)
    argv = [
        "--model", TINY, "--train-manifest", train, "--eval-manifest", manifest, "--preset", "editor_last_n_head",
        "--num-layers", "1", "--max-steps", "4", "--batch-size", "2", "--eval-steps", "2", "--warmup-steps", "0",
        "--lr", "1e-3", "--substitution-prob", "0.2", "--device", "cpu", "--threads", "1",
    ]  # fmt: skip
    whole, resumed = tmp_path / "whole", tmp_path / "resumed"
    assert finetune(*argv, "--output-dir", whole) == 0
    log = capsys.readouterr().out
    baseline = _summary(whole)["start_metrics"]
    assert f"before training: draft CER {100 * baseline['eval_draft_cer']:.2f} %" in log
    resumed.mkdir()
    shutil.copytree(whole / "checkpoint-2", resumed / "checkpoint-2")
    assert (resumed / "checkpoint-2" / STATE_NAME).is_file()
    assert finetune(*argv, "--output-dir", resumed, "--resume-from-checkpoint") == 0
    log = capsys.readouterr().out
    assert f"resuming from {resumed / 'checkpoint-2'}" in log
    assert "before training:" not in log  # the starting model was scored by the interrupted run

    final = _weights(whole / "final")
    assert not _same(final, _weights(whole / "checkpoint-2"))
    assert _same(_weights(resumed / "final"), final)
    assert _same(_weights(resumed / "checkpoint-4"), _weights(whole / "checkpoint-4"))
    summary = _summary(resumed)
    assert summary["steps"] == 4 and summary["resumed_from"] == str(resumed / "checkpoint-2")
    assert summary["start_metrics"] == baseline  # from the resumed state's log
    assert [e["step"] for e in summary["evaluations"]] == [0, 2, 4]
    scores = [
        {k: v for k, v in e.items() if k.endswith(("_cer", "_wer", "_loss"))} for e in summary["evaluations"]
    ]
    assert scores == [
        {k: v for k, v in e.items() if k.endswith(("_cer", "_wer", "_loss"))}
        for e in _summary(whole)["evaluations"]
    ]
    assert summary["arguments"]["preset"] == "editor_last_n_head" and summary["arguments"]["num_layers"] == 1

    # The tied head was trained: it differs from the starting model's, and the checkpoint keeps it tied.
    start, head = _weights(TINY), "model.language_model.embed_tokens.weight"
    assert not torch.equal(final[head], start[head])
    frozen = "model.encoder.layers.0.attn.to_q.weight"
    assert torch.equal(final[frozen], start[frozen])
    checkpoint = whole / "checkpoint-2"
    model = GraniteSpeechNarForCTC.from_pretrained(checkpoint)
    assert model.get_output_embeddings().weight is model.get_input_embeddings().weight

    # granite-nar transcribe --model CHECKPOINT gives what the Python API gives with that checkpoint.
    wav = sorted(FIXTURES.glob("*.wav"))[0]
    assert granite_nar_cli.main(["transcribe", str(wav), "--model", str(checkpoint), "--threads", "1"]) == 0
    (expected,) = transcribe([wav], model=checkpoint)
    assert capsys.readouterr().out == f"{expected}\n" and expected


def test_keep_best_only_keeps_the_starting_model_when_no_step_beats_it(capsys, tmp_path, manifest):
    """A learning rate that ruins the head: every evaluation after a step is worse than the baseline scored at
    the start, so the starting model is the best checkpoint and final/ is the starting model."""
    argv = [
        "--model", TINY, "--train-manifest", manifest, "--eval-manifest", manifest, "--preset",
        "editor_last_n_head", "--num-layers", "1", "--max-steps", "2", "--batch-size", "2", "--eval-steps", "1",
        "--warmup-steps", "0", "--lr", "1.0", "--keep-best-only", "--device", "cpu", "--threads", "1",
    ]  # fmt: skip
    out = tmp_path / "run"
    assert finetune(*argv, "--output-dir", out) == 0
    log = capsys.readouterr().out
    summary = _summary(out)
    start = summary["start_metrics"]["eval_edit1_cer"]
    assert [e["step"] for e in summary["evaluations"]] == [0, 1, 2]
    # The steps only made it worse.
    assert all(e["eval_edit1_cer"] > start for e in summary["evaluations"][1:])
    assert (summary["best_step"], summary["best_metric"]) == (0, start)
    assert summary["best_checkpoint"] == str(out / "checkpoint-0")
    assert sorted(p.name for p in out.iterdir()) == ["checkpoint-0", "final", SUMMARY_NAME]
    assert _same(_weights(out / "final"), _weights(TINY))
    assert log.splitlines()[-1] == (
        f"finetune: 2 steps in {summary['seconds']:.1f} s; best eval_edit1_cer {start:.4f} at step 0 "
        f"({out / 'checkpoint-0'}); final model in {out / 'final'}"
    )

    # Without the baseline the best of the (ruined) steps is kept.
    out = tmp_path / "no-start"
    assert finetune(*argv, "--output-dir", out, "--no-eval-at-start") == 0
    assert "before training:" not in capsys.readouterr().out
    summary = _summary(out)
    assert summary["start_metrics"] is None and summary["best_step"] in (1, 2)
    assert not _same(_weights(out / "final"), _weights(TINY))


def test_minutes_trains_for_a_wall_clock_budget(capsys, tmp_path, manifest):
    """--minutes ignores --epochs (half an epoch would be one step), evaluates and saves every --eval-minutes
    and when the time is up, and decays the learning rate over the budget."""
    budget = 0.04  # minutes: 2.4 s
    argv = [
        "--model", TINY, "--train-manifest", manifest, "--preset", "editor_last_n", "--num-layers", "1",
        "--epochs", "0.5", "--minutes", budget, "--batch-size", "2", "--warmup-steps", "0", "--lr", "1e-3",
        "--device", "cpu", "--threads", "1",
    ]  # fmt: skip
    out = tmp_path / "run"
    assert finetune(*argv, "--output-dir", out, "--eval-manifest", manifest, "--eval-minutes", "0.01") == 0
    summary = _summary(out)
    steps = summary["steps"]
    assert steps >= 2 and summary["seconds"] >= budget * 60
    evaluated = [e["step"] for e in summary["evaluations"]]
    assert evaluated[0] == 0 and evaluated[-1] == steps  # the baseline, …, the end of the budget
    last = out / f"checkpoint-{steps}"
    assert last.is_dir()
    from safetensors import safe_open

    with safe_open(str(last / STATE_NAME), framework="pt") as f:
        assert float(f.metadata()["spent_seconds"]) >= budget * 60
    scheduler = torch.load(last / "scheduler.pt", weights_only=True)
    assert all(lr < 1e-3 for lr in scheduler["_last_lr"])
    capsys.readouterr()

    # Without a dev set the budget saves instead of evaluating.
    out = tmp_path / "no-eval"
    assert finetune(*argv, "--output-dir", out) == 0
    summary = _summary(out)
    assert summary["evaluations"] == [] and summary["best_metric"] is None
    assert (out / f"checkpoint-{summary['steps']}").is_dir()
    assert "; no evaluation; final model in" in capsys.readouterr().out


def test_sequence_stage_and_self_correction_train_resume_and_save_loadable_checkpoints(
    capsys, tmp_path, manifest
):
    """--objective sequence logs the sampled objective next to the CTC anchor, trains only what the preset
    allows, and resumes bit for bit (the sampling generator is in the checkpoint); --self-correction-prob
    trains the editor on its own edits; both leave checkpoints that load."""
    train = tmp_path / "train.jsonl"  # 8 rows: 4 steps of 2 are one epoch
    train.write_text(manifest.read_text() * 2)
    common = [
        "--model", TINY, "--train-manifest", train, "--max-steps", "4", "--batch-size", "2",
        "--warmup-steps", "0", "--lr", "1e-3", "--device", "cpu", "--threads", "1", "--logging-steps", "1",
    ]  # fmt: skip
    sequence = [
        "--preset", "editor", "--objective", "sequence", "--group-size", "3", "--anchor-weight", "0.3",
        "--eval-manifest", manifest, "--eval-steps", "2", "--normalize", "english",
    ]  # fmt: skip
    whole, resumed = tmp_path / "whole", tmp_path / "resumed"
    assert finetune(*common, *sequence, "--output-dir", whole) == 0
    log = capsys.readouterr().out
    assert "'policy_loss'" in log and "'sample_risk'" in log and "'greedy_risk'" in log
    assert _summary(whole)["arguments"]["objective"] == "sequence"
    trained, start = _weights(whole / "final"), _weights(TINY)
    assert not _same(trained, start)
    # Only the editor was trainable: the encoder is untouched.
    assert all(torch.equal(v, start[k]) for k, v in trained.items() if k.startswith("model.encoder."))
    # granite-nar evaluate loads the final model and scores it as the run's last evaluation did.
    report = tmp_path / "report.json"
    command = ["evaluate", str(manifest), "--model", str(whole / "final"), "--normalize", "english"]
    assert granite_nar_cli.main([*command, "--json", str(report), "--threads", "1"]) == 0
    scores, last = json.loads(report.read_text())["overall"]["steps"], _summary(whole)["evaluations"][-1]
    assert last["step"] == 4
    for step in ("draft", "edit1", "edit2"):
        assert scores[step]["cer"] == pytest.approx(last[f"eval_{step}_cer"], abs=1e-12)
        assert scores[step]["wer"] == pytest.approx(last[f"eval_{step}_wer"], abs=1e-12)
    resumed.mkdir()
    shutil.copytree(whole / "checkpoint-2", resumed / "checkpoint-2")
    assert finetune(*common, *sequence, "--output-dir", resumed, "--resume-from-checkpoint") == 0
    capsys.readouterr()
    assert _same(_weights(resumed / "final"), trained)

    out = tmp_path / "self-correction"
    assert finetune(*common, "--preset", "editor", "--self-correction-prob", "1", "--output-dir", out) == 0
    assert "'ctc_loss'" in capsys.readouterr().out
    assert _summary(out)["arguments"]["self_correction_prob"] == 1.0
    assert not _same(_weights(out / "final"), _weights(TINY))
