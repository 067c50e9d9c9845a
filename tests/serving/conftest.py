"""A real uvicorn server on 127.0.0.1, in a thread of the test process, serving the shipped tiny model.

The socket is bound before the server starts (port 0: the system picks a free port), so two test runs never
race for a port. The server is stopped, and its engine with it, when the ``with`` block ends.
"""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("openai")

import httpx  # noqa: E402
import uvicorn  # noqa: E402

from granite_nar.serving import ServerSettings, create_app  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
MODEL = REPO / "examples" / "models" / "tiny-synth"
FIXTURES = REPO / "tests" / "fixtures" / "tiny_synth"
AUDIO = [
    *sorted(FIXTURES.glob("*.wav")),
    REPO / "examples" / "audio" / "demo.wav",
    REPO / "examples" / "audio" / "talk.flac",  # 53 s: cut into segments by the long-form path
]
API_KEY = "test-key-7f3a"


class LiveServer:
    """``with LiveServer(settings) as server:`` → ``server.url``, ``server.app``, ``server.engine``."""

    def __init__(
        self, settings: ServerSettings | None = None, engine=None, wait_ready: bool = True, **fields
    ):
        settings = settings or ServerSettings(model=str(MODEL), **fields)
        self.settings = settings
        self.app = create_app(settings, engine)
        self.engine = self.app.state.engine
        self.wait_ready = wait_ready
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        config = uvicorn.Config(self.app, log_level="warning", lifespan="on", timeout_graceful_shutdown=5)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)

    def __enter__(self) -> LiveServer:
        self.thread.start()
        deadline = time.monotonic() + 120
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the test server did not start")
            time.sleep(0.02)
        if self.wait_ready:
            assert self.engine.wait_ready(120), self.engine.load_error
        return self

    def __exit__(self, *exc_info) -> None:
        self.server.should_exit = True
        self.thread.join(30)
        self.sock.close()

    def headers(self) -> dict[str, str]:
        key = self.settings.api_key
        return {"Authorization": f"Bearer {key}"} if key else {}

    def post(self, files=None, data=None, timeout: float = 60, headers=None, **kwargs) -> httpx.Response:
        return httpx.post(
            f"{self.url}/v1/audio/transcriptions",
            files=files,
            data=data,
            headers=self.headers() if headers is None else headers,
            timeout=timeout,
            **kwargs,
        )

    def metrics(self) -> dict[tuple[str, tuple], float]:
        """Every sample of /metrics, parsed by prometheus_client's own parser: ``{(name, labels): value}``."""
        from prometheus_client.parser import text_string_to_metric_families

        text = httpx.get(f"{self.url}/metrics", headers=self.headers(), timeout=10).text
        return {
            (sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(text)
            for sample in family.samples
        }


@pytest.fixture(scope="package")
def expected():
    """``granite_nar.transcribe`` on every test file, with word times and token scores."""
    from granite_nar import transcribe

    results = transcribe(
        [str(p) for p in AUDIO], str(MODEL), word_timestamps=True, return_token_scores=True, device="cpu"
    )
    return {path.name: result for path, result in zip(AUDIO, results, strict=True)}


@pytest.fixture(scope="package")
def server():
    """The shared server: key required, batches of up to 8, a generous delay so concurrent requests pack."""
    with LiveServer(api_key=API_KEY, max_batch_size=8, max_batch_delay_ms=50, device="cpu") as live:
        yield live
