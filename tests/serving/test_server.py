"""The server, over real HTTP, with the official ``openai`` client: every response format gives what
``granite_nar.transcribe`` gives on the same file, concurrent requests share batches, and every bad request
gets its own status and a message that names the problem."""

from __future__ import annotations

import io
import math
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import openai
import pytest
import srt
import webvtt
from conftest import API_KEY, AUDIO, MODEL, LiveServer

from granite_nar import load_model
from granite_nar.serving import BatchEngine, ServerSettings
from granite_nar.transcription.formats import to_srt, to_vtt

DEMO = next(p for p in AUDIO if p.name == "demo.wav")
TALK = next(p for p in AUDIO if p.name == "talk.flac")


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key=API_KEY, max_retries=0, timeout=120)


def _create(client, path, **kwargs):
    with open(path, "rb") as handle:
        return client.audio.transcriptions.create(file=handle, model="tiny-synth", **kwargs)


# -- every response format equals transcribe() ---------------------------------------------------------


def test_json_and_text_equal_transcribe(client, expected):
    for path in AUDIO:
        want = expected[path.name]
        got = _create(client, path)
        assert got.text == want.text, path.name
        assert got.usage.seconds == pytest.approx(want.duration_sec, abs=1e-3)
        assert _create(client, path, response_format="text") == want.text + "\n"


def test_srt_and_vtt_equal_the_library_writers_and_parse(client, expected):
    for path in AUDIO:
        want = expected[path.name]
        got_srt = _create(client, path, response_format="srt")
        assert got_srt == to_srt(want), path.name
        cues = list(srt.parse(got_srt))
        assert " ".join(c.content.replace("\n", " ") for c in cues) == want.text
        got_vtt = _create(client, path, response_format="vtt")
        assert got_vtt == to_vtt(want), path.name
        captions = webvtt.from_buffer(io.StringIO(got_vtt)).captions
        assert " ".join(c.text.replace("\n", " ") for c in captions) == want.text


def test_verbose_json_segments_and_words(client, expected):
    for path in AUDIO:
        want = expected[path.name]
        got = _create(
            client, path, response_format="verbose_json", timestamp_granularities=["word", "segment"]
        )
        assert got.text == want.text and got.language == "en"
        assert got.duration == pytest.approx(want.duration_sec, abs=1e-3)
        assert [(s.id, s.start, s.end, s.text) for s in got.segments] == [
            (s.id, s.start, s.end, s.text) for s in want.segments
        ]
        for segment, reference in zip(got.segments, want.segments, strict=True):
            assert segment.tokens == reference.tokens
            mean_log = sum(map(math.log, reference.token_confidences)) / len(reference.token_confidences)
            assert segment.avg_logprob == pytest.approx(mean_log, abs=1e-5)
            assert segment.temperature == 0.0 and segment.no_speech_prob == 0.0
            assert segment.seek == round(reference.start * 100)
        assert [(w.word, w.start, w.end) for w in got.words] == [
            (w.word, round(w.start, 3), round(w.end, 3)) for w in want.words
        ]
    plain = _create(client, DEMO, response_format="verbose_json")  # segments only: no word list
    assert plain.words is None and len(plain.segments) == 1


def test_logprobs_are_the_token_confidences(client, expected):
    want = expected[DEMO.name]
    got = _create(client, DEMO, include=["logprobs"])
    tokens = want.segments[0].tokens
    assert len(got.logprobs) == len(tokens)
    for entry, confidence in zip(got.logprobs, want.segments[0].token_confidences, strict=True):
        assert entry.logprob == pytest.approx(math.log(confidence), abs=1e-5)
        assert bytes(int(b) for b in entry.bytes).decode() == entry.token
    assert "".join(entry.token for entry in got.logprobs).split() == want.text.split()


def test_language_en_is_accepted(client, expected):
    assert _create(client, DEMO, language="en").text == expected[DEMO.name].text


# -- dynamic batching --------------------------------------------------------------------------------------


def test_32_concurrent_requests_share_batches(server, client, expected):
    before = server.metrics()
    paths = [AUDIO[i % len(AUDIO)] for i in range(32)]
    with ThreadPoolExecutor(32) as pool:
        texts = list(pool.map(lambda p: _create(client, p).text, paths))
    assert texts == [expected[p.name].text for p in paths]
    after = server.metrics()

    def delta(name, **labels):
        key = (name, tuple(sorted(labels.items())))
        return after.get(key, 0.0) - before.get(key, 0.0)

    passes = delta("granite_nar_batch_size_count", stage="editor")
    single = delta("granite_nar_batch_size_bucket", stage="editor", le="1.0")
    assert passes > 0 and single < passes, "no editor pass held more than one segment"
    assert delta("granite_nar_batch_size_sum", stage="editor") / passes > 2
    assert delta("granite_nar_requests_total", status="200") == 32
    assert after[("granite_nar_queue_depth", ())] == 0
    assert after[("granite_nar_requests_in_flight", ())] == 0


