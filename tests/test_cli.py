"""The granite-nar command line: output formats, one bad file never stops the others, exit statuses,
``--version`` and ``--help`` without torch, ``--threads``, and models that are mistyped, offline or odd."""

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import huggingface_hub
import huggingface_hub.constants
import huggingface_hub.utils
import numpy as np
import pytest
import soundfile as sf
import torch
from testers import DEMO_WAV, REPO

import granite_nar
import granite_nar.transcription.transcribe as transcribe_module
from granite_nar import load_audio, transcribe
from granite_nar.cli import main
from granite_nar.testing.demo import make_random_demo_model


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return make_random_demo_model(tmp_path_factory.mktemp("cli") / "demo-model")


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A good mono 16 kHz file, a stereo 44.1 kHz one, and three bad ones."""
    root = tmp_path_factory.mktemp("audio")
    wave = load_audio(DEMO_WAV)
    good = root / "good.wav"
    sf.write(good, wave[:20000], 16000, subtype="PCM_16")
    stereo = root / "stereo44k.wav"
    wave44 = load_audio(DEMO_WAV, sampling_rate=44100)
    sf.write(stereo, np.stack([wave44, 0.5 * wave44], axis=1), 44100, subtype="PCM_16")
    corrupt = root / "corrupt.wav"
    corrupt.write_bytes(good.read_bytes()[:30])
    text = root / "readme.wav"
    text.write_text("not audio at all\n")
    empty = root / "empty.wav"
    sf.write(empty, np.zeros(0, np.float32), 16000)
    return {"good": good, "stereo": stereo, "corrupt": corrupt, "text": text, "empty": empty}


def expected_text(model_dir, path):
    return transcribe(str(path), model=str(model_dir))[0]


def test_single_file_prints_only_the_transcript(model_dir, files, capsys):
    assert main(["transcribe", str(files["good"]), "--model", str(model_dir)]) == 0
    out, err = capsys.readouterr()
    assert out == expected_text(model_dir, files["good"]) + "\n"
    assert "RANDOM weights" in err  # the demo model says what it is


def test_several_files_are_tab_separated_in_input_order(model_dir, files, capsys):
    paths = [files["stereo"], files["good"]]
    assert main(["transcribe", *map(str, paths), "-m", str(model_dir), "--batch-size", "1"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines == [f"{p}\t{expected_text(model_dir, p)}" for p in paths]


def test_bad_files_are_reported_and_the_others_transcribed(model_dir, files, capsys):
    order = ["corrupt", "good", "text", "empty", "stereo"]
    paths = [str(files[k]) for k in order] + [str(files["good"].parent / "missing.wav")]
    code = main(["transcribe", *paths, "--model", str(model_dir), "--output", "jsonl", "--drafts"])
    out, err = capsys.readouterr()
    assert code == 1
    records = [json.loads(line) for line in out.splitlines()]
    # Written as each file finishes: the failures (found while reading headers) first, every file once.
    assert sorted(r["path"] for r in records) == sorted(paths)
    assert [r["error"] is None for r in records] == [False] * 4 + [True] * 2
    ok = {r["path"]: r for r in records if r["error"] is None}
    assert set(ok) == {str(files["good"]), str(files["stereo"])}
    for path, record in ok.items():
        assert record["text"] == expected_text(model_dir, path)
        assert isinstance(record["draft"], str) and record["duration_sec"] > 0
    errors = {r["path"]: r["error"] for r in records if r["error"] is not None}
    assert "not a readable audio file" in errors[paths[0]]
    assert "not a readable audio file" in errors[paths[2]]
    assert "holds no audio samples" in errors[paths[3]]
    assert "no such file" in errors[paths[5]]
    # stderr: one line per failure naming the file, a summary, never a traceback.
    error_lines = [line for line in err.splitlines() if line.startswith("granite-nar: error: ")]
    assert len(error_lines) == 4 and all(any(p in line for p in errors) for line in error_lines)
    assert "granite-nar: 4 of 6 file(s) failed" in err
    assert "Traceback" not in err


def test_txt_output_with_a_failure_still_prints_the_good_ones(model_dir, files, capsys):
    code = main(["transcribe", str(files["text"]), str(files["good"]), "--model", str(model_dir), "--drafts"])
    out, err = capsys.readouterr()
    assert code == 1
    (line,) = out.splitlines()
    path, text, draft = line.split("\t")
    assert path == str(files["good"]) and text == expected_text(model_dir, files["good"])
    assert draft.startswith("draft: ")
    assert f"granite-nar: error: {files['text']}: not a readable audio file" in err


def test_no_resample_refuses_other_rates(model_dir, files, capsys):
    assert main(["transcribe", str(files["stereo"]), "--model", str(model_dir), "--no-resample"]) == 1
    assert "sampled at 44100 Hz" in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv,message",
    [
        (["transcribe", "x.wav"], "required: --model"),
        (["transcribe", "--model", "m"], "required: FILE"),
        (
            ["transcribe", "x.wav", "--model", "/no/such/model"],
            "--model /no/such/model: no such model folder",
        ),
        (["transcribe", "x.wav", "--model", "m", "--batch-size", "0"], "must be >= 1"),
        (["transcribe", "x.wav", "--model", "m", "--output", "csv"], "invalid choice"),
        (["transcribe", "x.wav", "--model", "m", "--dtype", "int8"], "invalid choice"),
        (["frobnicate"], "invalid choice"),
        ([], "required: COMMAND"),
    ],
)
def test_usage_errors_exit_2(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_unloadable_model_is_one_line(tmp_path, files, capsys):
    (tmp_path / "config.json").write_text("{ not json")
    assert main(["transcribe", str(files["good"]), "--model", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"granite-nar: error: cannot load the model from {tmp_path}")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on machines without CUDA")
def test_unavailable_device_is_a_usage_error(model_dir, files, capsys):
    assert main(["transcribe", str(files["good"]), "--model", str(model_dir), "--device", "cuda"]) == 2
    assert "CUDA is not available" in capsys.readouterr().err


def test_installed_console_script(model_dir, files):
    script = Path(sys.executable).parent / "granite-nar"
    command = [str(script)] if script.exists() else [sys.executable, "-m", "granite_nar.cli"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [
            *command,
            "transcribe",
            str(files["good"]),
            str(files["text"]),
            "--model",
            str(model_dir),
            "-o",
            "jsonl",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert proc.returncode == 1, proc.stderr
    records = {r["path"]: r for r in map(json.loads, proc.stdout.splitlines())}
    good, text = records[str(files["good"])], records[str(files["text"])]
    assert good["text"] == expected_text(model_dir, files["good"]) and good["error"] is None
    assert text["text"] is None and "not a readable audio file" in text["error"]
    assert "Traceback" not in proc.stderr


# --------------------------------------------------------------------------------------------------------
# --version, --help, --threads


def test_version_is_the_package_version(capsys):
    assert main(["--version"]) == 0
    assert capsys.readouterr().out == f"granite-nar {granite_nar.__version__}\n"
    pyproject = (REPO / "pyproject.toml").read_text()
    assert re.search(r'^version = "(.*)"$', pyproject, re.M).group(1) == granite_nar.__version__


def test_help_and_version_import_neither_torch_nor_transformers():
    """``granite-nar --help``, ``--version`` and usage errors (a mistyped --model folder included) answer
    without the heavy imports (the console script is granite_nar_cli)."""
    code = (
        "import sys, granite_nar_cli\n"
        "for argv in (['--help'], ['transcribe', '--help'], ['--version'], ['transcribe', 'x.wav'],\n"
        "             ['transcribe', 'x.wav', '-m', 'tiny-synth-nowhere']):\n"
        "    assert granite_nar_cli.main(argv) in (0, 2), argv\n"
        "heavy = sorted(m for m in ('torch', 'transformers', 'granite_nar', 'numpy') if m in sys.modules)\n"
        "print('HEAVY', heavy)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "HEAVY []" in proc.stdout
    assert "--threads N" in proc.stdout and "--version" in proc.stdout
    assert f"granite-nar {granite_nar.__version__}" in proc.stdout
    assert "required: --model" in proc.stderr
    assert (
        "--model tiny-synth-nowhere: no such model folder" in proc.stderr
    )  # refused before any heavy import


def test_console_script_and_python_m_give_the_version():
    script = Path(sys.executable).parent / "granite-nar"
    commands = [[sys.executable, "-m", "granite_nar", "--version"]]
    if script.exists():
        commands.append([str(script), "--version"])
    for command in commands:
        proc = subprocess.run(command, capture_output=True, text=True, timeout=300)
        assert (proc.returncode, proc.stdout) == (0, f"granite-nar {granite_nar.__version__}\n"), command


def test_threads_sets_torch_threads_during_the_run(model_dir, files, monkeypatch, capsys):
    seen = []
    real = transcribe_module.transcribe_iter

    def spy(*args, **kwargs):
        seen.append(torch.get_num_threads())
        return real(*args, **kwargs)

    monkeypatch.setattr(transcribe_module, "transcribe_iter", spy)
    before = torch.get_num_threads()
    target = 2 if before != 2 else 3
    assert main(["transcribe", str(files["good"]), "-m", str(model_dir), "--threads", str(target)]) == 0
    assert seen == [target] and torch.get_num_threads() == before  # restored for in-process callers
    capsys.readouterr()
    assert main(["transcribe", str(files["good"]), "-m", str(model_dir), "--threads", "0"]) == 2
    assert "--threads: must be >= 1" in capsys.readouterr().err


# --------------------------------------------------------------------------------------------------------
# Models that are mistyped, offline, broken or not this model


@pytest.mark.parametrize("ref", ["tiny-synth", "./tiny-synth", "models/tiny/synth", "~/no/such", "my model"])
def test_mistyped_model_folder_is_refused_at_once(ref, no_hub, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["transcribe", "x.wav", "-m", ref]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith(f"granite-nar: error: --model {ref}: no such model folder")
    assert "org/name" in err[0]  # what a Hub id looks like


def test_a_file_is_not_a_model_folder(no_hub, files, capsys):
    assert main(["transcribe", "x.wav", "-m", str(files["good"])]) == 2
    assert f"--model {files['good']}: a file, not a model folder" in capsys.readouterr().err


def test_offline_hub_id_says_how_to_use_a_local_folder(files, monkeypatch, capsys, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "cache"))
    assert main(["transcribe", str(files["good"]), "-m", "nobody/granite-nowhere"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1, err
    line = err[0]
    assert line.startswith("granite-nar: error: cannot load the model from nobody/granite-nowhere: ")
    for part in (
        "not in the Hub cache",
        "HF_HUB_OFFLINE=1",
        "hf download nobody/granite-nowhere",
        "local model folder",
    ):
        assert part in line


def test_unreachable_hub_says_how_to_use_a_local_folder(files, monkeypatch, capsys):
    """A connection error (no network): one line naming the id, with what to do; the Hub is never reached."""
    from huggingface_hub.errors import LocalEntryNotFoundError

    import granite_nar.checkpoints.loading as loading

    def unreachable(*args, **kwargs):
        try:
            raise ConnectionError("Name or service not known")
        except ConnectionError as cause:
            raise LocalEntryNotFoundError("cannot find the requested files") from cause

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(huggingface_hub, "snapshot_download", unreachable)
    monkeypatch.setattr(loading, "resolve_config_folder", lambda *args, **kwargs: None)
    assert main(["transcribe", str(files["good"]), "-m", "nobody/granite-nowhere"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err[0].startswith(
        "granite-nar: nobody/granite-nowhere is not a local folder: looking it up on the Hugging Face Hub"
    )
    assert len(err) == 2 and "cannot reach the Hugging Face Hub to fetch nobody/granite-nowhere" in err[1]
    assert "Name or service not known" in err[1] and "local model folder" in err[1]


def test_hub_download_progress_bars_stay_on(model_dir, files, monkeypatch, capsys):
    from transformers.utils import logging as hf_logging

    states = []
    real = transcribe_module.load_model

    def spy(*args, **kwargs):
        states.append(
            (huggingface_hub.utils.are_progress_bars_disabled(), hf_logging.is_progress_bar_enabled())
        )
        return real(*args, **kwargs)

    monkeypatch.setattr(transcribe_module, "load_model", spy)
    before = huggingface_hub.utils.are_progress_bars_disabled()
    assert main(["transcribe", str(files["good"]), "-m", str(model_dir)]) == 0
    assert states[0] == (False, False)  # download bars on, transformers' "Loading weights" bar off
    assert huggingface_hub.utils.are_progress_bars_disabled() == before


@pytest.fixture
def model_copy(model_dir, tmp_path):
    copy = tmp_path / "model"
    shutil.copytree(model_dir, copy)
    return copy


def _edit_config(folder, edit):
    config = json.loads((folder / "config.json").read_text())
    edit(config)
    (folder / "config.json").write_text(json.dumps(config))


def test_unknown_config_field_is_a_one_line_warning(model_copy, files, capsys):
    _edit_config(model_copy, lambda c: c["encoder_config"].__setitem__("use_flux_capacitor", True))
    assert main(["transcribe", str(files["good"]), "-m", str(model_copy)]) == 0
    out, err = capsys.readouterr()
    assert out.strip()  # transcribed all the same
    warnings_ = [line for line in err.splitlines() if "unknown config field" in line]
    assert len(warnings_) == 1 and warnings_[0].startswith("granite-nar: warning: ")
    assert "'encoder_config.use_flux_capacitor'" in warnings_[0] and "upgrade granite_nar" in warnings_[0]


def test_another_models_config_is_refused_in_one_line(model_copy, files, capsys):
    _edit_config(model_copy, lambda c: c.__setitem__("model_type", "wav2vec2"))
    assert main(["transcribe", str(files["good"]), "-m", str(model_copy)]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and str(model_copy / "config.json") in err[0]
    assert "model_type is 'wav2vec2', expected 'granite_speech_nar'" in err[0]


@pytest.mark.parametrize("damage", ["truncated", "missing"])
def test_broken_weights_are_named_in_one_line(damage, model_copy, files, capsys):
    weights = model_copy / "model.safetensors"
    if damage == "truncated":
        weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    else:
        weights.unlink()
    assert main(["transcribe", str(files["good"]), "-m", str(model_copy)]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and str(weights if damage == "truncated" else model_copy) in err[0]
    assert ("is truncated" if damage == "truncated" else "the weights are missing") in err[0]
    assert "re-download" in err[0].lower()
