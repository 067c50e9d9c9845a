"""Throughput and accuracy of the log-mel front end, on demand (not a test).

    python benchmarks/bench_feature_extraction.py [--runs 9] [--device cpu]

Prints seconds of audio processed per second of wall time (median over runs) for a batch of
8 × 10 s and a single 30 s waveform, the same batch computed with one batched ``torch.stft`` call
(the alternative to the per-utterance loop the extractor uses), and the largest absolute
differences against the golden fixture and the numpy float64 reference of the tests.
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import time
from pathlib import Path

import numpy as np
import torch
from safetensors.numpy import load_file

from granite_nar.audio.feature_extraction_granite_speech_nar import GraniteSpeechNarFeatureExtractor
from granite_nar.lengths import SAMPLING_RATE

ROOT = Path(__file__).resolve().parents[1]
GOLDEN = ROOT / "tests" / "fixtures" / "frontend" / "golden_features.safetensors"


def load_numpy_reference():
    """The test oracle (numpy float64, transformers' HTK filter bank), kept in one place."""
    spec = importlib.util.spec_from_file_location(
        "_fe_tests", ROOT / "tests" / "audio" / "test_feature_extraction.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.numpy_reference


def median_seconds(fn, runs: int) -> float:
    fn()  # warm-up: filter bank, FFT plans
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def batched_stft_features(extractor, waves: torch.Tensor) -> torch.Tensor:
    """Equal-length waveforms in one ``torch.stft`` call: same values as the per-utterance loop."""
    window, filters = extractor._window_and_filters(waves.dtype, waves.device)
    kept = 2 * (waves.shape[1] // 320)
    spectrum = torch.stft(waves, 512, 160, 400, window, center=True, pad_mode="reflect", return_complex=True)
    log_mel = (spectrum[..., :kept].abs().pow(2.0).transpose(1, 2) @ filters).clamp_min(1e-10).log10()
    peak = log_mel.amax(dim=(1, 2), keepdim=True)
    log_mel = torch.maximum(log_mel, peak - 8.0) / 4.0 + 1.0
    return log_mel.reshape(waves.shape[0], kept // 2, 160)  # (B, T, 160)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=9)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()

    extractor = GraniteSpeechNarFeatureExtractor()
    rng = np.random.default_rng(0)
    batch = [(0.1 * rng.standard_normal(10 * SAMPLING_RATE)).astype(np.float32) for _ in range(8)]
    single = (0.1 * rng.standard_normal(30 * SAMPLING_RATE)).astype(np.float32)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, device {args.device}")

    sync = torch.cuda.synchronize if args.device.startswith("cuda") else (lambda: None)
    cases = {
        "batch 8 x 10 s": (80.0, lambda: (extractor(batch, device=args.device), sync())),
        "single 30 s": (30.0, lambda: (extractor(single, device=args.device), sync())),
    }
    stacked = torch.from_numpy(np.stack(batch)).to(args.device)
    cases["batch 8 x 10 s, one batched stft"] = (
        80.0,
        lambda: (batched_stft_features(extractor, stacked), sync()),
    )
    for name, (audio_seconds, fn) in cases.items():
        seconds = median_seconds(fn, args.runs)
        print(f"{name:34s} {seconds * 1e3:8.2f} ms   {audio_seconds / seconds:9.0f} s of audio / s")

    loop = extractor(batch, device=args.device)["input_features"]
    print(
        f"loop vs batched stft, max |diff|:  {(loop - batched_stft_features(extractor, stacked)).abs().max():.3g}"
    )

    golden = load_file(str(GOLDEN))
    numpy_reference = load_numpy_reference()
    waves = [golden[f"wave.{i}"] for i in range(5)] + batch[:2]
    for dtype in (torch.float32, torch.float64):
        vs_golden = max(
            float(
                np.abs(
                    extractor(golden[f"wave.{i}"], dtype=dtype)["input_features"][0].numpy()
                    - golden[f"features.{i}"]
                ).max()
            )
            for i in range(5)
        )
        vs_numpy = max(
            float(np.abs(extractor(w, dtype=dtype)["input_features"][0].numpy() - numpy_reference(w)).max())
            for w in waves
        )
        name = str(dtype).removeprefix("torch.")
        print(
            f"{name}: max |diff| vs golden fixture {vs_golden:.3g}, vs numpy float64 reference {vs_numpy:.3g}"
        )


if __name__ == "__main__":
    main()