# -- endpoints and the key -------------------------------------------------------------------------------


def test_health_ready_models_and_the_key(server):
    assert httpx.get(f"{server.url}/health").json() == {"status": "ok"}  # no key needed
    assert httpx.get(f"{server.url}/ready").status_code == 200
    for path in ("/v1/models", "/metrics"):
        refused = httpx.get(f"{server.url}{path}")
        assert refused.status_code == 401 and refused.headers["www-authenticate"] == "Bearer"
        assert "Authorization: Bearer" in refused.json()["error"]["message"]
    listed = httpx.get(f"{server.url}/v1/models", headers=server.headers()).json()
    assert [m["id"] for m in listed["data"]] == ["tiny-synth"]


def test_wrong_or_missing_key_is_401(server):
    wrong = openai.OpenAI(base_url=f"{server.url}/v1", api_key="not-the-key", max_retries=0)
    with pytest.raises(openai.AuthenticationError) as err, open(DEMO, "rb") as handle:
        wrong.audio.transcriptions.create(file=handle, model="tiny-synth")
    assert err.value.status_code == 401 and "invalid API key" in str(err.value)
    missing = server.post(files={"file": ("a.wav", DEMO.read_bytes())}, headers={})
    assert missing.status_code == 401 and "missing API key" in missing.json()["error"]["message"]


# -- bad requests: each with its status and a message that names the problem -------------------------------


def _error(response: httpx.Response, status: int, *needles: str, param: str | None = None) -> None:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    for needle in needles:
        assert needle in error["message"], error["message"]
    if param is not None:
        assert error["param"] == param


def test_no_file(server):
    _error(server.post(data={"model": "tiny-synth"}), 400, "multipart/form-data", param="file")
    _error(server.post(files={"model": (None, "tiny-synth")}), 400, "no file", param="file")
    _error(server.post(files={"file": (None, "just text")}), 400, "no file", param="file")


