"""Writers for transcription results: txt, json, jsonl, srt, vtt and tsv.

The formats follow the conventions of openai-whisper's writers, so tools that read whisper's output read
ours:

    txt    the transcript, one line per segment
    json   one JSON object: source, text, duration_sec, segments (with words when computed)
    jsonl  one JSON record per input on one line (the ``granite-nar --output jsonl`` record, plus segments)
    srt    SubRip subtitles, ``HH:MM:SS,mmm`` times
    vtt    WebVTT subtitles, ``HH:MM:SS.mmm`` times
    tsv    ``start<TAB>end<TAB>text`` per segment, integer milliseconds

Subtitle cues are cut by :func:`subtitle_cues` under :class:`SubtitleOptions` (42 characters a line, two
lines a cue, six seconds a cue by default). :func:`write_outputs` writes ``<stem>.<ext>`` files atomically;
:class:`JsonlWriter` appends one durable record per input and :func:`completed_sources` reads back which
inputs a previous, possibly interrupted, run finished. See docs/output_formats.md.
"""

from __future__ import annotations

import json
import math
import os
import re
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .results import Segment, TranscriptionResult

__all__ = [
    "FORMATS",
    "ALL_FORMATS",
    "FILE_FORMATS",
    "Cue",
    "SubtitleOptions",
    "JsonlWriter",
    "completed_sources",
    "expand_formats",
    "format_timestamp",
    "outputs_exist",
    "render",
    "subtitle_cues",
    "to_json",
    "to_jsonl_record",
    "to_srt",
    "to_tsv",
    "to_txt",
    "to_vtt",
    "write_outputs",
]

FORMATS = ("txt", "json", "jsonl", "srt", "vtt", "tsv")
# What "all" stands for: one file per input in every format. jsonl is a single file for a whole run, so
# it is asked for by name.
ALL_FORMATS = ("txt", "json", "srt", "vtt", "tsv")
# The formats written as <stem>.<ext> by write_outputs (jsonl goes through JsonlWriter).
FILE_FORMATS = ALL_FORMATS

# A word that ends a sentence: . ! ? … (or their CJK forms), optionally followed by closing quotes or
# brackets.
_SENTENCE_END = re.compile(r"[.!?…。！？][\"'”’»)\]]*$")
# A word that ends a clause: , ; : (or their CJK forms), the same way.
_CLAUSE_END = re.compile(r"[,;:，；：、][\"'”’»)\]]*$")


def expand_formats(names: str | Iterable[str]) -> list[str]:
    """The output formats named by ``names``, in order and without repeats, with ``"all"`` expanded.

    ``names`` is a list of names or one string of comma-separated names (``"srt,vtt"``). ``"all"`` stands
    for txt, json, srt, vtt and tsv (not jsonl, which is one file for a whole run).

    Raises:
        ValueError: for an unknown name (the message names it and the choices), or when no name is given.
    """
    if isinstance(names, str):
        names = names.split(",")
    chosen: list[str] = []
    for raw in names:
        name = raw.strip()
        if not name:
            continue
        if name == "all":
            expanded = ALL_FORMATS
        elif name in FORMATS:
            expanded = (name,)
        else:
            raise ValueError(f"unknown output format {name!r}; choose from {', '.join((*FORMATS, 'all'))}")
        chosen.extend(f for f in expanded if f not in chosen)
    if not chosen:
        raise ValueError(f"no output format given; choose from {', '.join((*FORMATS, 'all'))}")
    return chosen


