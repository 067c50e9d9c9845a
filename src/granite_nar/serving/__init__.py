"""``granite-nar serve``: the model behind the OpenAI audio transcription API, with dynamic batching.

    settings.py   ServerSettings: every option, checked once
    engine.py     BatchEngine: one worker thread owns the model and packs requests into shared passes
    app.py        create_app: the FastAPI routes, key check, upload caps, errors in the OpenAI format
    responses.py  the OpenAI response bodies (json, text, srt, vtt, verbose_json)
    metrics.py    Prometheus metrics

Needs the ``serve`` extra (FastAPI, uvicorn, python-multipart, prometheus-client); docs/serving.md.
"""

from __future__ import annotations

import importlib.util
import signal

__all__ = ["BatchEngine", "ServerSettings", "create_app", "missing_dependency", "run_server"]

_NEEDED = {
    "fastapi": "fastapi",
    "uvicorn": "uvicorn",
    "multipart": "python-multipart",
    "prometheus_client": "prometheus-client",
}


def missing_dependency() -> str | None:
    """What to install when a package of the ``serve`` extra is missing, else ``None``."""
    missing = [dist for module, dist in _NEEDED.items() if importlib.util.find_spec(module) is None]
    if not missing:
        return None
    return (
        f"the server needs {', '.join(missing)}: pip install {' '.join(missing)} (or, from a clone, the "
        "serve extra: pip install -e '.[serve]')"
    )


_problem = missing_dependency()
if _problem is not None:
    raise ImportError(_problem)

from .app import create_app  # noqa: E402
from .engine import BatchEngine  # noqa: E402
from .settings import ServerSettings  # noqa: E402


def run_server(settings: ServerSettings, log_level: str = "info") -> str | None:
    """Serve until interrupted (Ctrl-C or SIGTERM let the requests in progress finish, then stop).

    Returns ``None`` after a normal shutdown, or why the model could not be loaded (the server stops then).
    """
    import threading

    import uvicorn

    app = create_app(settings)
    server = uvicorn.Server(
        uvicorn.Config(
            app, host=settings.host, port=settings.port, log_level=log_level, timeout_graceful_shutdown=30
        )
    )
    engine = app.state.engine

    def stop_if_load_fails() -> None:
        engine.wait_ready()
        if engine.load_error is not None:
            server.should_exit = True

    threading.Thread(target=stop_if_load_fails, daemon=True).start()
    # uvicorn shuts down gracefully on SIGINT / SIGTERM, then raises the signal again: after a graceful
    # stop, that is a normal end, not a crash.
    in_main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _stopped) if in_main else None
    try:
        server.run()
    except (KeyboardInterrupt, _Stopped):
        pass
    finally:
        if in_main:
            signal.signal(signal.SIGTERM, previous)
    return engine.load_error


class _Stopped(Exception):
    """SIGTERM, raised again by uvicorn after its graceful shutdown."""


def _stopped(signum, frame) -> None:
    raise _Stopped
