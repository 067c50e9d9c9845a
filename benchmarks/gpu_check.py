"""The GPU check: attention-backend parity and throughput of the full-size model, in one short run.

    python benchmarks/gpu_check.py                       # on a CUDA machine: full size, bf16, < 8 minutes
    python benchmarks/gpu_check.py --config tiny --device cpu --batch-sizes 1 4 --repeats 1   # smoke run

On the full-size architecture with random weights in bf16 (speed does not depend on the values):

1. **Parity**, when flash-attn is installed: the same mixed batch through the editor with ``sdpa`` and with
   ``flash_attention_2`` (varlen over the packed utterances). The tokens must be identical and the slot
   logits close; the largest logit difference is printed.
2. **Throughput**: ``generate`` (CTC draft + one editing pass, the published setting) at each batch size
   over a fixed LibriSpeech-like length mix (2-35 s), after one warm-up; median of ``--repeats`` runs.
   RTFx is seconds of audio per second of wall time. Drafts are the model's own (random weights give
   drafts of arbitrary length), so the editor's share depends on the weights; the encoder's does not.

Prints one table; ``--json FILE`` also writes the figures. Exit status 1 if parity fails.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from nar_vs_ar import _device_name, _synchronize, build_models  # noqa: E402

from granite_nar.lengths import num_encoder_frames  # noqa: E402

# Utterance lengths in seconds, cycled to fill a batch: a spread like LibriSpeech test-clean (2-35 s,
# most between 5 and 20 s).
LENGTH_MIX = (2.1, 4.4, 6.3, 7.9, 9.6, 11.2, 12.8, 14.5, 15.9, 17.7, 19.8, 22.4, 25.6, 29.3, 34.8, 8.7)
SAMPLING_RATE = 16_000


def batch_features(batch_size: int, config, device, seed: int = 0):
    """Seeded ``(B, T_max, 160)`` features and mask for ``batch_size`` utterances of the length mix."""
    seconds = [LENGTH_MIX[i % len(LENGTH_MIX)] for i in range(batch_size)]
    frames = [int(num_encoder_frames(int(s * SAMPLING_RATE))) for s in seconds]
    g = torch.Generator().manual_seed(seed)
    feats = torch.randn(batch_size, max(frames), config.encoder_config.input_dim, generator=g)
    mask = torch.arange(max(frames))[None, :] < torch.tensor(frames)[:, None]
    return feats.to(device), mask.to(device), sum(seconds)


def check_parity(model, config, device, dtype) -> dict:
    """Tokens and slot logits of ``sdpa`` vs ``flash_attention_2`` on one mixed batch of 8."""
    try:
        import flash_attn  # noqa: F401
    except ImportError:
        return {"status": "skipped: flash-attn is not installed"}
    if device.type != "cuda":
        return {"status": "skipped: flash-attn runs on CUDA only"}
    feats, mask, _ = batch_features(8, config, device, seed=1)
    results = {}
    for backend in ("sdpa", "flash_attention_2"):
        model.set_attn_implementation(backend)
        with torch.no_grad():
            out = model.generate(feats.to(dtype), mask, return_dict_in_generate=True)
        results[backend] = out
    model.set_attn_implementation("sdpa")
    a, b = results["sdpa"], results["flash_attention_2"]
    same = all(torch.equal(x, y) for x, y in zip(a.sequences, b.sequences, strict=True))
    diffs = [(x.float() - y.float()).abs().max().item() for x, y in zip(a.logits, b.logits, strict=True)]
    return {
        "status": "ok" if same else "FAILED: tokens differ",
        "tokens_identical": same,
        "max_logit_diff": max(diffs),
    }


def measure(model, config, device, dtype, batch_size: int, repeats: int) -> dict:
    feats, mask, audio_seconds = batch_features(batch_size, config, device)
    feats = feats.to(dtype)
    times = []
    with torch.no_grad():
        for run in range(repeats + 1):  # the first run warms up kernels and the allocator
            _synchronize(device)
            start = time.perf_counter()
            model.generate(feats, mask, num_editing_steps=1)
            _synchronize(device)
            if run:
                times.append(time.perf_counter() - start)
    median = statistics.median(times)
    return {
        "batch_size": batch_size,
        "audio_s": audio_seconds,
        "median_s": median,
        "rtfx": audio_seconds / median,
    }


def main(argv: Sequence[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", choices=["full", "tiny"], default="full")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--dtype", choices=["bfloat16", "float16", "float32"], default="bfloat16")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 32, 128])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", default=None, help="also write the figures to this file")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error(
            "--device cuda: no CUDA device here; use --device cpu (with --config tiny for a smoke run)"
        )
    dtype = getattr(torch, args.dtype)

    start = time.perf_counter()
    model, _ = build_models(args.config, dtype=dtype, device=device)
    config = model.config
    report = {
        "device": _device_name(device),
        "config": args.config,
        "dtype": args.dtype,
        "torch": torch.__version__,
        "parity": check_parity(model, config, device, dtype),
        "throughput": [measure(model, config, device, dtype, b, args.repeats) for b in args.batch_sizes],
    }
    report["wall_s"] = time.perf_counter() - start

    print(f"{report['device']} · {args.config} · {args.dtype} · torch {torch.__version__}")
    parity = report["parity"]
    line = f"sdpa vs flash_attention_2: {parity['status']}"
    if "max_logit_diff" in parity:
        line += (
            f" (tokens identical: {parity['tokens_identical']}, max |Δlogit| {parity['max_logit_diff']:.3g})"
        )
    print(line)
    print("| batch | audio (s) | median (s) | RTFx |")
    print("|---:|---:|---:|---:|")
    for row in report["throughput"]:
        print(f"| {row['batch_size']} | {row['audio_s']:.1f} | {row['median_s']:.3f} | {row['rtfx']:.1f} |")
    print(f"total wall time {report['wall_s']:.0f} s")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))
    if parity["status"].startswith("FAILED"):
        sys.exit(1)
    return report


if __name__ == "__main__":
    main()
