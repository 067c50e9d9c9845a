"""``granite-nar evaluate`` and :func:`granite_nar.training.evaluate_manifest` on the tiny trained model.

One command-line run over a manifest of the four fixture utterances plus bad rows is shared by most tests:
its report must agree with error rates recomputed from its own predictions file, its slices must add up to
the whole, its failures must each be one stderr line naming the file, and its draft must score what
:class:`~granite_nar.training.TranscriptionEvaluator` gives on the same data.
"""

from __future__ import annotations

import contextlib
import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from granite_nar.training import (
    EditCounts,
    SliceSpec,
    char_error_rate,
    evaluate_manifest,
    word_error_rate,
)
from granite_nar.training.metrics import basic_normalize
from granite_nar.training.normalizers import NORMALIZER_NAMES
from granite_nar_cli import main
from granite_nar_cli.evaluate import NORMALIZE_CHOICES

REPO = Path(__file__).resolve().parents[2]
TINY = REPO / "examples" / "models" / "tiny-synth"
FIXTURES = REPO / "tests" / "fixtures" / "tiny_synth"
EXPECTED = json.loads((FIXTURES / "expected.json").read_text())
STEPS = ("draft", "edit1", "edit2")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """A manifest in another folder: the four fixture rows (absolute paths, extra fields, one duration
    written as exactly 2.2, one row without duration_sec), a missing file, a row that is not JSON, a row
    without text and a 31 s file (longer than the editor takes)."""
    root = tmp_path_factory.mktemp("eval")
    fixture_rows = [json.loads(line) for line in (FIXTURES / "manifest.jsonl").read_text().splitlines()]
    long_wav = root / "long.wav"
    sf.write(long_wav, np.zeros(31 * 16000, np.float32), 16000, subtype="PCM_16")
    speakers = ["alice", "bob", "alice", None]
    lines = []
    for k, row in enumerate(fixture_rows):
        row = {**row, "audio_path": str(FIXTURES / row["audio_path"])}
        if speakers[k] is not None:
            row["speaker"] = speakers[k]
        if k == 3:
            row["duration_sec"] = 2.2  # on an edge: belongs to the bin that starts there
        if k == 1:
            del row["duration_sec"]  # read from the audio (2.30 s)
        lines.append(json.dumps(row))
        if k == 1:
            lines += [
                json.dumps({"audio_path": "missing.wav", "text": "a b", "speaker": "bob"}),
                "{this is not json",
                "",  # blank lines are not rows
                json.dumps({"audio_path": "long.wav", "text": "silence"}),
                json.dumps({"audio_path": str(FIXTURES / "test_000006.wav")}),
            ]
    manifest = root / "manifest.jsonl"
    manifest.write_text("\n".join(lines) + "\n")
    return root, manifest


@pytest.fixture(scope="module")
def run(corpus):
    """``granite-nar evaluate`` in-process with slices, --json and --predictions: status, out, err, files."""
    root, manifest = corpus
    report, predictions = root / "report.json", root / "predictions.jsonl"
    argv = [
        "evaluate",
        str(manifest),
        "--model",
        str(TINY),
        "--slice-by",
        "duration_sec:2,2.2",
        "speaker",
        "--json",
        str(report),
        "--predictions",
        str(predictions),
        "--threads",
        "1",
        "--batch-size",
        "3",
    ]
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        status = main(argv)
    records = [json.loads(line) for line in predictions.read_text().splitlines()]
    return status, out.getvalue(), err.getvalue(), json.loads(report.read_text()), records


