"""What :func:`granite_nar.transcribe` returns for one input: text, segments, word timings, confidences.

    TranscriptionResult  one input (a file or a waveform)
      └─ segments: list[Segment]   disjoint stretches of the recording, in time order (one for a short clip)
           └─ words: list[Word]    with ``word_timestamps=True``: start, end and confidence of every word

Times are seconds from the start of the recording. ``TranscriptionResult.text`` is the segments' texts
joined by single spaces. The writers in :mod:`granite_nar.transcription.formats` turn a result into txt,
json, srt, vtt or tsv.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = ["Word", "Segment", "TranscriptionResult"]


@dataclass
class Word:
    """One word of the edited transcript.

    Attributes:
        word: the word as it appears in the text (no surrounding spaces).
        start, end: seconds from the start of the recording, from the CTC forced alignment of the final
            tokens against the encoder's BPE posteriors (80 ms resolution, see docs/long_form.md).
        confidence: the editor's posterior probability of the word's tokens, in [0, 1]: for each token,
            the probability of the slot that emitted it; for the word, the smallest of its tokens' values
            (one doubtful piece makes the word doubtful).
    """

    word: str
    start: float
    end: float
    confidence: float


@dataclass
class Segment:
    """A stretch of the recording edited as one unit.

    Attributes:
        id: position of the segment in the recording, from 0.
        start, end: seconds from the start of the recording; segments are disjoint and ordered, and
            together cover the whole recording.
        text: the edited transcript of the segment.
        draft: the encoder's CTC draft of the segment (when drafts were asked for).
        words: the segment's words with times and confidences (with ``word_timestamps=True``).
        tokens: the token ids of ``text`` as the editor emitted them (with ``return_token_scores=True``).
        token_confidences: each token's confidence, as for :attr:`Word.confidence` (with
            ``return_token_scores=True``); a word's confidence is the smallest of its tokens' values.
    """

    id: int
    start: float
    end: float
    text: str
    draft: str | None = None
    words: list[Word] | None = None
    tokens: list[int] | None = None
    token_confidences: list[float] | None = None


@dataclass
class TranscriptionResult:
    """The outcome for one input of :func:`~granite_nar.transcribe`.

    Attributes:
        index: position of the input in the list given to :func:`~granite_nar.transcribe`.
        source: the path as given, or ``"audio[index]"`` for an in-memory waveform.
        text: the transcript (``None`` when the input failed).
        draft: the encoder's BPE-CTC draft (with ``return_drafts=True``).
        duration_sec: length of the audio at 16 kHz.
        error: why the input could not be transcribed (``None`` when it was).
        warning: a note about a transcribed input: audio shorter than one audio token, or a truncated file
            transcribed with ``allow_truncated=True`` (several notes are joined with ``"; "``).
        segments: the transcript by segment, with times (``None`` when the input failed).
    """

    index: int
    source: str
    text: str | None = None
    draft: str | None = None
    duration_sec: float | None = None
    error: str | None = None
    warning: str | None = None
    segments: list[Segment] | None = field(default=None)

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def words(self) -> list[Word] | None:
        """Every word of every segment, when word timestamps were computed."""
        if not self.segments or any(s.words is None for s in self.segments):
            return None
        return [w for s in self.segments for w in s.words]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
