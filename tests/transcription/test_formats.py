"""``granite_nar.transcription.formats``: subtitles read back with the ``srt`` and ``webvtt-py`` parsers keep
every word once and in order, within the cue limits and the audio; json, jsonl and tsv read back with the
standard library; files are written whole; an interrupted jsonl run can be resumed."""

import csv
import html
import io
import json
import os
import re

import pytest
import srt
import webvtt

from granite_nar.transcription import formats
from granite_nar.transcription.formats import (
    ALL_FORMATS,
    JsonlWriter,
    SubtitleOptions,
    completed_sources,
    expand_formats,
    format_timestamp,
    outputs_exist,
    subtitle_cues,
    to_json,
    to_jsonl_record,
    to_srt,
    to_tsv,
    to_txt,
    to_vtt,
    write_outputs,
)
from granite_nar.transcription.results import Segment, TranscriptionResult, Word

LONG_WORDS = (
    "so the committee met again on thursday and after a long discussion about the budget they finally agreed "
    "to postpone the vote until every member had read the final report from the auditors and the "
    "lawyers of the city council"
).split()
assert len(LONG_WORDS) == 40


def timed_words(text: str, start: float, end: float, confidence: float = 0.9) -> list[Word]:
    """The words of ``text`` evenly over [start, end], each with a short pause after it."""
    pieces = text.split()
    step = (end - start) / len(pieces)
    return [
        Word(w, round(start + i * step, 4), round(start + (i + 0.8) * step, 4), confidence - 0.01 * i)
        for i, w in enumerate(pieces)
    ]


def segment(id_: int, start: float, end: float, text: str, with_words: bool = True, draft=None) -> Segment:
    words = timed_words(text, start, end) if with_words and text else ([] if with_words else None)
    return Segment(id=id_, start=start, end=end, text=text, draft=draft, words=words)


def make_result(segments: list[Segment], duration: float, **kwargs) -> TranscriptionResult:
    text = " ".join(s.text for s in segments if s.text)
    return TranscriptionResult(
        index=0, source="talk.wav", text=text, duration_sec=duration, segments=segments, **kwargs
    )


@pytest.fixture
def result() -> TranscriptionResult:
    """Several segments with words (punctuation, non-ASCII, markup characters), an empty one, and a long
    one of 40 words over 20 s."""
    return make_result(
        [
            segment(0, 0.0, 4.0, "Grüße aus Zürich! The café opened at nine.", draft="gruse aus zurich"),
            segment(1, 4.0, 5.5, ""),
            segment(2, 5.5, 9.0, 'Fish & chips <cost> "£5" — naïve, but fine.'),
            segment(3, 9.0, 29.0, " ".join(LONG_WORDS)),
            segment(4, 29.0, 30.0, "Antidisestablishmentarianism-flavoured hot tea and a slice of cake."),
        ],
        duration=30.25,
        draft="gruse aus zurich the cafe",
    )


@pytest.fixture
def failed() -> TranscriptionResult:
    return TranscriptionResult(index=1, source="broken.wav", error="broken.wav: not an audio file")


def transcript_words(result: TranscriptionResult) -> list[str]:
    return [w.word for s in result.segments for w in (s.words or [])] or result.text.split()


def srt_cues(text: str) -> list[tuple[float, float, list[str]]]:
    return [(c.start.total_seconds(), c.end.total_seconds(), c.content.split("\n")) for c in srt.parse(text)]


def _seconds(stamp: str) -> float:
    hours, minutes, seconds = stamp.split(":")
    return int(hours) * 3600 + int(minutes) * 60 + float(seconds)


def vtt_cues(text: str) -> list[tuple[float, float, list[str]]]:
    return [
        (_seconds(c.start), _seconds(c.end), [html.unescape(line) for line in c.lines])
        for c in webvtt.from_string(text).captions
    ]


