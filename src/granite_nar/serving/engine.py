"""Dynamic batching: one worker thread owns the model and packs the waiting requests into shared passes.

    request handlers ── submit(wave) ──► intake (bounded by max_queue) ──► worker thread
                                                                            │
        idle worker: the first request waits up to max_batch_delay_ms for company
        each round:  up to max_batch_size waiting requests (and max_batch_seconds of audio) are taken
                     ├─ short clips: one padded encoder batch
                     ├─ long uploads (> max_segment_seconds): one more segment each per round
                     │   (transcription/long_form.py), so short requests are not stuck behind them
                     └─ editor passes of max_batch_size segments, from any request; a partial pass
                        runs once nothing else is being encoded or its oldest segment has waited
                        max_batch_delay_ms
    a request's future is resolved when its last segment is edited

The worker is the same edit queue that :func:`granite_nar.transcribe` uses, so a request gets the same
tokens as ``transcribe`` on the same audio: utterances do not influence each other inside a batch
(docs/reference_behaviour.md §11.3).

A cancelled request (its client went away, or it timed out) is dropped from the intake, and its queued
segments and unfinished encoding are discarded. If a pass fails (out of memory, say), every request that
was in it is run again on its own, so one request that cannot be served fails alone.
"""

from __future__ import annotations

import copy
import itertools
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass, field

import torch

from ..audio.processing_granite_speech_nar import clean_transcript
from ..lengths import SAMPLING_RATE
from ..transcription.long_form import LongFormOptions
from ..transcription.results import TranscriptionResult
from ..transcription.transcribe import _Item, _SegmentEditor

__all__ = ["BatchEngine", "EngineStoppedError", "QueueFullError"]

logger = logging.getLogger(__name__)


class QueueFullError(RuntimeError):
    """The engine holds ``max_queue`` unfinished requests already."""


class EngineStoppedError(RuntimeError):
    """The engine is shutting down (or its model failed to load) and takes no more work."""


@dataclass(eq=False)
class _Request:
    id: int
    wave: torch.Tensor  # (N,) float32 at 16 kHz, validated
    source: str
    word_timestamps: bool
    token_scores: bool
    future: Future
    submitted: float = field(default_factory=time.monotonic)
    cancelled: bool = False

    @property
    def seconds(self) -> float:
        return self.wave.shape[0] / SAMPLING_RATE

    def item(self) -> _Item:
        """A fresh work item for the edit queue (the queue frees the samples it was given)."""
        result = TranscriptionResult(self.id, self.source, duration_sec=self.seconds)
        return _Item(
            result,
            int(self.wave.shape[0]),
            wave=self.wave,
            word_timestamps=self.word_timestamps,
            token_scores=self.token_scores,
        )


