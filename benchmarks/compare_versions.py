"""Two versions of the package in one process: speed ratio, MFU and token agreement, measured interleaved.

    git worktree add /tmp/granite-nar-before <commit>         # the version to compare against
    python benchmarks/compare_versions.py --before /tmp/granite-nar-before/src/granite_nar \\
        --settings b1_5s b1_15s b1_30s b8_mixed --repeats 3 --threads 2 --json compare.json

Timings on a shared machine move by tens of percent between processes, so a before/after ratio is only
meaningful when both versions run in the same process on the same inputs. This script copies the
``--before`` package folder to a temporary directory as ``granite_nar_before`` (the package's internal
imports are relative, so it runs side by side with the installed ``granite_nar``), builds this version's
full-size model with random weights (``nar_vs_ar.build_models``), gives the other version's model **the
same weight tensors** (no second copy in memory), and calls the two alternately — before, after,
before, after — on the seeded inputs of ``nar_vs_ar.py`` (encoder, BPE head, projector and one editing
pass over a forced draft of ``--tokens-per-second``). It prints per setting the median of each, the
speed-up, RTFx, the MFU against the matmul peak measured in the same run (``mfu.py``), and whether
the two versions returned the same tokens.
"""

from __future__ import annotations

import argparse
import importlib
import json
import shutil
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from mfu import measure_gemm_peak, model_flops  # noqa: E402
from nar_vs_ar import MIXED_DURATIONS, Setting, _device_name, build_models, synthetic_inputs  # noqa: E402

SETTINGS = {
    "b1_5s": (5.0,),
    "b1_15s": (15.0,),
    "b1_30s": (30.0,),
    "b8_mixed": MIXED_DURATIONS,
}


def import_before(package_dir: Path, scratch: Path):
    """The package at ``package_dir`` imported as ``granite_nar_before``."""
    if not (package_dir / "__init__.py").is_file():
        raise SystemExit(
            f"--before {package_dir}: not a package folder (no __init__.py); pass .../src/granite_nar"
        )
    shutil.copytree(package_dir, scratch / "granite_nar_before", ignore=shutil.ignore_patterns("__pycache__"))
    sys.path.insert(0, str(scratch))
    return importlib.import_module("granite_nar_before")


def share_weights(before_pkg, after, dtype: torch.dtype):
    """The other version's model with ``after``'s parameter and buffer tensors."""
    with warnings.catch_warnings():  # fields the other version does not know are reported and ignored
        warnings.simplefilter("ignore")
        config = before_pkg.GraniteSpeechNarConfig.from_dict(after.config.to_dict())
    with torch.device("meta"):
        before = before_pkg.GraniteSpeechNarForCTC._from_config(
            config, attn_implementation="sdpa", dtype=dtype
        )
    before.load_state_dict(after.state_dict(), assign=True, strict=True)
    before.materialize_buffers("cpu")
    before.tie_weights()
    return before.eval()


def nar_call(model, feats, mask, drafts):
    audio = model.model.encode_audio(feats, mask)
    return model.generate(
        audio_embeds=audio.audio_embeds, audio_lengths=audio.audio_lengths, input_ids=drafts
    )


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--before", required=True, type=Path, help="the other version's src/granite_nar folder"
    )
    parser.add_argument("--config", choices=("tiny", "full"), default="full")
    parser.add_argument("--dtype", choices=("float32", "bfloat16"), default="bfloat16")
    parser.add_argument("--settings", nargs="+", choices=sorted(SETTINGS), default=list(SETTINGS))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--tokens-per-second", type=float, default=3.0)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    dtype = getattr(torch, args.dtype)
    settings = [Setting(name, SETTINGS[name]) for name in args.settings]
    with tempfile.TemporaryDirectory() as scratch:
        before_pkg = import_before(args.before.resolve(), Path(scratch))
        after, _ = build_models(args.config, dtype=dtype)
        before = share_weights(before_pkg, after, dtype)
        longest = max(settings, key=lambda s: s.audio_seconds)
        peak = measure_gemm_peak(
            after.config,
            dtype=dtype,
            threads=args.threads,
            encoder_frames=(max(longest.frames),),
            draft_tokens=(max(longest.tokens(args.tokens_per_second)),),
        )
        report = {
            "device": _device_name(torch.device("cpu")),
            "threads": torch.get_num_threads(),
            "config": args.config,
            "dtype": args.dtype,
            "before": str(args.before),
            "peak_tflops": peak["peak_tflops"],
            "peak_shape": peak["peak_shape"],
            "rows": [],
        }
        print(
            f"{report['device']}, {report['threads']} threads, {args.dtype}; GEMM peak "
            f"{peak['peak_tflops']:.3f} TFLOP/s ({peak['peak_shape']})"
        )
        with torch.inference_mode():
            for setting in settings:
                feats, mask, drafts = synthetic_inputs(setting, after.config, args.tokens_per_second, "cpu")
                outputs = [nar_call(m, feats, mask, drafts) for m in (before, after)]  # warm-up
                same = all(torch.equal(a, b) for a, b in zip(*outputs, strict=True))
                times = {"before": [], "after": []}
                for _ in range(args.repeats):
                    for name, model in (("before", before), ("after", after)):
                        start = time.perf_counter()
                        nar_call(model, feats, mask, drafts)
                        times[name].append(time.perf_counter() - start)
                flops = model_flops(after.config, setting.frames, setting.tokens(args.tokens_per_second))[
                    "total"
                ]
                row = {"setting": setting.name, "audio_s": setting.audio_seconds, "tokens_identical": same}
                for name, runs in times.items():
                    median = statistics.median(runs)
                    row[name] = {
                        "median_s": median,
                        "runs": runs,
                        "rtfx": setting.audio_seconds / median,
                        "mfu": flops / median / (peak["peak_tflops"] * 1e12),
                    }
                row["speedup"] = row["before"]["median_s"] / row["after"]["median_s"]
                report["rows"].append(row)
                b, a = row["before"], row["after"]
                print(
                    f"{setting.name}: before {b['median_s']:.3f} s (RTFx {b['rtfx']:.2f}, MFU {b['mfu']:.1%}), "
                    f"after {a['median_s']:.3f} s (RTFx {a['rtfx']:.2f}, MFU {a['mfu']:.1%}): "
                    f"{row['speedup']:.2f}x, tokens identical: {same}",
                    flush=True,
                )
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    main()
