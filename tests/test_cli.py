"""The granite-nar command line: output formats, one bad file never stops the others, exit statuses."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from testers import DEMO_WAV

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
    assert [r["path"] for r in records] == paths
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
        (["transcribe", "x.wav", "--model", "/no/such/model"], "--model /no/such/model: no such folder"),
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
    records = [json.loads(line) for line in proc.stdout.splitlines()]
    assert records[0]["text"] == expected_text(model_dir, files["good"]) and records[0]["error"] is None
    assert records[1]["text"] is None and "not a readable audio file" in records[1]["error"]
    assert "Traceback" not in proc.stderr