def test_failed_rows_are_one_line_each_and_the_others_are_scored(run, corpus):
    status, _, err, report, records = run
    root, manifest = corpus
    assert status == 1
    lines = err.strip().splitlines()
    assert lines[-1] == "granite-nar: 4 of 8 row(s) failed"
    failures = sorted(lines[:-1])
    assert len(failures) == 4 and all(
        line.startswith(f"granite-nar: error: {manifest} line ") for line in failures
    )
    assert f"{manifest} line 3: {root / 'missing.wav'}: no such file" in err
    assert f"{manifest} line 4: not a JSON object" in err
    assert f"{manifest} line 6: {root / 'long.wav'}: 31.0 s of audio is longer than 30 s" in err
    assert f"{manifest} line 7: {FIXTURES / 'test_000006.wav'}: no text" in err
    assert (report["rows"], report["scored"], report["failed"]) == (8, 4, 4)
    assert [f["line"] for f in report["failures"]] == [3, 4, 6, 7]
    # The predictions file has every row, in manifest order; failed rows carry their error.
    assert [r["line"] for r in records] == [1, 2, 3, 4, 6, 7, 8, 9]
    assert [r["error"] is None for r in records] == [True, True, False, False, False, False, True, True]


def test_hypotheses_are_the_models_transcripts_of_each_step(run):
    records = [r for r in run[4] if r["error"] is None]
    assert [r["reference"] for r in records] == [e["reference"] for e in EXPECTED]
    for record, expected in zip(records, EXPECTED, strict=True):
        assert {step: record["steps"][step]["hypothesis"] for step in STEPS} == {
            s: expected[s] for s in STEPS
        }


def test_report_equals_error_rates_recomputed_from_the_predictions(run):
    report, records = run[3], [r for r in run[4] if r["error"] is None]
    refs = [r["reference"] for r in records]
    for step in STEPS:
        hyps = [r["steps"][step]["hypothesis"] for r in records]
        wer = word_error_rate(refs, hyps, normalize=basic_normalize, tokenize=str.split)
        cer = char_error_rate(refs, hyps, normalize=basic_normalize)
        scored = report["overall"]["steps"][step]
        assert scored["wer"] == wer.rate and scored["cer"] == cer.rate
        assert EditCounts(**scored["word_errors"]) == wer.counts
        assert EditCounts(**scored["char_errors"]) == cer.counts
        # Per utterance too.
        for record in records:
            one = char_error_rate(record["reference"], record["steps"][step]["hypothesis"])
            assert EditCounts(**record["steps"][step]["char_errors"]) == one.counts
    overall = report["overall"]
    assert overall["gap"]["cer"] == overall["steps"]["draft"]["cer"] - overall["steps"]["edit2"]["cer"]
    assert overall["gap"]["wer"] == overall["steps"]["draft"]["wer"] - overall["steps"]["edit2"]["wer"]
    assert overall["best_step"] == min(
        STEPS, key=lambda s: (overall["steps"][s]["cer"], overall["steps"][s]["wer"])
    )
    assert overall["audio_seconds"] == pytest.approx(sum(r["audio_seconds"] for r in records))
    assert overall["audio_seconds"] == pytest.approx(1.9943125 + 2.30225 + 2.1106875 + 2.21025)


def test_slices_partition_the_utterances_and_add_up(run):
    report = run[3]
    overall = report["overall"]
    assert set(report["slices"]) == {"duration_sec:2,2.2", "speaker"}
    for slices in report["slices"].values():
        assert sum(s["utterances"] for s in slices) == overall["utterances"] == 4
        assert sum(s["audio_seconds"] for s in slices) == pytest.approx(overall["audio_seconds"])
        for step in STEPS:
            for kind in ("word_errors", "char_errors"):
                total = EditCounts(0, 0, 0, 0)
                for s in slices:
                    total = total + EditCounts(**s["steps"][step][kind])
                assert total == EditCounts(**overall["steps"][step][kind])


