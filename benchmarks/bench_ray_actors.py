"""Throughput of ``transcribe_dataset`` on a local Ray cluster with 1 and 2 actors, in one run.

    python benchmarks/bench_ray_actors.py --clips 200 --actors 1 2 --threads 1
    python benchmarks/bench_ray_actors.py --config full --dtype bfloat16 --clips 40   # released size, random

The clips are the test fixtures' synthetic utterances and the demo clip (2-2.5 s), listed ``--clips`` times
in a manifest with a unique id per row. Each setting writes to a fresh folder; its wall time includes
starting the actors and loading the model in each, which the "overhead" row measures on its own (a run
over 2 rows). ``--config full`` saves the released architecture with random weights once, to a
temporary folder, for the actors to load.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
TINY = REPO / "examples" / "models" / "tiny-synth"
CLIPS = [
    *sorted((REPO / "tests" / "fixtures" / "tiny_synth").glob("*.wav")),
    REPO / "examples" / "audio" / "demo.wav",
]


def _model_folder(config: str, dtype: str, folder: Path) -> Path:
    if config == "tiny":
        return TINY
    import torch

    from granite_nar import GraniteSpeechNarConfig, GraniteSpeechNarForCTC, GraniteSpeechNarProcessor

    torch.manual_seed(0)
    model = GraniteSpeechNarForCTC(GraniteSpeechNarConfig()).to(getattr(torch, dtype))
    model.save_pretrained(folder)
    GraniteSpeechNarProcessor.from_pretrained(TINY).save_pretrained(folder)
    return folder


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--clips", type=int, default=200)
    p.add_argument("--actors", type=int, nargs="+", default=[1, 2])
    p.add_argument("--threads", type=int, default=1, help="torch threads per actor")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--config", choices=["tiny", "full"], default="tiny")
    p.add_argument("--dtype", choices=["float32", "bfloat16"], default="float32")
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)

    import ray
    import soundfile

    from granite_nar.distributed import transcribe_dataset

    work = Path(tempfile.mkdtemp(prefix="bench_ray_"))
    try:
        model = _model_folder(args.config, args.dtype, work / "model")
        seconds = [soundfile.info(c).duration for c in CLIPS]
        rows = [{"id": k, "audio": str(CLIPS[k % len(CLIPS)])} for k in range(args.clips)]
        audio = sum(seconds[k % len(CLIPS)] for k in range(args.clips))
        manifest = work / "manifest.jsonl"
        manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
        small = work / "small.jsonl"
        small.write_text("".join(json.dumps(r) + "\n" for r in rows[:2]))
        cpus = max(args.actors) * args.threads
        ray.init(num_cpus=cpus, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
        ray.data.DataContext.get_current().enable_progress_bars = False

        def run(source, actors, tag):
            out = work / f"out_{tag}"
            shutil.rmtree(out, ignore_errors=True)
            start = time.perf_counter()
            report = transcribe_dataset(
                source, out, model, id_column="id", num_workers=actors, threads_per_worker=args.threads,
                batch_size=args.batch_size, rows_per_shard=args.batch_size, dtype=args.dtype, device="cpu",
            )  # fmt: skip
            elapsed = time.perf_counter() - start
            assert report.failed == 0, report
            return elapsed

        run(small, 1, "warm")  # first use of Ray Data in this process
        results = []
        for actors in args.actors:
            overhead = statistics.median(run(small, actors, f"o{actors}") for _ in range(args.repeats))
            wall = statistics.median(run(manifest, actors, f"a{actors}") for _ in range(args.repeats))
            results.append({"actors": actors, "wall_s": wall, "overhead_s": overhead})
        ray.shutdown()
    finally:
        shutil.rmtree(work, ignore_errors=True)

    print(
        f"CPU: {platform.processor() or platform.machine()} ({os.cpu_count()} cores), {args.config} model, "
        f"{args.dtype}, {args.threads} torch thread(s) per actor, {args.clips} clips ({audio:.0f} s of audio), "
        f"batch {args.batch_size}, median of {args.repeats}"
    )
    print("| actors | wall time | clips / s | audio s / s | vs 1 actor | start-up (2-row run) |")
    print("|---|---|---|---|---|---|")
    base = next((r["wall_s"] for r in results if r["actors"] == 1), results[0]["wall_s"])
    for r in results:
        print(
            f"| {r['actors']} | {r['wall_s']:.1f} s | {args.clips / r['wall_s']:.2f} | {audio / r['wall_s']:.1f} | "
            f"{base / r['wall_s']:.2f} | {r['overhead_s']:.1f} s |"
        )
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"results": results, "args": vars(args), "audio_s": audio}, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