PARSERS = {"srt": (to_srt, srt_cues), "vtt": (to_vtt, vtt_cues)}
OPTIONS = [
    SubtitleOptions(),
    SubtitleOptions(max_cue_seconds=1.5, max_line_chars=16, max_lines=1),
    SubtitleOptions(max_cue_seconds=3.0, max_line_chars=20, max_lines=3),
]


def assert_good_cues(cues, words: list[str], options: SubtitleOptions, duration: float) -> None:
    """Every word exactly once and in order; times ordered, disjoint and inside the audio; the limits."""
    assert [w for _, _, lines in cues for line in lines for w in line.split()] == words
    previous_end = 0.0
    for start, end, lines in cues:
        assert previous_end <= start < end <= duration + 1e-9
        previous_end = end
        assert 1 <= len(lines) <= options.max_lines
        for line in lines:
            assert line and (len(line) <= options.max_line_chars or " " not in line), line
        if sum(len(line.split()) for line in lines) > 1:
            assert end - start <= options.max_cue_seconds + 1e-9, (start, end, lines)


@pytest.mark.parametrize("fmt", ["srt", "vtt"])
@pytest.mark.parametrize("options", OPTIONS, ids=["default", "one-short-line", "three-lines"])
def test_subtitles_parse_and_keep_every_word_within_the_limits(result, fmt, options):
    render, parse = PARSERS[fmt]
    cues = parse(render(result, options))
    assert_good_cues(cues, transcript_words(result), options, result.duration_sec)
    # The 40 words over 20 s cannot fit one cue of at most 6 s.
    assert len(cues) >= 4


def test_vtt_has_its_header_and_escapes_markup(result):
    text = to_vtt(result)
    assert text.startswith("WEBVTT\n\n")
    assert "Fish &amp; chips &lt;cost&gt;" in text and "<cost>" not in text


def test_srt_numbers_cues_from_one_with_comma_times(result):
    parsed = list(srt.parse(to_srt(result)))
    assert [c.index for c in parsed] == list(range(1, len(parsed) + 1))
    assert to_srt(result).startswith("1\n00:00:00,000 --> ")


def test_cues_never_mix_segments_and_span_their_words(result):
    cues = subtitle_cues(result, SubtitleOptions(max_cue_seconds=2.0))
    words = [(s.id, w) for s in result.segments for w in s.words or []]
    position = 0
    for cue in cues:
        count = len(cue.text.split())
        mine = words[position : position + count]
        position += count
        assert len({seg_id for seg_id, _ in mine}) == 1, cue
        assert cue.start == pytest.approx(mine[0][1].start, abs=5e-4)
        assert cue.end == pytest.approx(max(w.end for _, w in mine), abs=5e-4)
    assert position == len(words)


def test_a_cue_that_must_stop_early_stops_after_a_sentence_end():
    words = [Word("Hello", 0.0, 0.3, 1.0), Word("there.", 0.4, 0.8, 1.0)] + timed_words(
        "This is a longer sentence that follows", 1.0, 4.0
    )
    seg = Segment(0, 0.0, 4.0, " ".join(w.word for w in words), words=words)
    cues = subtitle_cues(make_result([seg], 4.0), SubtitleOptions(max_line_chars=30, max_lines=1))
    # Greedy filling would give "Hello there. This is a longer".
    assert cues[0].lines == ["Hello there."]
    assert cues[1].lines[0].startswith("This is")


def test_without_punctuation_a_cue_is_filled_and_its_lines_balanced():
    seg = segment(0, 0.0, 4.0, "one two three four five six seven eight nine ten")
    cues = subtitle_cues(make_result([seg], 4.0))
    assert len(cues) == 1
    # Filling the first line would leave "nine ten" alone on the second.
    assert cues[0].lines == ["one two three four five", "six seven eight nine ten"]


