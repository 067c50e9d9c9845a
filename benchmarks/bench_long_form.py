"""Time and peak memory of long-form transcription for recordings of several lengths, and the throughput
against short clips, in one run.

    python benchmarks/bench_long_form.py --config full --dtype bfloat16 --minutes 1 10 60 --threads 2
    python benchmarks/bench_long_form.py --config tiny --minutes 1 10 60     # the shipped tiny model

Random weights for ``--config full`` (the released architecture; no checkpoint needed), the shipped
tiny-synth model for ``--config tiny``. The audio is synthetic (noise bursts with pauses, so the draft has
tokens and pauses); time is the median of ``--repeats`` runs of ``transcribe`` on an in-memory waveform,
features included. Peak memory is the process's resident set size above what it held after loading the
model and warming up, sampled every 10 ms. Short-clip throughput is measured on 15 s clips (batch 1)
in the same run, so the ratio holds on any machine.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import threading
import time

import numpy as np
import torch

from granite_nar import GraniteSpeechNarConfig, GraniteSpeechNarForCTC, GraniteSpeechNarProcessor, transcribe


def _audio(seconds: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    wave = np.zeros(int(seconds * 16000), np.float32)
    t = 0.0
    while t < seconds:
        burst = rng.uniform(0.5, 6.0)
        a, b = int(t * 16000), int(min(t + burst, seconds) * 16000)
        wave[a:b] = rng.normal(0, 0.1, b - a) * np.sin(np.linspace(0, 40 * burst, b - a)) ** 2
        t += burst + rng.uniform(0.2, 1.2)
    return wave


def _rss() -> int:
    """Resident set size of this process in bytes (Linux /proc)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class _PeakRss:
    def __init__(self):
        self.peak = 0
        self._stop = threading.Event()

    def __enter__(self):
        self.base = _rss()
        self.peak = self.base
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        return self

    def _run(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, _rss())
            time.sleep(0.01)

    def __exit__(self, *exc):
        self._stop.set()
        self.thread.join()

    @property
    def above_base_gb(self) -> float:
        return (self.peak - self.base) / 2**30


TINY = os.path.join(os.path.dirname(__file__), "..", "examples", "models", "tiny-synth")


def _model(config: str, dtype: torch.dtype):
    """The shipped tiny model, or the released architecture with random weights; the tiny model's
    processor either way (decoding skips ids its tokenizer does not know)."""
    processor = GraniteSpeechNarProcessor.from_pretrained(TINY)
    if config == "tiny":
        model = GraniteSpeechNarForCTC.from_pretrained(TINY)
    else:
        model = GraniteSpeechNarForCTC(GraniteSpeechNarConfig())
    return model.to(dtype).eval(), processor


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", choices=["full", "tiny"], default="tiny")
    p.add_argument("--dtype", choices=["float32", "bfloat16"], default="float32")
    p.add_argument("--minutes", type=float, nargs="+", default=[1, 10, 60])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    dtype = getattr(torch, args.dtype)
    model, processor = _model(args.config, dtype)
    run = lambda wave: transcribe(wave, model, processor, sampling_rate=16000, batch_size=args.batch_size)  # noqa: E731
    run(_audio(20, 0))  # warm-up

    short = [_audio(15, 100 + k) for k in range(3)]
    times = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        for clip in short:
            run(clip)
        times.append(time.perf_counter() - start)
    short_rate = 45 / statistics.median(times)
    rows = []
    print(
        f"CPU: {platform.processor() or platform.machine()}, {args.threads} thread(s), {args.config}, {args.dtype}"
    )
    print(f"short clips (3 x 15 s, batch 1): {short_rate:.2f} audio s / s")
    print("| audio | time (median) | audio s / s | vs short clips | peak RSS above base |")
    print("|---|---|---|---|---|")
    for minutes in args.minutes:
        wave = _audio(minutes * 60, int(minutes))
        times, peaks = [], []
        for _ in range(args.repeats if minutes < 30 else 1):
            with _PeakRss() as peak:
                start = time.perf_counter()
                run(wave)
                times.append(time.perf_counter() - start)
            peaks.append(peak.above_base_gb)
        elapsed = statistics.median(times)
        rate = minutes * 60 / elapsed
        rows.append({"minutes": minutes, "seconds": elapsed, "rate": rate, "peak_gb": max(peaks)})
        print(
            f"| {minutes:g} min | {elapsed:.1f} s | {rate:.2f} | {rate / short_rate:.2f} | {max(peaks):.2f} GB |",
            flush=True,
        )
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"short_rate": short_rate, "rows": rows, "args": vars(args)}, f, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