@dataclass
class SubtitleOptions:
    """How :func:`subtitle_cues` cuts a transcript into subtitle cues.

    The defaults follow common subtitling guidance: at most 42 characters a line, at most two lines on
    screen, a few seconds a cue.

    Attributes:
        max_cue_seconds: longest time one cue stays on screen, from its first word's start to its last
            word's end. A single word longer than this still makes one cue. Applies when the segments have
            word timestamps; without them the times inside a segment are unknown and a segment is split
            only to keep to ``max_lines``.
        max_line_chars: longest line, in characters. A single longer word gets a line of its own.
        max_lines: most lines in one cue.
    """

    max_cue_seconds: float = 6.0
    max_line_chars: int = 42
    max_lines: int = 2

    def __post_init__(self) -> None:
        seconds = self.max_cue_seconds
        if isinstance(seconds, bool) or not isinstance(seconds, (int, float)):
            raise ValueError(f"max_cue_seconds must be a number of seconds, got {seconds!r}")
        if not (math.isfinite(seconds) and seconds > 0):
            raise ValueError(f"max_cue_seconds must be a finite number greater than 0, got {seconds!r}")
        for name in ("max_line_chars", "max_lines"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise ValueError(f"{name} must be a whole number, got {value!r}")
            if value <= 0:
                raise ValueError(f"{name} must be at least 1, got {value!r}")


@dataclass
class Cue:
    """One subtitle: shown from ``start`` to ``end`` (seconds, whole milliseconds), ``lines`` of text."""

    start: float
    end: float
    lines: list[str] = field(default_factory=list)

    @property
    def text(self) -> str:
        return "\n".join(self.lines)


@dataclass
class _Token:
    """A word of a cue in the making, with times in whole milliseconds."""

    text: str
    start: int
    end: int


def _ms(seconds: float) -> int:
    return int(round(seconds * 1000.0))


def _check_ok(result: TranscriptionResult) -> None:
    if result.error is not None:
        raise ValueError(f"{result.source}: no transcript to write, the input failed: {result.error}")


def _segments(result: TranscriptionResult) -> list[Segment]:
    """The result's segments; a result without them counts as one segment over the whole recording."""
    if result.segments is not None:
        return result.segments
    if not result.text:
        return []
    return [Segment(id=0, start=0.0, end=float(result.duration_sec or 0.0), text=result.text)]


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _segment_tokens(segment: Segment) -> list[_Token]:
    """The segment's words with their times; without word timestamps, its text's words with times spread
    over the segment in proportion to characters."""
    if segment.words:
        tokens = [
            _Token(_one_line(w.word), _ms(w.start), _ms(w.end)) for w in segment.words if w.word.strip()
        ]
        if tokens:
            return tokens
    pieces = segment.text.split()
    if not pieces:
        return []
    start, end = _ms(segment.start), _ms(segment.end)
    total = len(" ".join(pieces))
    tokens, offset = [], 0
    for i, piece in enumerate(pieces):
        # Each word owns its characters and the space after it, so the cues of a segment are contiguous.
        after = total if i == len(pieces) - 1 else offset + len(piece) + 1
        tokens.append(
            _Token(
                piece,
                start + round((end - start) * offset / total),
                start + round((end - start) * after / total),
            )
        )
        offset = after
    return tokens


def _fit(tokens: list[_Token], first: int, options: SubtitleOptions, timed: bool) -> int:
    """The end (exclusive) of the longest run of tokens from ``first`` that fits in one cue."""
    limit_ms = options.max_cue_seconds * 1000.0
    lines, line_len = 1, len(tokens[first].text)
    j = first + 1
    while j < len(tokens):
        token = tokens[j]
        if timed and token.end - tokens[first].start > limit_ms:
            break
        if line_len + 1 + len(token.text) <= options.max_line_chars:
            line_len += 1 + len(token.text)
        elif lines < options.max_lines:
            lines, line_len = lines + 1, len(token.text)
        else:
            break
        j += 1
    return j


def _fill(words: list[str], width: int) -> list[str]:
    """Words filled greedily into lines of at most ``width`` characters (a longer word alone on its line)."""
    lines: list[str] = []
    for word in words:
        if lines and len(lines[-1]) + 1 + len(word) <= width:
            lines[-1] += " " + word
        else:
            lines.append(word)
    return lines


def _wrap(words: list[str], max_line_chars: int) -> list[str]:
    """Words wrapped into as few lines as ``max_line_chars`` allows, with lines of similar length: filled
    at the narrowest width up to ``max_line_chars`` that needs no more lines than ``max_line_chars`` does
    (fewer lines need a wider width, so the width is found by bisection)."""
    lines = _fill(words, max_line_chars)
    low, high = 1, max_line_chars
    while low < high:
        width = (low + high) // 2
        if len(_fill(words, width)) <= len(lines):
            high = width
        else:
            low = width + 1
    return _fill(words, high)


def _better_stop(tokens: list[_Token], first: int, stop: int) -> int:
    """Where to end a cue of ``tokens[first:stop]`` that cannot take ``tokens[stop]``: after its last
    sentence-ending word; else after its last clause-ending word if that keeps at least half of the cue's
    words; else at ``stop``."""
    for k in range(stop - 2, first - 1, -1):
        if _SENTENCE_END.search(tokens[k].text):
            return k + 1
    for k in range(stop - 2, first - 1, -1):
        if 2 * (k + 1 - first) < stop - first:
            break
        if _CLAUSE_END.search(tokens[k].text):
            return k + 1
    return stop


def _group(tokens: list[_Token], options: SubtitleOptions, timed: bool) -> list[list[_Token]]:
    """Consecutive tokens grouped into cues, each within the options' limits; a cue that must end before
    the segment does ends at a punctuation mark when it can (:func:`_better_stop`)."""
    groups = []
    first = 0
    while first < len(tokens):
        stop = _fit(tokens, first, options, timed)
        if stop < len(tokens):
            stop = _better_stop(tokens, first, stop)
        groups.append(tokens[first:stop])
        first = stop
    return groups


def subtitle_cues(result: TranscriptionResult, options: SubtitleOptions | None = None) -> list[Cue]:
    """The result's transcript cut into subtitle cues.

    With word timestamps, the words of each segment are grouped into cues in order: a cue takes words
    while they fit in ``max_lines`` lines of ``max_line_chars`` and within ``max_cue_seconds`` from its
    first word's start to its last word's end. A cue that must stop before its segment's end is cut after
    its last sentence-ending word (``.``, ``!``, ``?``, ``…``) when it has one, else after a clause-ending
    word (``,``, ``;``, ``:``) in its second half. A cue spans its first word's start to its last word's
    end. Words of different segments never share a cue. A cue's lines are balanced: as few lines as
    ``max_line_chars`` allows, of similar lengths.

    Without word timestamps, each segment's text is wrapped into lines; a text of more than ``max_lines``
    lines becomes several cues that share the segment's time span in proportion to their characters.

    Empty segments make no cue. Times are whole milliseconds; cues are in order, do not overlap, last at
    least 1 ms, and lie within ``[0, duration_sec]`` when the duration is known (a word's time outside that
    range is moved inside it).

    Raises:
        ValueError: when the result is a failed one.
    """
    _check_ok(result)
    options = options or SubtitleOptions()
    raw: list[tuple[int, int, list[str]]] = []
    for segment in _segments(result):
        tokens = _segment_tokens(segment)
        timed = bool(segment.words) and any(w.word.strip() for w in segment.words)
        for group in _group(tokens, options, timed):
            lines = _wrap([t.text for t in group], options.max_line_chars)
            raw.append((group[0].start, max(t.end for t in group), lines))
    return [Cue(start / 1000, end / 1000, lines) for start, end, lines in _settle(raw, result.duration_sec)]


def _settle(
    cues: list[tuple[int, int, list[str]]], duration_sec: float | None
) -> list[tuple[int, int, list[str]]]:
    """Cue times (ms) made non-decreasing and non-overlapping, each cue at least 1 ms long, inside
    ``[0, duration]``: a forward pass pushes starts past the previous end, a backward pass pulls ends
    before the next start and the end of the audio (1 ms a cue holds while the audio has at least 1 ms for
    each cue)."""
    settled = []
    previous_end = 0
    for start, end, lines in cues:
        start = max(start, previous_end, 0)
        end = max(end, start + 1)
        settled.append([start, end, lines])
        previous_end = end
    if duration_sec is not None:
        limit = max(int(math.floor(duration_sec * 1000 + 1e-6)), 0)
        for cue in reversed(settled):
            cue[1] = min(cue[1], limit)
            cue[0] = max(min(cue[0], cue[1] - 1), 0)
            limit = cue[0]
    return [(start, end, lines) for start, end, lines in settled]


def format_timestamp(seconds: float, always_include_hours: bool = False, decimal_marker: str = ".") -> str:
    """``seconds`` as ``[HH:]MM:SS<marker>mmm``, rounded to the millisecond, as whisper writes times.

    Hours are shown when there are any or when ``always_include_hours``: SRT uses
    ``format_timestamp(t, True, ",")`` (``00:00:01,500``), WebVTT ``format_timestamp(t, True, ".")``
    (``00:00:01.500``).

    Raises:
        ValueError: for a negative or non-finite time.
    """
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"a timestamp must be a finite number of seconds >= 0, got {seconds!r}")
    milliseconds = _ms(seconds)
    hours, milliseconds = divmod(milliseconds, 3_600_000)
    minutes, milliseconds = divmod(milliseconds, 60_000)
    secs, milliseconds = divmod(milliseconds, 1_000)
    hours_part = f"{hours:02d}:" if always_include_hours or hours > 0 else ""
    return f"{hours_part}{minutes:02d}:{secs:02d}{decimal_marker}{milliseconds:03d}"