def test_bins_follow_the_edges(run):
    report, records = run[3], [r for r in run[4] if r["error"] is None]
    # Durations 1.99, 2.30 (read from the audio), 2.11 and 2.2 (the manifest's, on the edge).
    assert [r["slices"]["duration_sec:2,2.2"] for r in records] == ["<2", ">=2.2", "2-2.2", ">=2.2"]
    assert [r["slices"]["speaker"] for r in records] == ["alice", "bob", "alice", "(missing)"]
    by_bin = {s["value"]: s["utterances"] for s in report["slices"]["duration_sec:2,2.2"]}
    assert list(by_bin.items()) == [("<2", 1), ("2-2.2", 1), (">=2.2", 2)]
    speakers = [(s["value"], s["utterances"]) for s in report["slices"]["speaker"]]
    assert speakers == [("alice", 2), ("bob", 1), ("(missing)", 1)]
    # A slice's scores are those of its utterances alone: the 2-2.2 bin is the third utterance.
    third = next(r for r in records if r["slices"]["duration_sec:2,2.2"] == "2-2.2")
    middle = next(s for s in report["slices"]["duration_sec:2,2.2"] if s["value"] == "2-2.2")
    assert middle["steps"]["draft"]["cer"] == third["steps"]["draft"]["cer"]
    assert middle["steps"]["draft"]["cer"] == pytest.approx(EXPECTED[2]["draft_cer"], abs=1e-6)


def test_slice_spec_bins():
    spec = SliceSpec.parse("duration_sec:5,10,20")
    assert spec.key == "duration_sec:5,10,20"
    assert spec.bin_labels() == ["<5", "5-10", "10-20", ">=20"]
    values = [4.999, 5, 9.5, 10, 19.99, 20, 300]
    assert [spec.value_of({"duration_sec": v}) for v in values] == [
        "<5",
        "5-10",
        "5-10",
        "10-20",
        "10-20",
        ">=20",
        ">=20",
    ]
    for fields in ({}, {"duration_sec": "long"}, {"duration_sec": True}, {"duration_sec": float("nan")}):
        assert spec.value_of(fields) == "(missing)"
    assert SliceSpec.parse("snr:0.5").bin_labels() == ["<0.5", ">=0.5"]
    by_value = SliceSpec.parse("speaker")
    assert [by_value.value_of({"speaker": v}) for v in ("ann", 3, None)] == ["ann", "3", "(missing)"]
    assert by_value.order({"bob", "(missing)", "ann"}) == ["ann", "bob", "(missing)"]
    for bad, message in [
        ("d:10,5", "increasing"),
        ("d:5,x", "numbers separated by commas"),
        (":5", "no field"),
    ]:
        with pytest.raises(ValueError, match=message):
            SliceSpec.parse(bad)


def test_table_shows_the_reports_numbers(run):
    out, report = run[1], run[3]
    rows = {line.split()[0]: line.split() for line in out.splitlines() if line.split()}
    overall = report["overall"]
    expected = [f"{100 * overall['steps'][s][k]:.2f}" for s in STEPS for k in ("cer", "wer")]
    assert rows["all"][1:3] == ["4", f"{overall['audio_seconds']:.1f}"]
    assert rows["all"][3:9] == expected
    assert rows["all"][-1] == overall["best_step"]
    for label in (
        "duration_sec:<2",
        "duration_sec:2-2.2",
        "duration_sec:>=2.2",
        "speaker:alice",
        "speaker:(missing)",
    ):
        assert label in rows
    assert "4 of 8 rows scored" in out


def test_rtfx_is_audio_over_compute(run):
    timing, audio = run[3]["timing"], run[3]["audio_seconds"]
    assert 0 < timing["model_seconds"] <= timing["total_seconds"]
    assert timing["rtfx"] == pytest.approx(audio / timing["model_seconds"])
    assert timing["rtfx_end_to_end"] == pytest.approx(audio / timing["total_seconds"])


def test_draft_and_edits_score_as_the_training_evaluator(run):
    from granite_nar import GraniteSpeechNarForCTC, GraniteSpeechNarProcessor
    from granite_nar.training import (
        DataCollatorForGraniteSpeechNar,
        SpeechDataset,
        TranscriptionEvaluator,
        read_manifest,
    )

    processor = GraniteSpeechNarProcessor.from_pretrained(TINY)
    model = GraniteSpeechNarForCTC.from_pretrained(TINY).eval()
    rows, _ = read_manifest(FIXTURES / "manifest.jsonl", tokenizer=processor.tokenizer)
    dataset = SpeechDataset(rows, processor.feature_extractor)
    collator = DataCollatorForGraniteSpeechNar.from_processor(processor)
    evaluator = TranscriptionEvaluator(
        dataset, collator, processor.tokenizer, num_editing_steps=2, batch_size=2
    )
    scores = evaluator.score(*evaluator.transcribe(model)[:2])
    overall = run[3]["overall"]["steps"]
    for step in STEPS:
        assert overall[step]["cer"] == pytest.approx(scores[f"{step}_cer"])
        assert overall[step]["wer"] == pytest.approx(scores[f"{step}_wer"])