def test_text_without_words_is_wrapped_and_split_over_the_segment_in_proportion():
    long_text = " ".join(LONG_WORDS)
    short = Segment(0, 1.0, 3.0, "A short line.")
    long = Segment(1, 10.0, 20.0, long_text)
    cues = subtitle_cues(make_result([short, long], 25.0))
    assert (cues[0].start, cues[0].end, cues[0].lines) == (1.0, 3.0, ["A short line."])
    rest = cues[1:]
    assert len(rest) >= 3  # 40 words need more than two lines of 42 characters
    assert rest[0].start == 10.0 and rest[-1].end == 20.0
    assert all(a.end == b.start for a, b in zip(rest, rest[1:], strict=False))  # contiguous
    assert [w for c in rest for w in c.text.split()] == LONG_WORDS
    for cue in rest:
        share = (len(cue.text.replace("\n", " ")) + 1) / (len(long_text) + 1)
        assert cue.end - cue.start == pytest.approx(10.0 * share, abs=0.15)


def test_empty_segments_make_no_cue():
    empty = make_result([segment(0, 0.0, 1.0, ""), Segment(1, 1.0, 2.0, "   ", words=None)], 2.0)
    assert subtitle_cues(empty) == []
    assert list(srt.parse(to_srt(empty))) == []
    assert webvtt.from_string(to_vtt(empty)).captions == []
    assert to_txt(empty) == ""


@pytest.mark.parametrize("duration", [3.0, None], ids=["known-duration", "unknown-duration"])
def test_cue_times_are_repaired_into_the_audio(duration):
    # Overlapping words, a zero-length word, a word past the end of the audio and one before its start.
    words = [
        Word("early", -0.2, 0.5, 0.9),
        Word("overlap.", 0.3, 0.3, 0.9),
        Word("late", 2.9, 3.4, 0.9),
    ]
    segs = [
        Segment(0, 0.0, 1.0, "early overlap.", words=words[:2]),
        Segment(1, 0.4, 3.0, "late", words=words[2:]),
    ]
    res = make_result(segs, duration)
    options = SubtitleOptions(max_line_chars=6, max_lines=1)  # one word a cue
    for render, parse in PARSERS.values():
        cues = parse(render(res, options))
        assert_good_cues(cues, ["early", "overlap.", "late"], options, duration or float("inf"))
        assert all(end - start >= 0.001 for start, end, _ in cues)
    if duration is None:
        assert cues[-1][1] == 3.4  # nothing to clamp the last word to


def test_format_timestamp_follows_whisper():
    assert format_timestamp(1.5, True, ",") == "00:00:01,500"
    assert format_timestamp(1.5) == "00:01.500"
    assert format_timestamp(3661.0014, True, ".") == "01:01:01.001"
    assert format_timestamp(59.9996) == "01:00.000"  # rounding carries into the minutes
    assert format_timestamp(7200.0) == "02:00:00.000"
    with pytest.raises(ValueError, match="-1"):
        format_timestamp(-1.0)


@pytest.mark.parametrize(
    "kwargs,name",
    [
        ({"max_cue_seconds": 0}, "max_cue_seconds"),
        ({"max_cue_seconds": float("nan")}, "max_cue_seconds"),
        ({"max_line_chars": 0}, "max_line_chars"),
        ({"max_line_chars": 10.5}, "max_line_chars"),
        ({"max_lines": -1}, "max_lines"),
        ({"max_lines": True}, "max_lines"),
    ],
)
def test_subtitle_options_refuse_bad_values(kwargs, name):
    with pytest.raises(ValueError, match=name):
        SubtitleOptions(**kwargs)


def test_subtitle_options_defaults():
    assert SubtitleOptions() == SubtitleOptions(max_cue_seconds=6.0, max_line_chars=42, max_lines=2)


def test_txt_is_one_line_per_non_empty_segment(result):
    assert to_txt(result).splitlines() == [s.text for s in result.segments if s.text]
    plain = TranscriptionResult(index=0, source="a.wav", text="just text", duration_sec=1.0)
    assert to_txt(plain) == "just text\n"