def to_txt(result: TranscriptionResult) -> str:
    """The transcript, one line per non-empty segment (the whole text on one line without segments)."""
    _check_ok(result)
    lines = [_one_line(s.text) for s in _segments(result)]
    return "".join(line + "\n" for line in lines if line)


def to_srt(result: TranscriptionResult, options: SubtitleOptions | None = None) -> str:
    """SubRip subtitles: numbered cues, ``HH:MM:SS,mmm --> HH:MM:SS,mmm``, a blank line after each."""
    blocks = []
    for number, cue in enumerate(subtitle_cues(result, options), start=1):
        times = f"{format_timestamp(cue.start, True, ',')} --> {format_timestamp(cue.end, True, ',')}"
        blocks.append(f"{number}\n{times}\n{cue.text}\n\n")
    return "".join(blocks)


def _vtt_escape(line: str) -> str:
    # WebVTT cue text is markup: &, < and > are written as character references (this also keeps "-->"
    # out of a cue).
    return line.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def to_vtt(result: TranscriptionResult, options: SubtitleOptions | None = None) -> str:
    """WebVTT subtitles: a ``WEBVTT`` header, then cues ``HH:MM:SS.mmm --> HH:MM:SS.mmm``."""
    parts = ["WEBVTT\n\n"]
    for cue in subtitle_cues(result, options):
        times = f"{format_timestamp(cue.start, True, '.')} --> {format_timestamp(cue.end, True, '.')}"
        text = "\n".join(_vtt_escape(line) for line in cue.lines)
        parts.append(f"{times}\n{text}\n\n")
    return "".join(parts)