def test_library_call_with_limit_and_normaliser(corpus):
    _, manifest = corpus
    failures = []
    report = evaluate_manifest(
        manifest,
        str(TINY),
        num_editing_steps=1,
        normalizer="none",
        limit=3,
        device="cpu",
        on_failure=failures.append,
    )
    # The first three rows: two utterances and the missing file; steps draft and edit1 only.
    assert (report.rows, len(report.utterances), [f.line for f in failures]) == (3, 2, [3])
    assert [s.name for s in report.overall.steps] == ["draft", "edit1"]
    assert report.normalizer == "none"
    hyps = [u.hypotheses[1] for u in report.utterances]
    assert (
        report.overall.steps[1].chars
        == char_error_rate([u.reference for u in report.utterances], hyps, normalize=None).counts
    )
    assert hyps == [EXPECTED[0]["edit1"], EXPECTED[1]["edit1"]]


def test_usage_errors_are_one_line_and_exit_2(corpus, tmp_path, capsys):
    _, manifest = corpus
    mapping = tmp_path / "mapping.json"
    mapping.write_text('{"colour": "color"}')
    cases = [
        (
            ["evaluate", str(tmp_path / "none.jsonl"), "-m", str(TINY)],
            f"{tmp_path / 'none.jsonl'}: no such manifest file",
        ),
        (["evaluate", str(manifest), "-m", str(tmp_path / "no-model")], "no such model folder"),
        (
            ["evaluate", str(manifest), "-m", str(TINY), "--slice-by", "duration_sec:10,5"],
            "bin edges must be",
        ),
        (
            ["evaluate", str(manifest), "-m", str(TINY), "--spelling-mapping", str(mapping)],
            "'english' normalisation",
        ),
        (
            ["evaluate", str(manifest), "-m", str(TINY), "--normalize", "none", "case"],
            "'none' cannot be combined",
        ),
        (
            ["evaluate", str(manifest), "-m", str(TINY), "--json", str(tmp_path / "no" / "r.json")],
            "folder does not exist",
        ),
    ]
    for argv, message in cases:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("granite-nar: error: ") and message in err[0], (argv, err)
    assert main(["evaluate", str(manifest), "-m", str(TINY), "--normalize", "lowercase"]) == 2
    assert "invalid choice: 'lowercase'" in capsys.readouterr().err


def test_all_rows_scored_exits_0(tmp_path, capsys):
    manifest = tmp_path / "two.jsonl"
    rows = (FIXTURES / "manifest.jsonl").read_text().splitlines()[:2]
    rows = [json.loads(line) for line in rows]
    manifest.write_text(
        "".join(json.dumps({**r, "audio_path": str(FIXTURES / r["audio_path"])}) + "\n" for r in rows)
    )
    assert main(["evaluate", str(manifest), "-m", str(TINY), "--editing-steps", "0", "--threads", "1"]) == 0
    out, err = capsys.readouterr()
    assert err == "" and "2 of 2 rows scored" in out
    header = next(line for line in out.splitlines() if line.startswith("slice"))
    assert "draft CER" in header and "edit1" not in header


def test_parser_choices_match_the_library_and_help_is_light():
    assert NORMALIZE_CHOICES == NORMALIZER_NAMES
    code = (
        "import sys, granite_nar_cli\n"
        "assert granite_nar_cli.main(['evaluate', '--help']) == 0\n"
        "assert granite_nar_cli.main(['evaluate', 'm.jsonl', '-m', 'no-such-model-folder']) == 2\n"
        "print('HEAVY', sorted(m for m in ('torch', 'transformers', 'granite_nar') if m in sys.modules))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "HEAVY []" in proc.stdout and "--slice-by" in proc.stdout