def test_empty_non_audio_and_truncated_files(server):
    _error(server.post(files={"file": ("empty.wav", b"")}), 400, "'empty.wav'", "empty", param="file")
    _error(
        server.post(files={"file": ("notes.wav", b"these are not audio bytes " * 40)}),
        400,
        "'notes.wav'",
        "not a readable audio file",
        param="file",
    )
    data = DEMO.read_bytes()
    _error(
        server.post(files={"file": ("cut.wav", data[: len(data) // 2])}),
        400,
        "'cut.wav'",
        "truncated",
        param="file",
    )


def test_unknown_response_format_field_and_model(server):
    upload = {"file": ("demo.wav", DEMO.read_bytes())}
    _error(server.post(files=upload, data={"response_format": "xml"}), 400, "'xml'", "verbose_json")
    _error(server.post(files=upload, data={"speaker": "bob"}), 400, "unknown field 'speaker'")
    _error(server.post(files=upload, data={"model": "whisper-1"}), 404, "'whisper-1'", "'tiny-synth'")
    _error(
        server.post(files=upload, data={"timestamp_granularities[]": "word"}),
        400,
        "verbose_json",
        param="timestamp_granularities",
    )


def test_options_the_model_cannot_honour_are_refused(client):
    cases = [
        ({"temperature": 0.7}, "temperature 0.7 is not supported"),
        ({"prompt": "Granite, NLE"}, "prompt is not supported"),
        ({"language": "de"}, "language 'de'"),
    ]
    for kwargs, needle in cases:
        with pytest.raises(openai.BadRequestError) as err:
            _create(client, DEMO, **kwargs)
        assert err.value.status_code == 400 and needle in str(err.value)
    assert _create(client, DEMO, temperature=0).text  # 0 is what the server does


def test_upload_and_audio_length_caps():
    with LiveServer(max_upload_mb=0.1, max_audio_seconds=2.0, device="cpu") as small:
        _error(small.post(files={"file": ("talk.flac", TALK.read_bytes())}), 413, "0.1 MB", param="file")
        _error(small.post(files={"file": ("demo.wav", DEMO.read_bytes())}), 413, "'demo.wav'", "2.5 s")

        def chunks():  # no Content-Length: the cap holds while the body streams in
            boundary = b"--xyz\r\n"
            yield boundary + b'Content-Disposition: form-data; name="file"; filename="big.wav"\r\n\r\n'
            for _ in range(40):
                yield b"\0" * 8192
            yield b"\r\n--xyz--\r\n"

        streamed = httpx.post(
            f"{small.url}/v1/audio/transcriptions",
            content=chunks(),
            headers={"Content-Type": "multipart/form-data; boundary=xyz"},
        )
        _error(streamed, 413, "larger than this server takes")
        counts = small.metrics()
        assert counts[("granite_nar_request_errors_total", (("reason", "too_large"),))] == 2
        assert counts[("granite_nar_request_errors_total", (("reason", "too_long"),))] == 1


# -- a worker held up: queue full, timeouts, clients that go away -----------------------------------------


class _Gate:
    """An engine observer that holds the worker inside its next encoder batch until ``open()``."""

    def __init__(self):
        self.entered, self.released = threading.Event(), threading.Event()
        self.sizes: list[tuple[str, int]] = []

    def __call__(self, stage: str, size: int) -> None:
        self.sizes.append((stage, size))
        if stage == "encoder":
            self.entered.set()
            assert self.released.wait(60)

    def open(self) -> None:
        self.released.set()


def _held_server(gate: _Gate, **fields) -> LiveServer:
    settings = ServerSettings(model=str(MODEL), device="cpu", **fields)
    engine = BatchEngine(
        lambda: load_model(MODEL, device="cpu"),
        max_batch_size=4,
        max_batch_delay_ms=0,
        max_queue=settings.max_queue,
        observer=gate,
    )
    return LiveServer(settings, engine=engine)


def _in_background(fn):
    box = {}
    thread = threading.Thread(target=lambda: box.setdefault("value", fn()), daemon=True)
    thread.start()
    return thread, box


def _until(condition, seconds=10.0):
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.02)


def test_queue_full_is_503_with_retry_after(expected):
    gate = _Gate()
    with _held_server(gate, max_queue=1) as live:
        upload = {"file": ("demo.wav", DEMO.read_bytes())}
        first, box = _in_background(lambda: live.post(files=upload))
        assert gate.entered.wait(30)
        refused = live.post(files=upload)
        _error(refused, 503, "busy", "--max-queue 1")
        assert int(refused.headers["retry-after"]) >= 1
        gate.open()
        first.join(30)
        assert box["value"].json()["text"] == expected[DEMO.name].text
        assert live.post(files=upload).status_code == 200  # room again


def test_timeout_is_504_and_drops_the_work():
    gate = _Gate()
    with _held_server(gate, request_timeout_s=0.5) as live:
        _error(live.post(files={"file": ("demo.wav", DEMO.read_bytes())}), 504, "did not finish within 0.5 s")
        assert live.engine.in_flight == 0
        gate.open()


def test_a_client_that_goes_away_leaves_no_work_behind(expected):
    gate = _Gate()
    with _held_server(gate) as live:
        upload = {"file": ("demo.wav", DEMO.read_bytes())}
        first, box = _in_background(lambda: live.post(files=upload))  # holds the worker
        assert gate.entered.wait(30)
        with pytest.raises(httpx.ReadTimeout):  # waits in the queue behind it, then hangs up
            live.post(files=upload, timeout=1.0)
        _until(lambda: live.engine.in_flight == 1 and live.engine.queue_depth == 0)
        gate.open()
        first.join(30)
        assert box["value"].json()["text"] == expected[DEMO.name].text
        _until(lambda: live.engine.in_flight == 0)
        assert [s for s in gate.sizes if s[0] == "encoder"] == [("encoder", 1)]  # the second never ran
        assert live.metrics()[("granite_nar_request_errors_total", (("reason", "client_disconnected"),))] == 1


def test_not_ready_while_the_model_loads():
    loading = threading.Event()

    def slow_load():
        assert loading.wait(60)
        return load_model(MODEL, device="cpu")

    engine = BatchEngine(slow_load)
    with LiveServer(ServerSettings(model=str(MODEL)), engine=engine, wait_ready=False) as live:
        assert httpx.get(f"{live.url}/health").status_code == 200
        assert httpx.get(f"{live.url}/ready").status_code == 503
        _error(live.post(files={"file": ("demo.wav", DEMO.read_bytes())}), 503, "still loading")
        loading.set()
        assert engine.wait_ready(60)
        assert httpx.get(f"{live.url}/ready").json()["status"] == "ready"


def test_a_quantized_server_answers_what_a_quantized_transcribe_gives():
    from granite_nar import transcribe
    from granite_nar.model.quantization import is_quantized

    with LiveServer(quantize="int8", device="cpu") as live:
        assert is_quantized(live.engine._model)
        client = openai.OpenAI(base_url=f"{live.url}/v1", api_key="unused", max_retries=0, timeout=120)
        got = _create(client, DEMO, response_format="text")
    assert got == transcribe(str(DEMO), str(MODEL), quantize="int8", device="cpu")[0] + "\n"