def to_tsv(result: TranscriptionResult) -> str:
    """Whisper's tsv: a ``start<TAB>end<TAB>text`` header, then one row per non-empty segment with times in
    integer milliseconds. Tabs and line breaks in a text become spaces; nothing is quoted (read it with
    ``csv.reader(f, delimiter="\\t", quoting=csv.QUOTE_NONE)``)."""
    _check_ok(result)
    rows = ["start\tend\ttext\n"]
    for segment in _segments(result):
        text = _one_line(segment.text)
        if text:
            rows.append(f"{_ms(segment.start)}\t{_ms(segment.end)}\t{text}\n")
    return "".join(rows)


def _round(value: float | None, digits: int) -> float | None:
    if value is None or not math.isfinite(value):
        return None
    return round(float(value), digits)


def _segment_dict(segment: Segment, include_draft: bool) -> dict[str, Any]:
    record: dict[str, Any] = {
        "id": segment.id,
        "start": _round(segment.start, 3),
        "end": _round(segment.end, 3),
        "text": segment.text,
    }
    if include_draft:
        record["draft"] = segment.draft
    if segment.words is not None:
        record["words"] = [
            {
                "word": w.word,
                "start": _round(w.start, 3),
                "end": _round(w.end, 3),
                "confidence": _round(w.confidence, 4),
            }
            for w in segment.words
        ]
    return record


