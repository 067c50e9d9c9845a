"""Every setting of ``granite-nar serve``, checked once, in one place (docs/serving.md lists them)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

__all__ = ["API_KEY_ENV", "ServerSettings"]

API_KEY_ENV = "GRANITE_NAR_API_KEY"


@dataclass
class ServerSettings:
    """What the server serves and how.

    Attributes:
        model: model folder (native or original layout) or Hub id.
        host, port: where to listen; 127.0.0.1 unless told otherwise; port 0 picks a free port.
        api_key: when set, every endpoint but ``/health`` and ``/ready`` needs ``Authorization: Bearer KEY``.
        served_model_names: the ``model`` values requests may name (the first is listed by ``/v1/models``);
            default: the model folder's name. A request without ``model`` gets this model too.
        languages: ISO-639-1 codes a request's ``language`` may take. The model is not told the language
            (it has no language input); a code outside this list is refused rather than ignored.
        max_batch_size, max_batch_delay_ms, max_batch_seconds, max_queue: dynamic batching
            (:class:`~granite_nar.serving.engine.BatchEngine`).
        max_upload_mb: the largest request body; larger ones get 413.
        max_audio_seconds: the longest audio one request may carry; longer gets 413.
        request_timeout_s: a request not finished by then gets 504 and its work is dropped.
        device, dtype, quantize, threads: where and how the model runs (as for ``granite-nar transcribe``).
        num_editing_steps: editing passes over each CTC draft.
        max_segment_seconds: longer uploads are cut into segments at pauses (docs/long_form.md).
    """

    model: str
    host: str = "127.0.0.1"
    port: int = 8000
    api_key: str | None = None
    served_model_names: list[str] = field(default_factory=list)
    languages: list[str] = field(default_factory=lambda: ["en"])
    max_batch_size: int = 16
    max_batch_delay_ms: float = 20.0
    max_batch_seconds: float = 480.0
    max_queue: int = 64
    max_upload_mb: float = 25.0
    max_audio_seconds: float = 3600.0
    request_timeout_s: float = 600.0
    device: str | None = None
    dtype: str | None = None
    quantize: str | None = None
    threads: int | None = None
    num_editing_steps: int = 1
    max_segment_seconds: float = 30.0

    def __post_init__(self) -> None:
        if not self.served_model_names:
            self.served_model_names = [os.path.basename(os.path.normpath(str(self.model))) or str(self.model)]
        self.languages = [code.strip().lower() for code in self.languages if code.strip()]
        for name in ("max_batch_size", "max_queue"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not 0 <= self.port <= 65535:
            raise ValueError(f"port must be in 0..65535 (0: any free port), got {self.port}")
        for name in ("max_upload_mb", "max_audio_seconds", "request_timeout_s", "max_batch_seconds"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        if self.max_batch_delay_ms < 0:
            raise ValueError(f"max_batch_delay_ms must be >= 0, got {self.max_batch_delay_ms}")
        if self.num_editing_steps < 0:
            raise ValueError(f"num_editing_steps must be >= 0, got {self.num_editing_steps}")
        if self.api_key is not None and not self.api_key.strip():
            raise ValueError("api_key is empty; leave it unset to serve without a key")

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 1024 * 1024)
