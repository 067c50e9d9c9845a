"""Corpora on a real local Ray cluster (2 CPUs, 2 actors, the shipped tiny model): every row comes back,
good rows with the transcript ``granite_nar.transcribe`` gives, bad rows with their reason, and reruns
and interrupted runs end with the same rows."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ray = pytest.importorskip("ray")
pq = pytest.importorskip("pyarrow.parquet")
sf = pytest.importorskip("soundfile")

from granite_nar import transcribe  # noqa: E402
from granite_nar.distributed import ManifestError, read_manifest, transcribe_dataset  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
MODEL = REPO / "examples" / "models" / "tiny-synth"
pytestmark = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is not installed")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """40 rendered clips (two of them corrupt: not audio, and a WAV cut in half) and their manifest, with
    relative paths and a speaker column."""
    from granite_nar.testing.synthetic_speech import RenderParams, generate_sentences, synthesize

    folder = tmp_path_factory.mktemp("corpus")
    (folder / "clips").mkdir()
    rows = []
    for k, text in enumerate(generate_sentences(40, seed=13, unique=True)):
        voice = ("en-us", "en-gb")[k % 2]
        wave = synthesize(text, RenderParams(voice=voice, rate=150 + 5 * (k % 5)))
        name = f"clips/u{k:02d}.wav"
        sf.write(folder / name, wave, 16000, subtype="PCM_16")
        rows.append({"audio": name, "speaker": voice, "reference": text})
    (folder / rows[7]["audio"]).write_bytes(b"this is a text file, not audio\n" * 20)
    data = (folder / rows[23]["audio"]).read_bytes()
    (folder / rows[23]["audio"]).write_bytes(data[: len(data) // 2])
    manifest = folder / "manifest.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return manifest, rows


@pytest.fixture(scope="module")
def local_ray():
    from granite_nar.distributed.ray_data import _local_ray_kwargs

    ray.init(**_local_ray_kwargs(None, {"num_cpus": 2, "include_dashboard": False, "log_to_driver": False}))
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def expected(corpus):
    manifest, rows = corpus
    paths = [str(manifest.parent / r["audio"]) for r in rows]
    results = transcribe(paths, str(MODEL), on_error="skip", return_drafts=True, device="cpu")
    return {r["audio"]: result for r, result in zip(rows, results, strict=True)}


def _rows(folder: Path) -> dict[str, dict]:
    out = {}
    for shard in sorted(folder.glob("*.parquet")):
        for row in pq.read_table(shard).to_pylist():
            assert row["audio"] not in out, f"{row['audio']} written twice"
            out[row["audio"]] = row
    return out


def _run(manifest, output, **kwargs):
    return transcribe_dataset(
        manifest, output, MODEL, num_workers=2, batch_size=4, rows_per_shard=8, device="cpu", **kwargs
    )


def _check(rows_out: dict, corpus, expected) -> None:
    manifest, rows = corpus
    assert len(rows_out) == 40
    for row in rows:
        got = rows_out[str(manifest.parent / row["audio"])]
        want = expected[row["audio"]]
        assert got["speaker"] == row["speaker"] and got["reference"] == row["reference"]  # columns kept
        if want.error is None:
            assert got["error"] is None and got["text"] == want.text and got["draft"] == want.draft
            assert got["duration_sec"] == pytest.approx(want.duration_sec)
            assert " ".join(s["text"] for s in json.loads(got["segments"])) == want.text
        else:
            assert got["text"] is None and got["error"]
    bad = {k: v["error"] for k, v in rows_out.items() if v["error"] is not None}
    assert len(bad) == 2
    assert "not a readable audio file" in bad[str(manifest.parent / rows[7]["audio"])]
    assert "truncated" in bad[str(manifest.parent / rows[23]["audio"])]


def test_corpus_on_ray_equals_transcribe_and_reruns_write_nothing(local_ray, corpus, expected, tmp_path):
    manifest, _ = corpus
    report = _run(manifest, tmp_path / "out")
    assert (report.rows, report.skipped, report.transcribed, report.failed) == (40, 0, 38, 2)
    _check(_rows(tmp_path / "out"), corpus, expected)
    shards = sorted(p.name for p in (tmp_path / "out").iterdir())
    again = _run(manifest, tmp_path / "out")
    assert (again.skipped, again.transcribed, again.failed) == (40, 0, 0)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == shards  # nothing new written


def test_an_interrupted_run_resumes_to_the_same_rows(local_ray, corpus, expected, tmp_path):
    manifest, rows = corpus
    out = tmp_path / "out"
    half = tmp_path / "half.jsonl"  # the first run got through half of the corpus ...
    half.write_text("".join(json.dumps(r) + "\n" for r in rows[:20]))
    assert _run(half, out, base_dir=manifest.parent).transcribed == 19
    shards = sorted(out.glob("*.parquet"))
    cut = shards[-1].read_bytes()  # ... and was killed while writing its last shard
    shards[-1].write_bytes(cut[: len(cut) // 2])
    with pytest.warns(UserWarning, match="unreadable"):
        report = _run(manifest, out)
    assert report.skipped < 20 and report.skipped + report.transcribed + report.failed == 40
    assert [p.name for p in out.glob("*.incomplete")] == [shards[-1].name + ".incomplete"]
    _check(_rows(out), corpus, expected)


def test_jsonl_shards_and_word_timestamps(local_ray, corpus, expected, tmp_path):
    manifest, rows = corpus
    subset = tmp_path / "subset.csv"
    subset.write_text("path,speaker\n" + "".join(f"{r['audio']},{r['speaker']}\n" for r in rows[:6]))
    report = transcribe_dataset(
        subset,
        tmp_path / "out",
        MODEL,
        base_dir=manifest.parent,
        output_format="jsonl",
        word_timestamps=True,
        num_workers=1,
        device="cpu",
    )
    assert (report.transcribed, report.failed) == (6, 0)
    lines = [
        json.loads(line)
        for shard in (tmp_path / "out").glob("*.json")
        for line in shard.read_text().splitlines()
    ]
    by_path = {line["path"]: line for line in lines}
    for row in rows[:6]:
        got = by_path[str(manifest.parent / row["audio"])]
        words = [w["word"] for s in json.loads(got["segments"]) for w in s["words"]]
        assert got["text"] == expected[row["audio"]].text and words == got["text"].split()


def test_manifest_errors_name_the_fix(tmp_path):
    bad = tmp_path / "m.jsonl"
    bad.write_text('{"wav": "a.wav"}\n')
    with pytest.raises(ManifestError, match="no audio column; name it one of audio"):
        read_manifest(bad)
    with pytest.raises(ManifestError, match="unknown manifest type '.txt'"):
        (tmp_path / "m.txt").write_text("x")
        read_manifest(tmp_path / "m.txt")
    clash = tmp_path / "c.jsonl"
    clash.write_text('{"audio": "a.wav", "text": "hi"}\n')
    with pytest.raises(ManifestError, match="would be overwritten"):
        read_manifest(clash)
    table, column = read_manifest(["x.wav", "/abs/y.wav"])
    assert column == "audio" and table["audio"].to_pylist() == ["x.wav", "/abs/y.wav"]


def test_cli_transcribe_dataset_starts_its_own_ray(corpus, expected, tmp_path):
    manifest, rows = corpus
    small = tmp_path / "small.jsonl"
    small.write_text(
        "".join(json.dumps({**r, "audio": str(manifest.parent / r["audio"])}) + "\n" for r in rows[:8])
    )
    command = [sys.executable, "-m", "granite_nar", "transcribe-dataset", str(small), "-m", str(MODEL)]
    command += ["-o", str(tmp_path / "out"), "--num-workers", "2", "--num-cpus", "2", "--device", "cpu"]
    proc = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1, proc.stderr[-2000:]  # row 7 cannot be read
    assert "8 rows: 0 already in" in proc.stderr and "7 transcribed, 1 failed" in proc.stderr
    got = _rows(tmp_path / "out")
    assert {k: v["text"] for k, v in got.items() if v["error"] is None} == {
        str(manifest.parent / r["audio"]): expected[r["audio"]].text
        for r in rows[:8]
        if expected[r["audio"]].ok
    }


def test_a_local_ray_under_a_long_tmpdir_keeps_its_sockets_short(monkeypatch):
    import tempfile

    from granite_nar.distributed.ray_data import _local_ray_kwargs

    monkeypatch.delenv("RAY_TMPDIR", raising=False)
    monkeypatch.setattr(tempfile, "gettempdir", lambda: "/tmp/" + "x" * 60)
    assert _local_ray_kwargs(None, {"num_cpus": 2}) == {"num_cpus": 2, "_temp_dir": "/tmp/ray"}
    assert _local_ray_kwargs("auto", None) == {}  # a cluster's nodes chose their own
    monkeypatch.setattr(tempfile, "gettempdir", lambda: "/tmp")
    assert _local_ray_kwargs(None, None) == {}
    monkeypatch.setenv("RAY_TMPDIR", "/scratch/ray")
    monkeypatch.setattr(tempfile, "gettempdir", lambda: "/tmp/" + "x" * 60)
    assert _local_ray_kwargs(None, None) == {}
