"""``granite-nar serve`` as a user starts it: a separate process, the key from the environment, a free port
picked by the system, the openai client, and a clean exit on SIGTERM."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time

import httpx
import openai
from conftest import AUDIO, MODEL

DEMO = next(p for p in AUDIO if p.name == "demo.wav")
CLI = [sys.executable, "-m", "granite_nar"]


def _url_from_log(proc: subprocess.Popen, seconds: float = 120) -> str:
    """uvicorn's "Uvicorn running on http://127.0.0.1:PORT" line (port 0 → the port it got)."""
    deadline = time.monotonic() + seconds
    seen = []
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        if not line:
            raise AssertionError(f"the server exited ({proc.poll()}): {''.join(seen)}")
        seen.append(line)
        if match := re.search(r"running on (http://127\.0\.0\.1:\d+)", line):
            return match.group(1)
    raise AssertionError(f"no address in the log: {''.join(seen)}")


def test_serve_command_end_to_end(expected):
    env = dict(os.environ, GRANITE_NAR_API_KEY="env-key-1", PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(
        [*CLI, "serve", "--model", str(MODEL), "--port", "0", "--device", "cpu", "--threads", "1"],
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
        env=env,
    )
    try:
        url = _url_from_log(proc)
        deadline = time.monotonic() + 120
        while httpx.get(f"{url}/ready").status_code != 200:
            assert time.monotonic() < deadline
            time.sleep(0.1)
        client = openai.OpenAI(base_url=f"{url}/v1", api_key="env-key-1", max_retries=0)
        with open(DEMO, "rb") as handle:
            text = client.audio.transcriptions.create(file=handle, model="tiny-synth", response_format="text")
        assert text == expected[DEMO.name].text + "\n"
        assert httpx.get(f"{url}/v1/models").status_code == 401  # the key from the environment holds
    finally:
        proc.send_signal(signal.SIGTERM)  # what a process manager sends
        try:
            code = proc.wait(30)
        finally:
            proc.kill()
    assert code == 0


def test_serve_refuses_a_missing_model_folder_at_once(tmp_path):
    proc = subprocess.run(
        [*CLI, "serve", "--model", str(tmp_path / "nowhere")], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 2
    assert "no such model folder" in proc.stderr


def test_serve_reports_a_model_that_cannot_load(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    proc = subprocess.run(
        [*CLI, "serve", "--model", str(tmp_path), "--port", "0"], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 2
    assert "the model could not be loaded" in proc.stderr


def test_a_missing_serve_dependency_says_what_to_install(monkeypatch, capsys):
    import importlib.util

    import granite_nar.serving as serving
    from granite_nar_cli import main

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "multipart" else real(name, *a)
    )
    assert serving.missing_dependency() == (
        "the server needs python-multipart: pip install python-multipart (or, from a clone, the serve extra: "
        "pip install -e '.[serve]')"
    )
    assert main(["serve", "--model", str(MODEL)]) == 2
    assert "pip install python-multipart" in capsys.readouterr().err
