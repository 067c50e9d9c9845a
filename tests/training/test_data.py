"""``granite_nar.training.data``: manifest reading and filtering, characters the tokenizer cannot represent, the
CTC fit rule, the collator and the lazy dataset. The tokenizer comes from ``conftest.py``."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from testers import BLANK

from granite_nar.audio.feature_extraction_granite_speech_nar import GraniteSpeechNarFeatureExtractor
from granite_nar.lengths import num_bpe_windows, num_encoder_frames
from granite_nar.training import (
    DataCollatorForGraniteSpeechNar,
    ManifestError,
    ManifestFilter,
    SpeechDataset,
    ctc_symbols_needed,
    read_manifest,
    unknown_characters,
)

sf = pytest.importorskip("soundfile")


# -- manifest -------------------------------------------------------------------------------------------------


def _write_wav(path, seconds):
    sf.write(str(path), np.zeros(int(seconds * 16000), dtype=np.float32), 16000)


def test_bad_manifest_rows_are_counted_and_skipped(tmp_path, tokenizer):
    (tmp_path / "wavs").mkdir()
    for name, seconds in [("ok", 2.0), ("short", 0.1), ("long", 9.0), ("noisy", 2.0), ("nodur", 1.5)]:
        _write_wav(tmp_path / "wavs" / f"{name}.wav", seconds)
    (tmp_path / "wavs" / "broken.wav").write_bytes(b"not a wav file")
    lines = [
        {"audio_path": "wavs/ok.wav", "text": "the red cat sees a dog", "duration_sec": 2.0, "cer": 0.1},
        "{not json",
        {"audio_path": "wavs/missing.wav", "text": "hello", "duration_sec": 1.0},
        {"audio_path": "wavs/ok.wav", "text": "   ", "duration_sec": 2.0},
        # 0.1 s = 5 encoder frames = 2 BPE windows: far too short for this transcript.
        {"audio_path": "wavs/short.wav", "text": "the red cat sees a dog", "duration_sec": 0.1, "cer": 0},
        {"audio_path": "wavs/long.wav", "text": "a cat", "duration_sec": 9.0},
        {"audio_path": "wavs/noisy.wav", "text": "a cat", "duration_sec": 2.0, "cer": 0.6},
        {"audio_path": "wavs/nodur.wav", "text": "a big dog"},  # duration read from the header
        {"audio_path": "wavs/broken.wav", "text": "a dog"},
        {"text": "no audio"},
    ]
    manifest = tmp_path / "m.jsonl"
    manifest.write_text("\n".join(x if isinstance(x, str) else json.dumps(x) for x in lines) + "\n\n")
    filters = ManifestFilter(max_duration_sec=8.0, score_field="cer", max_score=0.5)
    rows, report = read_manifest(manifest, tokenizer=tokenizer, filters=filters)

    assert [r.line for r in rows] == [1] and report.kept == 1 and report.total == 10
    assert dict(report.skipped) == {
        "invalid JSON": 1,
        "missing audio file": 1,
        "empty text": 1,
        "audio too short for its transcript": 1,
        "longer than max_duration_sec": 1,
        "cer above max_score": 1,
        "no numeric cer": 1,  # the header-duration row has no score, so the score filter drops it
        "unreadable audio": 1,
        "no audio_path": 1,
    }
    assert report.examples["missing audio file"] == [3]
    assert rows[0].audio_path == tmp_path / "wavs" / "ok.wav" and rows[0].extra == {"cer": 0.1}
    assert "kept 1 of 10" in str(report)

    # Without the score filter the row without duration is kept, its duration from the file header.
    rows, report = read_manifest(manifest, tokenizer=tokenizer, filters=ManifestFilter(max_duration_sec=8.0))
    assert [(r.line, r.duration_sec) for r in rows] == [(1, 2.0), (7, 2.0), (8, 1.5)]
    # Without a tokenizer the transcript-length checks cannot run: the short row is kept.
    rows, report = read_manifest(manifest, filters=ManifestFilter(max_duration_sec=8.0))
    assert [r.line for r in rows] == [1, 5, 7, 8]
    # An audio root other than the manifest's folder.
    other = tmp_path / "elsewhere"
    other.mkdir()
    (other / "m.jsonl").write_text(json.dumps(lines[0]) + "\n")
    rows, _ = read_manifest(other / "m.jsonl", audio_root=tmp_path, tokenizer=tokenizer)
    assert len(rows) == 1


def test_ctc_fit_rule_counts_repeats():
    assert ctc_symbols_needed([1, 2, 3]) == 3
    assert ctc_symbols_needed([1, 1, 2, 2, 2]) == 8  # three blanks separate the repeats
    assert num_bpe_windows(num_encoder_frames(16000), 4) == 13  # 1 s = 50 frames = 13 windows of 80 ms


# -- collator and dataset -------------------------------------------------------------------------------------


def test_collator_labels_decode_back_to_the_text(tokenizer):
    fe = GraniteSpeechNarFeatureExtractor()
    collator = DataCollatorForGraniteSpeechNar(fe, tokenizer)
    texts = ["the red cat sees two small dogs", "a cat", "where is my yellow bird"]
    waves = [
        np.random.default_rng(i).standard_normal(n).astype(np.float32) * 0.1
        for i, n in enumerate([8000, 16000, 12345])
    ]
    batch = collator([{"audio": w, "text": t} for w, t in zip(waves, texts, strict=True)])

    decoded = [
        tokenizer.decode(batch["labels"][b, : int(n)].tolist(), skip_special_tokens=True)
        for b, n in enumerate(batch["label_lengths"])
    ]
    assert decoded == texts
    assert batch["labels"][1, int(batch["label_lengths"][1]) :].eq(-100).all()
    assert BLANK not in batch["labels"].tolist()
    assert batch["input_features_mask"].sum(1).tolist() == [num_encoder_frames(len(w)) for w in waves]
    # Precomputed features (the dataset's cached mode) give the same batch.
    feats = [
        {"input_features": fe(w)["input_features"][0], "text": t} for w, t in zip(waves, texts, strict=True)
    ]
    again = collator(feats)
    assert torch.equal(again["input_features_mask"], batch["input_features_mask"])
    torch.testing.assert_close(again["input_features"], batch["input_features"])


def test_collator_character_labels(tokenizer):
    collator = DataCollatorForGraniteSpeechNar(
        GraniteSpeechNarFeatureExtractor(), tokenizer, char_vocabulary=" abc"
    )
    batch = collator([{"audio": np.zeros(3200, np.float32), "text": t} for t in ["a cab", "b?"]])
    assert batch["char_labels"].tolist() == [[2, 1, 4, 2, 3], [3, -100, -100, -100, -100]]
    assert batch["char_label_lengths"].tolist() == [5, 1]  # "?" is not in the vocabulary


def test_dataset_loads_lazily_and_caches(tmp_path):
    _write_wav(tmp_path / "a.wav", 1.0)
    (tmp_path / "m.jsonl").write_text(json.dumps({"audio_path": "a.wav", "text": "a cat"}) + "\n")
    rows, _ = read_manifest(tmp_path / "m.jsonl")
    plain = SpeechDataset(rows)
    assert plain[0]["audio"].shape == (16000,) and plain.lengths == [50]
    cached = SpeechDataset(rows, GraniteSpeechNarFeatureExtractor(), cache_features=True)
    first = cached[0]["input_features"]
    (tmp_path / "a.wav").unlink()  # served from the cache from now on
    assert cached[0]["input_features"] is first and first.shape == (50, 160)


# -- characters the tokenizer cannot represent ----------------------------------------------------------------


def _manifest_with_texts(folder, texts):
    _write_wav(folder / "a.wav", 3.0)
    lines = [json.dumps({"audio_path": "a.wav", "text": t, "duration_sec": 3.0}) for t in texts]
    (folder / "m.jsonl").write_text("\n".join(lines) + "\n")
    return folder / "m.jsonl"


def test_unknown_characters_names_what_the_tokenizer_maps_to_unk(tokenizer):
    assert unknown_characters(tokenizer, "the red cat") == ""
    # In order of appearance; "42!" is one fused <unk> whose offsets cover all three characters.
    assert unknown_characters(tokenizer, "Hello the cat 42!") == "H42!"

    class NoOffsets:  # a tokenizer without offset mappings (a slow one): each character is tried alone
        unk_token_id = tokenizer.unk_token_id

        def __call__(self, text, add_special_tokens=True, return_offsets_mapping=False):
            if return_offsets_mapping:
                raise NotImplementedError
            return tokenizer(text, add_special_tokens=add_special_tokens)

    assert unknown_characters(NoOffsets(), "Hello the cat 42!") == "H42!"


def test_rows_with_unknown_characters_are_reported_and_refused_above_the_limit(tmp_path, tokenizer):
    manifest = _manifest_with_texts(
        tmp_path, ["the red cat", "The red cat!", "a dog", "the dog", "my Cat sees a dog", "a cat"]
    )
    # Counted, not skipped: the rows are kept (trained on as <unk>) and the report names the characters.
    rows, report = read_manifest(manifest, tokenizer=tokenizer, max_unknown_fraction=None)
    assert len(rows) == report.kept == 6 and report.num_skipped == 0
    assert report.unknown_rows == 2 and report.unknown_examples == [2, 5]
    assert dict(report.unknown_characters) == {"T": 1, "!": 1, "C": 1}
    assert report.unknown_fraction == pytest.approx(2 / 6)
    assert (
        "       2  kept rows with characters the tokenizer cannot represent, trained on as <unk> (lines 2, 5): "
        "'T' (1 row), '!' (1 row), 'C' (1 row)"
    ) in str(report).splitlines()

    # The default limit (1 % of the kept rows) refuses the manifest, with the report attached.
    with pytest.raises(ManifestError) as caught:
        read_manifest(manifest, tokenizer=tokenizer)
    assert str(caught.value) == (
        f"{manifest}: 2 of 6 kept rows (33.3 %) have characters the tokenizer cannot represent, which would be "
        "trained on as <unk>: 'T' (1 row), '!' (1 row), 'C' (1 row) (first lines 2, 5); the limit is "
        "max_unknown_fraction=0.01. Normalise the text to the tokenizer's alphabet (e.g. lowercase it, spell "
        "out digits) or raise the limit."
    )
    assert isinstance(caught.value, ValueError) and caught.value.report.unknown_rows == 2
    # At the limit is allowed, above it is not.
    assert read_manifest(manifest, tokenizer=tokenizer, max_unknown_fraction=2 / 6)[1].unknown_rows == 2
    with pytest.raises(ManifestError, match=r"2 of 6 kept rows"):
        read_manifest(manifest, tokenizer=tokenizer, max_unknown_fraction=0.3)
    with pytest.raises(ValueError, match=r"max_unknown_fraction must be in \[0, 1\] or None, got 2"):
        read_manifest(manifest, tokenizer=tokenizer, max_unknown_fraction=2)
    # Without a tokenizer nothing can be checked.
    assert read_manifest(manifest)[1].unknown_rows == 0


def test_report_limit_counts_the_rows_left_out(tmp_path, tokenizer):
    manifest = _manifest_with_texts(tmp_path, ["the red cat", "a dog", "the dog", "a cat"])
    rows, report = read_manifest(manifest, tokenizer=tokenizer)
    assert report.limit(rows, None, "beyond max") == rows and report.limit(rows, 9, "beyond max") == rows
    kept = report.limit(rows, 1, "beyond --max-train")
    assert [r.line for r in kept] == [1]
    assert (report.kept, report.kept_seconds, report.total) == (1, 3.0, 4)
    assert dict(report.skipped) == {"beyond --max-train": 3} and report.examples["beyond --max-train"] == [
        2,
        3,
        4,
    ]
    assert str(report).splitlines()[0] == f"{manifest}: kept 1 of 4 rows (0.00 h), skipped 3"