def test_json_round_trips_with_rounded_times(result):
    result.segments[0].words[0] = Word("Grüße", 0.123456, 0.45678, 0.987654)
    result.warning = "audio was truncated"
    raw = to_json(result)
    assert "Grüße" in raw  # UTF-8, not \u escapes
    data = json.loads(raw)
    assert data["source"] == "talk.wav" and data["text"] == result.text and data["duration_sec"] == 30.25
    assert data["warning"] == "audio was truncated" and "draft" not in data
    assert [s["text"] for s in data["segments"]] == [s.text for s in result.segments]
    assert data["segments"][1]["words"] == []
    assert data["segments"][0]["words"][0] == {
        "word": "Grüße",
        "start": 0.123,
        "end": 0.457,
        "confidence": 0.9877,
    }
    assert all("draft" not in s for s in data["segments"])

    with_drafts = json.loads(to_json(result, include_draft=True))
    assert with_drafts["draft"] == "gruse aus zurich the cafe"
    assert with_drafts["segments"][0]["draft"] == "gruse aus zurich"


def test_json_of_a_result_without_segments_has_one_segment_over_the_audio():
    plain = TranscriptionResult(index=0, source="a.wav", text="just text", duration_sec=2.5)
    data = json.loads(to_json(plain))
    assert data["segments"] == [{"id": 0, "start": 0.0, "end": 2.5, "text": "just text"}]
    assert "warning" not in data


def test_jsonl_record_keeps_the_cli_keys_and_adds_segments(result, failed):
    line = to_jsonl_record(result, include_draft=True)
    assert "\n" not in line
    record = json.loads(line)
    assert list(record)[:4] == ["path", "text", "duration_sec", "error"]
    assert record["path"] == "talk.wav" and record["error"] is None and record["draft"] == result.draft
    assert len(record["segments"]) == len(result.segments) and "warning" not in record

    bad = json.loads(to_jsonl_record(failed))
    assert bad == {"path": "broken.wav", "text": None, "duration_sec": None, "error": failed.error}

    plain = TranscriptionResult(index=0, source="a.wav", text="t", duration_sec=1.0, warning="short")
    assert json.loads(to_jsonl_record(plain)) == {
        "path": "a.wav",
        "text": "t",
        "duration_sec": 1.0,
        "error": None,
        "warning": "short",
    }


def test_tsv_is_whisper_style_milliseconds(result):
    result.segments[2].text = 'Fish\tand "chips"\nand more'
    rows = list(csv.reader(io.StringIO(to_tsv(result)), delimiter="\t", quoting=csv.QUOTE_NONE))
    assert rows[0] == ["start", "end", "text"]
    expected = [
        [str(round(s.start * 1000)), str(round(s.end * 1000)), " ".join(s.text.split())]
        for s in result.segments
        if s.text
    ]
    assert rows[1:] == expected
    assert rows[2] == ["5500", "9000", 'Fish and "chips" and more']


def test_renderers_refuse_a_failed_result(failed, tmp_path):
    for render in (to_txt, to_json, to_srt, to_vtt, to_tsv, subtitle_cues):
        with pytest.raises(ValueError, match="not an audio file"):
            render(failed)
    with pytest.raises(ValueError, match="not an audio file"):
        write_outputs(failed, "all", tmp_path / "out", "broken")
    assert not (tmp_path / "out").exists()


def test_write_outputs_writes_every_file_whole_and_nothing_else(result, tmp_path):
    out = tmp_path / "out"
    paths = write_outputs(result, ["all", "jsonl"], out, "talk", include_draft=True)
    assert paths == [out / f"talk.{ext}" for ext in ALL_FORMATS]
    assert sorted(os.listdir(out)) == sorted(f"talk.{ext}" for ext in ALL_FORMATS)  # no temp files, no jsonl
    assert (out / "talk.srt").read_text(encoding="utf-8") == to_srt(result)
    assert (out / "talk.vtt").read_text(encoding="utf-8") == to_vtt(result)
    assert json.loads((out / "talk.json").read_text(encoding="utf-8"))["draft"] == result.draft
    assert outputs_exist(out, "talk", "all")
    assert not outputs_exist(out, "other", "all")
    (out / "talk.tsv").unlink()
    assert outputs_exist(out, "talk", "txt,srt") and not outputs_exist(out, "talk", "all")
    assert not outputs_exist(out, "talk", "jsonl")  # nothing per-file to look at


