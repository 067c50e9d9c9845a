"""``examples/train_tiny_synth.py`` on a four-utterance corpus for a second: each log record is printed once (as
JSON, the same records as ``log.jsonl``), and ``--max-train`` / ``--max-dev`` show in the counts it reports."""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "tests" / "fixtures" / "tiny_synth"


def _corpus(folder: Path) -> Path:
    """train / dev manifests over the bundled utterances, and the tiny model's tokenizer."""
    rows = [json.loads(line) for line in (FIXTURES / "manifest.jsonl").read_text().splitlines()]
    text = "".join(
        json.dumps({**row, "audio_path": str(FIXTURES / row["audio_path"])}) + "\n" for row in rows
    )
    (folder / "train.jsonl").write_text(text)
    (folder / "dev.jsonl").write_text(text)
    (folder / "tokenizer").mkdir()
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(REPO / "examples" / "models" / "tiny-synth" / name, folder / "tokenizer" / name)
    return folder


def test_logs_are_printed_once_and_the_summary_counts_the_rows_used(tmp_path, capsys):
    spec = importlib.util.spec_from_file_location(
        "train_tiny_synth", REPO / "examples" / "train_tiny_synth.py"
    )
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    corpus = _corpus(tmp_path)
    work, out = tmp_path / "work", tmp_path / "model"
    threads = torch.get_num_threads()
    try:
        script.main(
            [
                "--corpus", str(corpus), "--out", str(out), "--work-dir", str(work), "--minutes", "0.005",
                "--batch-size", "2", "--logging-steps", "1", "--warmup-steps", "1", "--max-train", "3",
                "--max-dev", "2", "--threads", str(threads),
            ]
        )  # fmt: skip
    finally:
        torch.set_num_threads(threads)
    printed = capsys.readouterr().out.splitlines()

    records = [json.loads(line) for line in (work / "log.jsonl").read_text().splitlines()]
    assert any("loss" in r for r in records) and any("eval_edit1_cer" in r for r in records)
    # Every record once, as its JSON line; no second copy as a Python dict (transformers' PrinterCallback).
    assert [line for line in printed if line.startswith("{") and '"time_s"' in line] == [
        json.dumps(r) for r in records
    ]
    assert not [line for line in printed if line.startswith("{'")]

    # The manifest reports and the summary count the rows used, not all the rows the filters kept.
    assert f"{corpus / 'train.jsonl'}: kept 3 of 4 rows (0.00 h), skipped 1" in printed
    assert f"{corpus / 'dev.jsonl'}: kept 2 of 4 rows (0.00 h), skipped 2" in printed
    summary = json.loads((out / "training_summary.json").read_text())
    assert summary["train_manifest"]["kept"] == 3 and summary["train_manifest"]["rows"] == 4
    assert summary["train_manifest"]["skipped"] == {"beyond --max-train": 1}