def to_json(result: TranscriptionResult, include_draft: bool = False) -> str:
    """One JSON object (UTF-8, one line, ending in a newline)::

        {"source", "text", "duration_sec", ["draft"], ["warning"],
         "segments": [{"id", "start", "end", "text", ["draft"], ["words": [{"word", "start", "end",
                       "confidence"}]]}]}

    ``draft`` (of the result and of each segment) only with ``include_draft``; ``warning`` only when there
    is one; ``words`` only for segments with word timestamps. Segment and word times are rounded to 3
    decimals, confidences to 4; ``duration_sec`` is the exact length of the audio. A result without
    segments gets one segment over the whole recording.

    Raises:
        ValueError: when the result is a failed one.
    """
    _check_ok(result)
    record: dict[str, Any] = {
        "source": result.source,
        "text": result.text,
        "duration_sec": result.duration_sec,
    }
    if include_draft:
        record["draft"] = result.draft
    if result.warning is not None:
        record["warning"] = result.warning
    record["segments"] = [_segment_dict(s, include_draft) for s in _segments(result)]
    return json.dumps(record, ensure_ascii=False) + "\n"


def to_jsonl_record(result: TranscriptionResult, include_draft: bool = False) -> str:
    """The result as one JSON line (no newline at the end), for failed inputs too::

        {"path", "text", "duration_sec", "error", ["draft"], ["warning"], ["segments"]}

    ``text`` is null and ``error`` says why for a failed input, ``error`` is null otherwise. ``draft`` only
    with ``include_draft``, ``warning`` only when there is one, ``segments`` (as in :func:`to_json`) only
    when the result has them.
    """
    record: dict[str, Any] = {
        "path": result.source,
        "text": result.text,
        "duration_sec": result.duration_sec,
        "error": result.error,
    }
    if include_draft:
        record["draft"] = result.draft
    if result.warning is not None:
        record["warning"] = result.warning
    if result.segments is not None:
        record["segments"] = [_segment_dict(s, include_draft) for s in result.segments]
    return json.dumps(record, ensure_ascii=False)


def render(
    result: TranscriptionResult,
    fmt: str,
    options: SubtitleOptions | None = None,
    include_draft: bool = False,
) -> str:
    """``result`` as a document in one per-file format (txt, json, srt, vtt or tsv)."""
    if fmt == "txt":
        return to_txt(result)
    if fmt == "json":
        return to_json(result, include_draft)
    if fmt == "srt":
        return to_srt(result, options)
    if fmt == "vtt":
        return to_vtt(result, options)
    if fmt == "tsv":
        return to_tsv(result)
    raise ValueError(f"{fmt!r} is not a per-file format; choose from {', '.join(FILE_FORMATS)}")


def _check_stem(stem: str) -> None:
    if not stem or stem in (".", "..") or "/" in stem or os.sep in stem or (os.altsep and os.altsep in stem):
        raise ValueError(f"the output name must be a plain file name without directories, got {stem!r}")


def _file_formats(formats: str | Iterable[str]) -> list[str]:
    return [f for f in expand_formats(formats) if f in FILE_FORMATS]


