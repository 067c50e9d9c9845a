"""``granite-nar transcribe`` on long recordings: subtitle files a real parser reads, an output directory a
rerun resumes, and results written as each file finishes (an interrupted run keeps them)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import srt
import webvtt

from granite_nar.cli import main
from granite_nar.testing.synthetic_speech import RenderParams, generate_sentences, synthesize

REPO = Path(__file__).resolve().parents[1]
MODEL = REPO / "examples" / "models" / "tiny-synth"
pytestmark = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is not installed")


@pytest.fixture(scope="module")
def recordings(tmp_path_factory):
    """Three recordings of 20-40 s: sentences joined by pauses."""
    folder = tmp_path_factory.mktemp("long")
    sentences = generate_sentences(24, seed=99, unique=True)
    rng = np.random.default_rng(7)
    paths = []
    for k, group in enumerate((sentences[:8], sentences[8:14], sentences[14:])):
        parts = []
        for text in group:
            parts += [synthesize(text, RenderParams(voice="en-gb", rate=165))]
            parts += [np.zeros(int(rng.uniform(0.4, 1.2) * 16000), np.float32)]
        path = folder / f"talk{k}.wav"
        sf.write(path, np.concatenate(parts), 16000, subtype="PCM_16")
        paths.append(path)
    return paths


def test_srt_and_vtt_parse_with_real_subtitle_parsers(recordings, tmp_path, capsys):
    out = tmp_path / "out"
    args = ["transcribe", *map(str, recordings), "-m", str(MODEL), "-o", "all", "--output-dir", str(out)]
    args += ["--max-segment-seconds", "12", "--max-cue-seconds", "4", "--max-line-chars", "30"]
    assert main(args) == 0
    for path in recordings:
        duration = sf.info(path).duration
        document = json.loads((out / f"{path.stem}.json").read_text())
        words = [w["word"] for s in document["segments"] for w in s["words"]]
        assert words == document["text"].split() and len(document["segments"]) >= 2

        cues = list(srt.parse((out / f"{path.stem}.srt").read_text()))
        assert " ".join(c.content.replace("\n", " ") for c in cues).split() == words
        starts = [c.start.total_seconds() for c in cues]
        ends = [c.end.total_seconds() for c in cues]
        assert starts == sorted(starts) and all(e <= s2 for e, s2 in zip(ends, starts[1:], strict=False))
        assert all(0 <= s < e <= duration + 1e-3 for s, e in zip(starts, ends, strict=True))
        assert all(len(line) <= 30 for c in cues for line in c.content.splitlines())

        vtt = webvtt.read(str(out / f"{path.stem}.vtt"))
        assert " ".join(c.text.replace("\n", " ") for c in vtt).split() == words
        assert [c.start_in_seconds for c in vtt] == sorted(c.start_in_seconds for c in vtt)
        assert all(c.end_in_seconds <= duration + 1e-3 for c in vtt)

        rows = (out / f"{path.stem}.tsv").read_text().splitlines()
        assert rows[0] == "start\tend\ttext" and len(rows) - 1 == len(document["segments"])
        assert (out / f"{path.stem}.txt").read_text().split() == words
    capsys.readouterr()

    # A rerun finds every output and transcribes nothing.
    assert main(args) == 0
    err = capsys.readouterr().err
    assert err.count("outputs exist") == len(recordings)


def test_an_interrupted_run_keeps_what_it_finished_and_a_rerun_completes_it(recordings, tmp_path):
    out = tmp_path / "out"
    many = [str(p) for p in recordings] * 1
    command = [sys.executable, "-m", "granite_nar", "transcribe", *many, "-m", str(MODEL)]
    command += ["-o", "jsonl", "--output-dir", str(out), "-b", "1", "--threads", "1"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True)
    records = out / "transcripts.jsonl"
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None:
        if records.exists() and records.read_text().count("\n") >= 1:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    proc.communicate(timeout=120)
    first = [json.loads(line) for line in records.read_text().splitlines()]
    assert 1 <= len(first) and all(r["error"] is None and r["text"] for r in first)

    rerun = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    final = [json.loads(line) for line in records.read_text().splitlines()]
    assert sorted(r["path"] for r in final) == sorted(many)  # each file exactly once
    assert final[: len(first)] == first
    assert rerun.stderr.count("outputs exist") == len(first)


def test_documents_for_several_files_need_an_output_dir(recordings, capsys):
    code = main(["transcribe", *map(str, recordings[:2]), "-m", str(MODEL), "-o", "srt"])
    assert code == 2
    assert "--output srt writes one document per file: pass --output-dir DIR" in capsys.readouterr().err


def test_one_file_to_stdout_as_srt(recordings, capsys):
    assert main(["transcribe", str(recordings[1]), "-m", str(MODEL), "-o", "srt"]) == 0
    cues = list(srt.parse(capsys.readouterr().out))
    assert cues and cues[0].index == 1
