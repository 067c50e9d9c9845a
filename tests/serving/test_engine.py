"""The batching engine without HTTP: packed requests get the tokens they get alone, long uploads do not
hold short requests up, a request that breaks a pass fails alone, and cancelled work is never run."""

from __future__ import annotations

import threading
import time

import pytest
from conftest import AUDIO, MODEL

from granite_nar import LongFormOptions, load_audio, load_model, transcribe
from granite_nar.serving import BatchEngine
from granite_nar.serving.engine import EngineStoppedError, QueueFullError
from granite_nar.transcription.transcribe import _SegmentEditor

TALK = next(p for p in AUDIO if p.name == "talk.flac")


@pytest.fixture(scope="module")
def loaded():
    return load_model(MODEL, device="cpu")


@pytest.fixture(scope="module")
def waves():
    return {p.name: load_audio(p) for p in AUDIO}


def _engine(loaded, **kwargs) -> BatchEngine:
    engine = BatchEngine(lambda: loaded, **kwargs)
    engine.start()
    assert engine.wait_ready(60)
    return engine


def test_packed_requests_equal_transcribe_alone(loaded, waves):
    sizes = []
    engine = _engine(
        loaded, max_batch_size=8, max_batch_delay_ms=200, observer=lambda s, n: sizes.append((s, n))
    )
    try:
        names = [p.name for p in AUDIO if p != TALK]
        futures = [engine.submit(waves[n], word_timestamps=True, token_scores=True) for n in names]
        results = [f.result(60) for f in futures]
    finally:
        engine.stop()
    alone = [transcribe(waves[n], *loaded, sampling_rate=16000, word_timestamps=True)[0] for n in names]
    for got, want in zip(results, alone, strict=True):
        assert got.text == want.text
        assert [(w.word, w.start, w.end) for w in got.words] == [(w.word, w.start, w.end) for w in want.words]
    assert ("editor", len(names)) in sizes  # one pass held every request


def test_a_short_request_is_not_stuck_behind_a_long_upload(loaded, waves):
    options = LongFormOptions(max_segment_seconds=8.0)
    engine = _engine(loaded, max_batch_size=4, max_batch_delay_ms=0, long_form_options=options)
    finished = {}
    try:
        long = engine.submit(waves[TALK.name])
        long.add_done_callback(lambda f: finished.setdefault("long", time.monotonic()))
        short = engine.submit(waves["demo.wav"])
        short.add_done_callback(lambda f: finished.setdefault("short", time.monotonic()))
        long_result, short_result = long.result(120), short.result(120)
    finally:
        engine.stop()
    assert finished["short"] < finished["long"]
    reference = transcribe(str(TALK), *loaded, long_form_options=options, return_drafts=True)[0]
    assert [(s.start, s.end, s.text) for s in long_result.segments] == [
        (s.start, s.end, s.text) for s in reference.segments
    ]
    assert len(long_result.segments) > 4
    assert short_result.text == transcribe(str(AUDIO[-2]), *loaded)[0]


def test_a_request_that_breaks_a_pass_fails_alone(loaded, waves, monkeypatch):
    original = _SegmentEditor._edit

    def edit(self, jobs):
        if any(job.recording.item.result.source == "poison" for job in jobs):
            raise RuntimeError("out of memory (simulated)")
        return original(self, jobs)

    monkeypatch.setattr(_SegmentEditor, "_edit", edit)
    engine = _engine(loaded, max_batch_size=8, max_batch_delay_ms=200)
    try:
        names = [p.name for p in AUDIO[:3]]
        good = [engine.submit(waves[n]) for n in names]
        bad = engine.submit(waves["demo.wav"], source="poison")
        texts = [f.result(60).text for f in good]
        with pytest.raises(RuntimeError, match="transcription failed: RuntimeError: out of memory"):
            bad.result(60)
        assert engine.submit(waves["demo.wav"]).result(60).text  # the engine goes on
    finally:
        engine.stop()
    assert texts == transcribe([str(p) for p in AUDIO[:3]], *loaded)


def test_cancelled_requests_are_never_run_and_the_queue_is_bounded(loaded, waves):
    gate, sizes = threading.Event(), []

    def observer(stage, size):
        sizes.append((stage, size))
        if stage == "encoder":
            assert gate.wait(60)

    engine = _engine(loaded, max_batch_size=1, max_batch_delay_ms=0, max_queue=3, observer=observer)
    try:
        first = engine.submit(waves["demo.wav"])
        deadline = time.monotonic() + 30
        while not sizes and time.monotonic() < deadline:
            time.sleep(0.01)
        second = engine.submit(waves["demo.wav"])
        third = engine.submit(waves["demo.wav"])
        with pytest.raises(QueueFullError):
            engine.submit(waves["demo.wav"])
        engine.cancel(second)
        assert engine.in_flight == 2 and engine.queue_depth == 1 and second.cancelled()
        gate.set()
        assert first.result(60).text == third.result(60).text
    finally:
        engine.stop()
    assert [s for s in sizes if s[0] == "encoder"] == [("encoder", 1), ("encoder", 1)]


def test_a_model_that_cannot_load_is_reported():
    def broken():
        raise OSError("model.safetensors: checksum mismatch")

    engine = BatchEngine(broken)
    engine.start()
    assert not engine.wait_ready(30)
    assert "could not be loaded: OSError: model.safetensors: checksum mismatch" in engine.load_error
    with pytest.raises(EngineStoppedError, match="checksum mismatch"):
        engine.submit(load_audio(AUDIO[0]))


def test_stop_fails_what_is_unfinished(loaded, waves):
    gate = threading.Event()
    engine = _engine(loaded, observer=lambda s, n: gate.wait(60) if s == "encoder" else None)
    held = engine.submit(waves["demo.wav"])
    waiting = engine.submit(waves["demo.wav"])
    threading.Timer(0.5, gate.set).start()
    engine.stop()
    for future in (held, waiting):
        assert future.done()
    with pytest.raises(EngineStoppedError):
        waiting.result()
    with pytest.raises(EngineStoppedError):
        engine.submit(waves["demo.wav"])
