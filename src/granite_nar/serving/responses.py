"""A :class:`TranscriptionResult` as the bodies of the OpenAI audio transcription API.

    json          {"text", "usage"}                 (+ "logprobs" with include[]=logprobs)
    text          the transcript and a newline
    srt, vtt      subtitles (transcription/formats.py; cue times from word timestamps)
    verbose_json  {"task", "language", "duration", "text", "segments", ["words"], "usage"}

Segment fields follow the API: ``tokens`` are the editor's final token ids, ``avg_logprob`` the mean log
of their confidences, ``compression_ratio`` the text's length over its zlib-compressed length (as whisper
computes it), ``temperature`` 0 (decoding is argmax). The model gives no no-speech probability:
``no_speech_prob`` is 1 for a segment without text and 0 otherwise.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Callable
from typing import Any

from ..transcription.formats import _segment_dict, to_srt, to_vtt
from ..transcription.results import Segment, TranscriptionResult

__all__ = ["RESPONSE_FORMATS", "json_body", "text_body", "verbose_json_body"]

RESPONSE_FORMATS = ("json", "text", "srt", "verbose_json", "vtt")
MEDIA_TYPES = {
    "json": "application/json",
    "verbose_json": "application/json",
    "text": "text/plain; charset=utf-8",
    "srt": "application/x-subrip; charset=utf-8",
    "vtt": "text/vtt; charset=utf-8",
}


def _usage(result: TranscriptionResult) -> dict[str, Any]:
    return {"type": "duration", "seconds": round(float(result.duration_sec or 0.0), 3)}


def _log(confidence: float) -> float:
    return math.log(confidence) if confidence > 0 else -1e4


def json_body(
    result: TranscriptionResult, decode: Callable[[list[int]], str] | None = None
) -> dict[str, Any]:
    """``{"text", "usage"}``; with ``decode`` (include[]=logprobs), every token's text, log-probability and
    UTF-8 bytes, from the segments' token scores. The token texts joined are ``text``."""
    body: dict[str, Any] = {"text": result.text, "usage": _usage(result)}
    if decode is not None:
        body["logprobs"] = []
        for number, segment in enumerate(s for s in result.segments or [] if s.tokens):
            pieces = token_texts(segment.tokens, decode)
            if number and pieces and not pieces[0].startswith(" "):
                pieces[0] = " " + pieces[0]  # segments are joined by a space
            for piece, confidence in zip(pieces, segment.token_confidences or [], strict=True):
                logprob = round(_log(confidence), 6)
                body["logprobs"].append({"token": piece, "logprob": logprob, "bytes": list(piece.encode())})
    return body


def token_texts(tokens: list[int], decode: Callable[[list[int]], str]) -> list[str]:
    """The text each token adds to the decoded string, spaces included (decoding a token on its own drops
    a word's leading space): the difference between the decoded prefixes."""
    pieces, previous = [], ""
    for end in range(1, len(tokens) + 1):
        text = decode(tokens[:end])
        pieces.append(text[len(previous) :] if text.startswith(previous) else text)
        previous = text
    return pieces


def text_body(result: TranscriptionResult) -> str:
    return f"{result.text}\n"


def subtitle_body(result: TranscriptionResult, fmt: str) -> str:
    return to_srt(result) if fmt == "srt" else to_vtt(result)


def _compression_ratio(text: str) -> float:
    data = text.encode("utf-8")
    return round(len(data) / len(zlib.compress(data)), 4) if data else 0.0


def _segment(segment: Segment) -> dict[str, Any]:
    confidences = segment.token_confidences or []
    return {
        "id": segment.id,
        "seek": int(round(segment.start * 100)),  # in 10 ms frames, as whisper counts
        "start": round(segment.start, 3),
        "end": round(segment.end, 3),
        "text": segment.text,
        "tokens": list(segment.tokens or []),
        "temperature": 0.0,
        "avg_logprob": round(sum(map(_log, confidences)) / len(confidences), 6) if confidences else 0.0,
        "compression_ratio": _compression_ratio(segment.text),
        "no_speech_prob": 0.0 if segment.text else 1.0,
    }


def verbose_json_body(result: TranscriptionResult, language: str, words: bool) -> dict[str, Any]:
    """The verbose body; ``words`` adds the top-level word list (``timestamp_granularities[]=word``)."""
    segments = result.segments or []
    body: dict[str, Any] = {
        "task": "transcribe",
        "language": language,
        "duration": round(float(result.duration_sec or 0.0), 3),
        "text": result.text,
        "segments": [_segment(s) for s in segments],
    }
    if words:
        body["words"] = [word for s in segments for word in _segment_dict(s, False).get("words", [])]
    body["usage"] = _usage(result)
    return body