def _write_atomically(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file in the same folder and ``os.replace``: readers
    see the old file or the whole new one, never a part."""
    handle = tempfile.NamedTemporaryFile(
        "w",
        encoding="utf-8",
        newline="",
        dir=path.parent,
        prefix=f".{path.name}.",
        suffix=".tmp",
        delete=False,
    )
    try:
        with handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(handle.name, path)
    except BaseException:
        Path(handle.name).unlink(missing_ok=True)
        raise


def write_outputs(
    result: TranscriptionResult,
    formats: str | Iterable[str],
    output_dir: str | os.PathLike[str],
    stem: str,
    options: SubtitleOptions | None = None,
    include_draft: bool = False,
) -> list[Path]:
    """Write ``<output_dir>/<stem>.<ext>`` for each per-file format in ``formats``; returns the paths.

    ``formats`` is as for :func:`expand_formats`; jsonl, one file for a whole run, is left to
    :class:`JsonlWriter`. Every output is rendered before any is written, and each is written to a
    temporary file in ``output_dir`` that then replaces the target, so an interrupted run leaves whole
    files only. ``output_dir`` is created when missing; existing files are replaced.

    Raises:
        ValueError: for a failed result, an unknown format, or a ``stem`` with a directory part.
    """
    _check_ok(result)
    _check_stem(stem)
    chosen = _file_formats(formats)
    rendered = {fmt: render(result, fmt, options, include_draft) for fmt in chosen}
    directory = Path(output_dir)
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for fmt, text in rendered.items():
        path = directory / f"{stem}.{fmt}"
        _write_atomically(path, text)
        paths.append(path)
    return paths


def outputs_exist(output_dir: str | os.PathLike[str], stem: str, formats: str | Iterable[str]) -> bool:
    """Whether every per-file output that :func:`write_outputs` would write for ``stem`` is there (so a
    rerun can skip the input). False when ``formats`` names no per-file format (jsonl alone: use
    :func:`completed_sources`)."""
    _check_stem(stem)
    chosen = _file_formats(formats)
    return bool(chosen) and all((Path(output_dir) / f"{stem}.{fmt}").is_file() for fmt in chosen)


class JsonlWriter:
    """Appends one :func:`to_jsonl_record` line per result to ``path``, each flushed and synced to disk
    before :meth:`write` returns, so a run that is killed keeps every record it finished.

    An unfinished last line left by an interrupted run (no newline at its end) is cut off when the file is
    opened, so new records start on a line of their own. Use as a context manager or call :meth:`close`.
    """

    def __init__(self, path: str | os.PathLike[str], include_draft: bool = False):
        self.path = Path(path)
        self.include_draft = include_draft
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(self.path, "a+b")  # closed by close() / __exit__
        try:
            _drop_unfinished_line(self._file)
        except BaseException:
            self._file.close()
            raise

    def write(self, result: TranscriptionResult) -> None:
        line = to_jsonl_record(result, self.include_draft) + "\n"
        self._file.write(line.encode("utf-8"))
        self._file.flush()
        os.fsync(self._file.fileno())

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> JsonlWriter:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _drop_unfinished_line(file) -> None:
    """Truncate a file open in ``a+b`` mode after its last newline."""
    size = file.seek(0, os.SEEK_END)
    if size == 0:
        return
    position = size
    chunk = 65536
    while position > 0:
        start = max(position - chunk, 0)
        file.seek(start)
        data = file.read(position - start)
        newline = data.rfind(b"\n")
        if newline >= 0:
            keep = start + newline + 1
            break
        position = start
    else:
        keep = 0
    if keep < size:
        file.truncate(keep)
        file.flush()
        os.fsync(file.fileno())
    file.seek(0, os.SEEK_END)


def completed_sources(path: str | os.PathLike[str]) -> set[str]:
    """The ``path`` of every record without an error in a jsonl file written by :class:`JsonlWriter`: the
    inputs a rerun can skip. A missing file gives an empty set.

    A last line without a newline at its end is an interrupted write and is ignored (:class:`JsonlWriter`
    cuts it off). Blank lines are skipped.

    Raises:
        ValueError: for a finished line that is not a JSON object (the file is not such a jsonl file, or
            was damaged), naming the line.
    """
    path = Path(path)
    if not path.exists():
        return set()
    done: set[str] = set()
    with open(path, "rb") as file:
        data = file.read()
    lines = data.split(b"\n")
    for number, line in enumerate(lines[:-1], start=1):  # lines[-1] follows the last newline: unfinished
        if not line.strip():
            continue
        try:
            record = json.loads(line.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            raise ValueError(f"{path}:{number}: not a JSON record ({err})") from err
        if not isinstance(record, dict):
            raise ValueError(f"{path}:{number}: not a JSON object")
        if record.get("error") is None and isinstance(record.get("path"), str):
            done.add(record["path"])
    return done
