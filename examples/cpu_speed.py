"""Pick the fastest CPU setting for your machine: float32, bfloat16 and opt-in int8 on your own files.

python examples/cpu_speed.py FILE... [--model MODEL_DIR] [--threads N] [--repeats 3] [--compile]

Loads the model once per setting, transcribes the files (a warm-up, then ``--repeats`` timed passes) and
prints each setting's median time, its speed-up over float32 and how many transcripts differ from
float32's. ``--compile`` adds float32 with ``torch.compile`` (its first pass compiles, which takes tens
of seconds and is not timed). Without --model it uses the tiny model trained on synthetic speech that
ships in examples/models/tiny-synth. See docs/performance.md for what each setting does.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch
from transformers.utils import logging as hf_logging

from granite_nar import load_model, transcribe

DEFAULT_MODEL = Path(__file__).resolve().parent / "models" / "tiny-synth"


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="+")
    parser.add_argument("--model", default=str(DEFAULT_MODEL))
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--compile", action="store_true", help="also try float32 with torch.compile")
    args = parser.parse_args(argv)
    hf_logging.disable_progress_bar()
    if args.threads:
        torch.set_num_threads(args.threads)

    settings = {
        "float32": dict(dtype="float32"),
        "bfloat16": dict(dtype="bfloat16"),
        "int8": dict(quantize="int8"),
    }
    if args.compile:
        settings["float32+compile"] = dict(dtype="float32", compile=True)
    report, reference = {}, None
    for name, options in settings.items():
        model, processor = load_model(args.model, device="cpu", **options)
        texts = transcribe(
            args.files, model=model, processor=processor, batch_size=args.batch_size
        )  # warm-up
        times = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            transcribe(args.files, model=model, processor=processor, batch_size=args.batch_size)
            times.append(time.perf_counter() - start)
        reference = texts if reference is None else reference
        differ = sum(a != b for a, b in zip(texts, reference, strict=True))
        report[name] = {"median_s": statistics.median(times), "differ_from_float32": differ}
    base = report["float32"]["median_s"]
    print(f"{len(args.files)} files, {torch.get_num_threads()} threads, median of {args.repeats}")
    for name, row in report.items():
        row["speedup_vs_float32"] = base / row["median_s"]
        print(
            f"  {name:16s} {row['median_s']:7.3f} s  {row['speedup_vs_float32']:5.2f}x  "
            f"transcripts differing from float32: {row['differ_from_float32']}/{len(args.files)}"
        )
    return report


if __name__ == "__main__":
    main()
