"""The server's Prometheus metrics, in a registry of its own (two apps in one process do not collide).

granite_nar_requests_total{status}            transcription requests answered, by HTTP status
granite_nar_request_errors_total{reason}      refused or failed ones, by reason (bad_audio, too_large, ...)
granite_nar_request_duration_seconds          time from upload received to answer, answered requests
granite_nar_audio_seconds_total               audio transcribed
granite_nar_batch_size{stage}                 clips per encoder batch, segments per editor pass
granite_nar_queue_depth                       requests waiting for the worker
granite_nar_requests_in_flight                requests admitted and not yet answered
granite_nar_model_ready                       1 once the model is loaded
"""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

__all__ = ["CONTENT_TYPE_LATEST", "ServerMetrics"]

_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128)
_LATENCY_BUCKETS = (0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)


class ServerMetrics:
    def __init__(
        self, queue_depth: Callable[[], float], in_flight: Callable[[], float], ready: Callable[[], float]
    ):
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "granite_nar_requests", "Transcription requests answered, by HTTP status", ["status"], registry=r
        )
        self.errors = Counter(
            "granite_nar_request_errors",
            "Transcription requests refused or failed, by reason",
            ["reason"],
            registry=r,
        )
        self.latency = Histogram(
            "granite_nar_request_duration_seconds",
            "Seconds from a complete upload to its answer",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.audio_seconds = Counter("granite_nar_audio_seconds", "Seconds of audio transcribed", registry=r)
        self.batch_size = Histogram(
            "granite_nar_batch_size",
            "Clips per encoder batch (stage=encoder) and segments per packed editor pass (stage=editor)",
            ["stage"],
            buckets=_BATCH_BUCKETS,
            registry=r,
        )
        Gauge("granite_nar_queue_depth", "Requests waiting for the model worker", registry=r).set_function(
            queue_depth
        )
        Gauge(
            "granite_nar_requests_in_flight", "Requests admitted and not yet answered", registry=r
        ).set_function(in_flight)
        Gauge("granite_nar_model_ready", "1 once the model is loaded", registry=r).set_function(ready)

    def observe_batch(self, stage: str, size: int) -> None:
        self.batch_size.labels(stage=stage).observe(size)

    def render(self) -> bytes:
        return generate_latest(self.registry)
