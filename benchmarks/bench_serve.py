"""Load test of ``granite-nar serve``: throughput and latency with dynamic batching on and off, in one run.

    python benchmarks/bench_serve.py --config tiny                                  # the shipped tiny model
    python benchmarks/bench_serve.py --config full --dtype bfloat16 --requests 48   # released size, random

For each ``--max-batch-sizes`` value (default 16, then 1 = batching off) a server process is started on
127.0.0.1 (a free port), warmed up, timed with single requests one after another (the single-request
latency), then loaded with ``--requests`` requests from ``--concurrency`` concurrent clients, and stopped.
The generator is bounded: it sends exactly that many requests and ends. The clips are the synthetic
utterances in tests/fixtures/tiny_synth and the demo clip (2-5 s each), uploaded as WAV bytes.

Reported per setting: throughput in audio seconds per wall-clock second, p50/p95/p99 latency, errors,
and the mean number of segments per editor pass (from the server's /metrics). Ratios are measured in the
same run, so they hold on any machine; absolute figures depend on the CPU, which is printed.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
TINY = REPO / "examples" / "models" / "tiny-synth"
CLIPS = [
    *sorted((REPO / "tests" / "fixtures" / "tiny_synth").glob("*.wav")),
    REPO / "examples" / "audio" / "demo.wav",
]


def _serve(config: str, dtype: str, port: int, max_batch_size: int, delay_ms: float, threads: int) -> None:
    """The server process: the model (tiny-synth, or the released size with random weights) behind uvicorn."""
    import torch
    import uvicorn

    from granite_nar import GraniteSpeechNarConfig, GraniteSpeechNarForCTC, GraniteSpeechNarProcessor
    from granite_nar.serving import BatchEngine, ServerSettings, create_app

    torch.set_num_threads(threads)

    def load():
        processor = GraniteSpeechNarProcessor.from_pretrained(TINY)
        if config == "tiny":
            model = GraniteSpeechNarForCTC.from_pretrained(TINY)
        else:
            torch.manual_seed(0)
            model = GraniteSpeechNarForCTC(GraniteSpeechNarConfig())
        return model.to(getattr(torch, dtype)).eval(), processor

    settings = ServerSettings(model=str(TINY), port=port, max_queue=4096, served_model_names=["bench"])
    engine = BatchEngine(load, max_batch_size=max_batch_size, max_batch_delay_ms=delay_ms, max_queue=4096)
    uvicorn.run(create_app(settings, engine), host="127.0.0.1", port=port, log_level="warning")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _clips() -> list[tuple[bytes, float]]:
    import soundfile

    out = []
    for path in CLIPS:
        wave, rate = soundfile.read(path, dtype="float32")
        buffer = io.BytesIO()
        soundfile.write(buffer, wave, rate, format="WAV", subtype="PCM_16")
        out.append((buffer.getvalue(), len(wave) / rate))
    return out


async def _one(client, url: str, data: bytes) -> float:
    start = time.perf_counter()
    response = await client.post(f"{url}/v1/audio/transcriptions", files={"file": ("clip.wav", data)})
    response.raise_for_status()
    return time.perf_counter() - start


async def _load(url: str, clips, requests: int, concurrency: int) -> dict:
    """``requests`` uploads from ``concurrency`` clients; each client sends its next clip when the last is
    answered (a closed loop), so at most ``concurrency`` requests are in flight."""
    import httpx

    latencies, errors, audio = [], [], 0.0
    counter = iter(range(requests))

    async def client_loop(client):
        nonlocal audio
        for k in counter:
            data, seconds = clips[k % len(clips)]
            try:
                latencies.append(await _one(client, url, data))
                audio += seconds
            except Exception as err:  # noqa: BLE001 - counted and reported
                errors.append(repr(err))

    async with httpx.AsyncClient(timeout=600) as client:
        start = time.perf_counter()
        await asyncio.gather(*(client_loop(client) for _ in range(concurrency)))
        wall = time.perf_counter() - start
    return {"wall_s": wall, "audio_s": audio, "latencies": latencies, "errors": errors}


async def _single(url: str, clips, count: int) -> list[float]:
    import httpx

    async with httpx.AsyncClient(timeout=600) as client:
        return [await _one(client, url, clips[k % len(clips)][0]) for k in range(count)]


def _editor_mean(url: str) -> float:
    import httpx
    from prometheus_client.parser import text_string_to_metric_families

    samples = {
        (s.name, s.labels.get("stage")): s.value
        for family in text_string_to_metric_families(httpx.get(f"{url}/metrics").text)
        for s in family.samples
    }
    count = samples.get(("granite_nar_batch_size_count", "editor"), 0)
    return samples.get(("granite_nar_batch_size_sum", "editor"), 0) / count if count else float("nan")


def run_setting(args, clips, max_batch_size: int) -> dict:
    import httpx

    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    child = [args.config, args.dtype, str(port), str(max_batch_size), str(args.delay_ms), str(args.threads)]
    proc = subprocess.Popen([sys.executable, __file__, "--serve-child", *child])
    try:
        deadline = time.monotonic() + 600
        while True:
            try:
                if httpx.get(f"{url}/ready", timeout=5).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError("the server did not become ready")
            time.sleep(0.2)
        asyncio.run(_single(url, clips, 2))  # warm-up
        single = asyncio.run(_single(url, clips, args.single))
        load = asyncio.run(_load(url, clips, args.requests, args.concurrency))
        editor_mean = _editor_mean(url)
    finally:
        proc.terminate()
        proc.wait(60)
    lat = np.array(load["latencies"]) if load["latencies"] else np.array([float("nan")])
    return {
        "max_batch_size": max_batch_size,
        "single_latency_s": statistics.median(single),
        "throughput": load["audio_s"] / load["wall_s"],
        "p50_s": float(np.percentile(lat, 50)),
        "p95_s": float(np.percentile(lat, 95)),
        "p99_s": float(np.percentile(lat, 99)),
        "errors": len(load["errors"]),
        "error_examples": load["errors"][:3],
        "requests": args.requests,
        "audio_s": load["audio_s"],
        "wall_s": load["wall_s"],
        "editor_pass_mean": editor_mean,
    }


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--serve-child"]:  # the server process started by run_setting
        config, dtype, port, size, delay, threads = argv[1:]
        _serve(config, dtype, int(port), int(size), float(delay), int(threads))
        return 0
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", choices=["tiny", "full"], default="tiny")
    p.add_argument("--dtype", choices=["float32", "bfloat16"], default="float32")
    p.add_argument("--requests", type=int, default=128, help="requests per setting")
    p.add_argument("--concurrency", type=int, default=16, help="concurrent clients")
    p.add_argument("--single", type=int, default=8, help="sequential requests for the single-request latency")
    p.add_argument("--max-batch-sizes", type=int, nargs="+", default=[16, 1])
    p.add_argument("--delay-ms", type=float, default=20.0, help="the server's --max-batch-delay-ms")
    p.add_argument("--threads", type=int, default=2, help="the server's torch threads")
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    clips = _clips()
    rows = [run_setting(args, clips, size) for size in args.max_batch_sizes]
    print(
        f"CPU: {platform.processor() or platform.machine()} ({os.cpu_count()} cores), server threads "
        f"{args.threads}, {args.config} model, {args.dtype}, {args.requests} requests, {args.concurrency} "
        f"concurrent clients, clips {min(s for _, s in clips):.1f}-{max(s for _, s in clips):.1f} s, "
        f"--max-batch-delay-ms {args.delay_ms:g}"
    )
    print(
        "| --max-batch-size | audio s / s | vs batch 1 | p50 | p95 | p99 | single request | p95 / single "
        "| errors | segments per editor pass |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    base = next((r["throughput"] for r in rows if r["max_batch_size"] == 1), float("nan"))
    for r in rows:
        print(
            f"| {r['max_batch_size']} | {r['throughput']:.2f} | {r['throughput'] / base:.2f} | "
            f"{r['p50_s']:.3f} s | {r['p95_s']:.3f} s | {r['p99_s']:.3f} s | {r['single_latency_s']:.3f} s | "
            f"{r['p95_s'] / r['single_latency_s']:.2f} | {r['errors']} | {r['editor_pass_mean']:.1f} |",
            flush=True,
        )
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"rows": rows, "args": vars(args), "cpu": platform.processor()}, f, indent=2)
    return 0 if all(r["errors"] == 0 for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