def test_an_interrupted_write_keeps_the_old_file_and_leaves_no_temp_file(result, tmp_path, monkeypatch):
    write_outputs(result, "srt", tmp_path, "talk")
    before = (tmp_path / "talk.srt").read_text(encoding="utf-8")
    result.segments[0] = segment(0, 0.0, 4.0, "Something else entirely.")

    def killed(src, dst):
        raise KeyboardInterrupt

    monkeypatch.setattr(formats.os, "replace", killed)
    with pytest.raises(KeyboardInterrupt):
        write_outputs(result, "srt", tmp_path, "talk")
    assert os.listdir(tmp_path) == ["talk.srt"]
    assert (tmp_path / "talk.srt").read_text(encoding="utf-8") == before


def test_write_outputs_refuses_a_stem_with_a_folder(result, tmp_path):
    with pytest.raises(ValueError, match="plain file name"):
        write_outputs(result, "txt", tmp_path, "../escape")


def test_jsonl_writer_syncs_each_record_and_a_rerun_skips_the_finished(result, failed, tmp_path, monkeypatch):
    path = tmp_path / "run" / "results.jsonl"
    synced = []
    real_fsync = os.fsync
    monkeypatch.setattr(formats.os, "fsync", lambda fd: (synced.append(fd), real_fsync(fd)))
    other = make_result([segment(0, 0.0, 1.0, "Ünïcode only.")], 1.0)
    other.source = "other.wav"
    with JsonlWriter(path) as writer:
        writer.write(result)
        writer.write(failed)
        writer.write(other)
    assert len(synced) == 3
    assert completed_sources(path) == {"talk.wav", "other.wav"}

    # A run killed in the middle of a record: the unfinished line does not count and is cut off.
    with open(path, "ab") as f:
        f.write(to_jsonl_record(TranscriptionResult(index=3, source="half.wav", text="x")).encode()[:20])
    assert completed_sources(path) == {"talk.wav", "other.wav"}
    # Even a whole record counts only once its newline is written.
    with open(path, "ab") as f:
        f.write(to_jsonl_record(TranscriptionResult(index=4, source="whole.wav", text="y")).encode())
    assert completed_sources(path) == {"talk.wav", "other.wav"}
    retried = TranscriptionResult(index=1, source="broken.wav", text="fixed", duration_sec=1.0)
    with JsonlWriter(path) as writer:
        writer.write(retried)
    lines = path.read_text(encoding="utf-8").splitlines()
    assert [json.loads(line)["path"] for line in lines] == [
        "talk.wav",
        "broken.wav",
        "other.wav",
        "broken.wav",
    ]
    assert completed_sources(path) == {"talk.wav", "other.wav", "broken.wav"}


def test_completed_sources_without_a_file_and_with_a_damaged_line(tmp_path):
    assert completed_sources(tmp_path / "missing.jsonl") == set()
    path = tmp_path / "damaged.jsonl"
    path.write_text('{"path": "a.wav", "error": null}\n\nnot json\n{"path": "b.wav", "error": null}\n')
    with pytest.raises(ValueError, match=re.escape(f"{path}:3")):
        completed_sources(path)


def test_expand_formats():
    assert expand_formats("all") == ["txt", "json", "srt", "vtt", "tsv"]
    assert expand_formats(["srt", "all", "jsonl", "srt"]) == ["srt", "txt", "json", "vtt", "tsv", "jsonl"]
    assert expand_formats("vtt, jsonl") == ["vtt", "jsonl"]
    with pytest.raises(ValueError, match=r"'docx'.*txt, json, jsonl, srt, vtt, tsv, all"):
        expand_formats(["txt", "docx"])
    with pytest.raises(ValueError, match="no output format"):
        expand_formats([])