class BatchEngine:
    """The model behind a thread, taking waveforms and returning :class:`TranscriptionResult` futures.

    Args:
        load: called once on the worker thread; returns ``(model, processor)`` (see
            :func:`granite_nar.load_model`). The engine is ready when it returns.
        max_batch_size: utterances per encoder batch, and segments per packed editor pass.
        max_batch_delay_ms: how long an idle worker lets the first request wait for others, and the longest
            a queued segment waits for a fuller editor pass while other work is going on.
        max_batch_seconds: audio per encoder batch of short clips (a token budget in seconds): fewer clips
            go into one batch when they are long. One clip always goes.
        max_queue: unfinished requests (waiting or being transcribed) the engine holds; more are refused
            with :class:`QueueFullError`.
        num_editing_steps: editing passes over each CTC draft.
        long_form_options: how long uploads are cut into segments (:class:`LongFormOptions`).
        observer: ``observer(stage, size)`` hears the size of every ``"encoder"`` batch and ``"editor"``
            pass; :meth:`add_observer` adds more (the server's metrics).
    """

    def __init__(
        self,
        load: Callable[[], tuple],
        *,
        max_batch_size: int = 16,
        max_batch_delay_ms: float = 20.0,
        max_batch_seconds: float = 480.0,
        max_queue: int = 64,
        num_editing_steps: int = 1,
        long_form_options: LongFormOptions | None = None,
        observer: Callable[[str, int], None] | None = None,
    ):
        if max_batch_size < 1:
            raise ValueError(f"max_batch_size must be >= 1, got {max_batch_size}")
        if max_batch_delay_ms < 0:
            raise ValueError(f"max_batch_delay_ms must be >= 0, got {max_batch_delay_ms}")
        if max_batch_seconds <= 0:
            raise ValueError(f"max_batch_seconds must be > 0, got {max_batch_seconds}")
        if max_queue < 1:
            raise ValueError(f"max_queue must be >= 1, got {max_queue}")
        if num_editing_steps < 0:
            raise ValueError(f"num_editing_steps must be >= 0, got {num_editing_steps}")
        self._load = load
        self.max_batch_size = max_batch_size
        self.delay = max_batch_delay_ms / 1000
        self.max_batch_seconds = max_batch_seconds
        self.max_queue = max_queue
        self.num_editing_steps = num_editing_steps
        self.options = long_form_options if long_form_options is not None else LongFormOptions()
        self._observers = [observer] if observer is not None else []
        self.load_error: str | None = None
        self._ready = threading.Event()
        self._lock = threading.Condition()
        self._intake: deque[_Request] = deque()
        self._requests: dict[int, _Request] = {}  # admitted, not finished
        self._ids = itertools.count()
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._editor: _SegmentEditor | None = None
        self._model = self._processor = self._tokenizer = None
        self._active: list[tuple[_Request, Iterator[list[TranscriptionResult]]]] = []  # long uploads

    # -- the handlers' side ---------------------------------------------------------------------------
    @property
    def ready(self) -> bool:
        """The model is loaded and the worker takes requests."""
        return self._ready.is_set() and self.load_error is None and not self._stopping

    @property
    def queue_depth(self) -> int:
        """Requests waiting for the worker to start on them."""
        return len(self._intake)

    @property
    def in_flight(self) -> int:
        """Requests admitted and not finished (waiting or being transcribed)."""
        return len(self._requests)

    def add_observer(self, observer: Callable[[str, int], None]) -> None:
        """Also call ``observer(stage, size)`` for every encoder batch and editor pass."""
        self._observers.append(observer)

    def _observe(self, stage: str, size: int) -> None:
        for observer in self._observers:
            observer(stage, size)

    def decode(self, token_ids: list[int]) -> str:
        """The text of token ids, with the served model's tokenizer (safe to call from any one thread
        besides the worker)."""
        return clean_transcript(self._tokenizer.decode(token_ids, skip_special_tokens=True))

    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError("the engine was started already")
        self._thread = threading.Thread(target=self._run, name="granite-nar-engine", daemon=True)
        self._thread.start()

    def wait_ready(self, timeout: float | None = None) -> bool:
        """Block until the model is loaded (or failed to load); ``True`` when ready."""
        self._ready.wait(timeout)
        return self.ready

    def stop(self, timeout: float | None = 30.0) -> None:
        """Finish the round in progress, then fail every unfinished request with :class:`EngineStoppedError`."""
        with self._lock:
            self._stopping = True
            self._lock.notify_all()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)
        with self._lock:
            leftover = list(self._requests.values())
            self._requests.clear()
            self._intake.clear()
        for request in leftover:
            if not request.future.done():
                request.future.set_exception(EngineStoppedError("the server is shutting down"))

    def submit(
        self,
        wave: torch.Tensor,
        *,
        source: str = "upload",
        word_timestamps: bool = False,
        token_scores: bool = False,
    ) -> Future:
        """Queue one validated mono 16 kHz waveform (1-D tensor or array); the future's result is its
        :class:`TranscriptionResult`.

        Raises:
            QueueFullError: ``max_queue`` requests are unfinished already.
            EngineStoppedError: the engine is stopping, or its model failed to load.
        """
        wave = torch.as_tensor(wave, dtype=torch.float32).cpu()
        if wave.dim() != 1 or wave.shape[0] == 0:
            raise ValueError(f"expected a 1-D waveform at 16 kHz with samples, got shape {tuple(wave.shape)}")
        future: Future = Future()
        with self._lock:
            if self._stopping or self.load_error is not None:
                raise EngineStoppedError(self.load_error or "the server is shutting down")
            if len(self._requests) >= self.max_queue:
                raise QueueFullError(f"{len(self._requests)} requests are in progress (max_queue)")
            request = _Request(next(self._ids), wave, source, word_timestamps, token_scores, future)
            self._requests[request.id] = request
            self._intake.append(request)
            future.request_id = request.id  # what cancel() looks up
            self._lock.notify_all()
        return future

    def cancel(self, future: Future) -> None:
        """Give up on a request: it leaves the intake at once, and the worker drops its work next round."""
        with self._lock:
            request = self._requests.pop(getattr(future, "request_id", -1), None)
            if request is None:
                return
            request.cancelled = True
            try:
                self._intake.remove(request)
            except ValueError:
                pass  # already with the worker
        future.cancel()

    # -- the worker -------------------------------------------------------------------------------------
    def _run(self) -> None:
        try:
            self._model, self._processor = self._load()
            self._editor = self._new_editor()
            # decode() runs on the request handlers' threads: they get a tokenizer of their own.
            self._tokenizer = copy.deepcopy(self._processor.tokenizer)
        except BaseException as err:  # reported by /ready and by every submit
            self.load_error = f"the model could not be loaded: {type(err).__name__}: {err}"
            logger.error(self.load_error)
            self._ready.set()
            self.stop(timeout=0)
            return
        self._ready.set()
        while True:
            new = self._take()
            if new is None:
                return
            try:
                self._round(new)
            except Exception:  # noqa: BLE001 - isolated below; each request fails alone if it fails alone
                logger.exception("a batch failed; running its requests one at a time")
                self._isolate()

    def _new_editor(self) -> _SegmentEditor:
        return _SegmentEditor(
            self._model,
            self._processor,
            self.num_editing_steps,
            return_drafts=False,
            word_timestamps=False,
            batch_size=self.max_batch_size,
            observer=self._observe,
        )

    def _busy(self) -> bool:
        return bool(self._active or self._editor.queue)

    def _take(self) -> list[_Request] | None:
        """The next requests to start on; ``None`` when stopping. Blocks only while the worker is idle."""
        with self._lock:
            if not self._busy():
                while not self._intake and not self._stopping:
                    self._lock.wait()
                if self._intake and not self._stopping:  # wait for company, up to the delay
                    deadline = self._intake[0].submitted + self.delay
                    while (
                        not self._stopping and not self._full() and (left := deadline - time.monotonic()) > 0
                    ):
                        self._lock.wait(left)
            if self._stopping:
                return None
            taken, seconds = [], 0.0
            while self._intake and len(taken) < self.max_batch_size:
                nxt = self._intake[0].seconds
                if taken and seconds + nxt > self.max_batch_seconds:
                    break
                taken.append(self._intake.popleft())
                seconds += nxt
            return taken

    def _full(self) -> bool:
        return (
            len(self._intake) >= self.max_batch_size
            or sum(r.seconds for r in self._intake) >= self.max_batch_seconds
        )

    def _round(self, new: list[_Request]) -> None:
        editor = self._editor
        self._drop_cancelled()
        new = [r for r in new if not r.cancelled]
        longest = self.options.max_segment_seconds
        short = sorted((r for r in new if r.seconds <= longest), key=lambda r: -r.seconds)
        for request in new:
            if request.seconds > longest:
                self._active.append((request, iter(editor.recording_steps(request.item(), self.options))))
        if short:
            self._deliver(editor.add_batch([r.item() for r in short]))
        for entry in list(self._active):
            request, steps = entry
            try:
                self._deliver(next(steps))
            except StopIteration:
                self._active.remove(entry)
        with self._lock:
            waiting = bool(self._intake)
        if editor.queue and ((not self._active and not waiting) or editor.oldest_wait() >= self.delay):
            self._deliver(editor.flush())

    def _drop_cancelled(self) -> None:
        if any(r.cancelled for r, _ in self._active):
            for request, steps in self._active:
                if request.cancelled:
                    steps.close()
            self._active = [(r, s) for r, s in self._active if not r.cancelled]
        self._editor.discard(lambda item: item.result.index in self._requests)

    def _deliver(self, results: list[TranscriptionResult]) -> None:
        for result in results:
            with self._lock:
                request = self._requests.pop(result.index, None)
            if request is not None and not request.future.done():
                request.future.set_result(result)

    def _isolate(self) -> None:
        """After a failed pass: start over, every unfinished request that the worker had taken on its own."""
        with self._lock:
            queued = {r.id for r in self._intake}
            taken = [r for r in self._requests.values() if r.id not in queued]
        self._active = []
        for request in sorted(taken, key=lambda r: r.id):
            self._editor = self._new_editor()
            try:
                item = request.item()
                if request.seconds > self.options.max_segment_seconds:
                    results = self._editor.add_recording(item, self.options)
                else:
                    results = self._editor.add_batch([item])
                self._deliver(results + self._editor.flush())
            except Exception as err:  # noqa: BLE001 - this request alone cannot be transcribed
                logger.exception("request %d failed on its own", request.id)
                with self._lock:
                    self._requests.pop(request.id, None)
                if not request.future.done():
                    request.future.set_exception(
                        RuntimeError(f"transcription failed: {type(err).__name__}: {err}")
                    )
        self._editor = self._new_editor()
