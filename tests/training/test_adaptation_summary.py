"""``examples/summarize_adaptation.py`` turns the recipe's evaluation reports and run summaries into tables:
each cell is the report's rate in percent, each run row carries its trainable count, steps and seconds, and
missing runs show as dashes instead of failing the summary. ``examples/adapt_tiny_synth.sh`` parses."""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def summarize():
    spec = importlib.util.spec_from_file_location(
        "summarize_adaptation", REPO / "examples" / "summarize_adaptation.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _report(path: Path, base: float) -> None:
    steps = {
        s: {"cer": base + k / 100, "wer": 2 * base + k / 100}
        for k, s in enumerate(("draft", "edit1", "edit2"))
    }
    path.write_text(json.dumps({"overall": {"steps": steps}}))


def test_tables_carry_the_reports_rates_and_the_runs_costs(summarize, tmp_path, capsys):
    (tmp_path / "eval").mkdir()
    _report(tmp_path / "eval" / "baseline.accents.json", 0.30)
    _report(tmp_path / "eval" / "baseline.orig.json", 0.01)
    _report(tmp_path / "eval" / "sft-full.accents.json", 0.05)
    _report(tmp_path / "eval" / "sft-full.orig.json", 0.02)
    (tmp_path / "sft-full").mkdir()
    summary = {
        "steps": 412,
        "seconds": 300.4,
        "metric": "eval_edit1_wer",
        "best_step": 400,
        "evaluations": [{"step": 0, "eval_edit1_wer": 0.5}, {"step": 412, "eval_edit1_wer": 0.1234}],
    }
    (tmp_path / "sft-full" / "finetune_summary.json").write_text(json.dumps(summary))
    (tmp_path / "sft-full.log").write_text(
        "preset 'full': 2,459,904 trainable of 2,459,904 parameters (100.00 %)\n"
    )
    assert summarize.main([str(tmp_path)]) == 0
    text = capsys.readouterr().out
    assert text.rstrip("\n") == (tmp_path / "summary.md").read_text().rstrip("\n")
    rows = {
        line.split(" | ")[0].lstrip("| "): line.split(" | ")
        for line in text.splitlines()
        if line.startswith("| ")
    }
    assert rows["shipped model (no tuning)"][6:9] == ["30.00 / 60.00", "31.00 / 61.00", "32.00 / 62.00"]
    full = rows["sft-full"]
    assert full[1:6] == ["2,459,904", "412", "300", "12.34", "400"]
    assert full[6] == "5.00 / 10.00" and full[9] == "2.00 / 4.00"
    # A run that did not happen is a row of dashes.
    assert set(rows["sft-lora"][1:]) <= {"–", "– |"}


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_recipe_script_parses():
    subprocess.run(["bash", "-n", str(REPO / "examples" / "adapt_tiny_synth.sh")], check=True)


def test_paired_difference(summarize):
    base = ([1, 0, 2], [5, 5, 10])
    delta, low, high, better, worse = summarize.paired_difference(base, ([0, 0, 3], [5, 5, 10]))
    assert (delta, better, worse) == (0.0, 1, 1) and low < 0 < high
    # Identical predictions: no change, and no uncertainty about it.
    assert summarize.paired_difference(base, base)[:3] == (0.0, 0.0, 0.0)
    # Better on every utterance that had errors: 3 of 20 words fewer, no resample above zero.
    delta, low, high, better, worse = summarize.paired_difference(base, ([0, 0, 0], [5, 5, 10]))
    assert delta == pytest.approx(-15.0) and low < high <= 0 and (better, worse) == (2, 0)
    with pytest.raises(ValueError, match="same utterances"):
        summarize.paired_difference(base, ([0, 0], [5, 5]))
