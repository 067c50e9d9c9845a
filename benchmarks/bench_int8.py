"""Opt-in int8 on CPU: speed against bfloat16 and float32, and what it costs in accuracy.

    python benchmarks/bench_int8.py --speed --config full --threads 2     # full size, random weights
    python benchmarks/bench_int8.py --accuracy --model examples/models/tiny-synth \\
        --corpus runs/synth-long --split test                              # the tiny model's held-out set

``--speed``: one NAR call (encoder, BPE head, projector, one editing pass over a forced draft of 3 tokens
per second, as ``nar_vs_ar.py`` does) on seeded synthetic features, for the float32 model after
:func:`granite_nar.quantize_int8` and the bfloat16 model, interleaved (bf16, int8, bf16, …) so that load
from other processes hits both alike; median of ``--repeats``. ``--with-float32`` also times the float32
model first (it is quantized in place afterwards: two full-size float32 copies would not fit in 24 GiB). It also prints the
relative error of the int8 and bfloat16 slot logits against float32 (same audio, same draft), the
largest absolute error, and the share of slot rows whose argmax agrees with float32. Weights are random
(speed does not depend on their values; the error figures are those of random weights, which are harder
on int8 than trained ones, whose activations have structure).

``--accuracy``: ``transcribe`` over a manifest split with the float32, bfloat16 and int8 versions of a
trained model: WER / CER of each, and the share of utterances whose transcript is identical to float32.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from nar_vs_ar import Setting, _device_name, build_models, synthetic_inputs  # noqa: E402

from granite_nar import GraniteSpeechNarForCTC, quantize_int8, transcribe  # noqa: E402
from granite_nar.training.metrics import char_error_rate, word_error_rate  # noqa: E402


def _slot_logits(model, audio, drafts) -> torch.Tensor:
    out = model.model.edit(audio.audio_embeds, audio.audio_lengths, drafts)
    return model.slot_logits(out.last_hidden_state)[0].float()


def _call(model, feats, mask, drafts):
    audio = model.model.encode_audio(feats, mask)
    return model.generate(
        audio_embeds=audio.audio_embeds, audio_lengths=audio.audio_lengths, input_ids=drafts
    )


def _timed(model, feats, mask, drafts) -> float:
    start = time.perf_counter()
    _call(model, feats, mask, drafts)
    return time.perf_counter() - start


def speed(args) -> dict:
    setting = Setting(f"b1_{args.seconds:g}s", (args.seconds,))
    # One float32 model at a time fits in memory next to the bfloat16 one: float32 is measured first, then
    # quantized in place (its float weights are freed), then the bfloat16 model is built.
    model, _ = build_models(args.config, dtype=torch.float32, seed=args.seed)
    feats, mask, drafts = synthetic_inputs(
        setting, model.config, args.tokens_per_second, "cpu", seed=args.seed
    )
    times = {"float32": [], "bfloat16": [], "int8": []}
    with torch.inference_mode():
        reference = _slot_logits(model, model.model.encode_audio(feats, mask), drafts)
        if args.with_float32:
            times["float32"] = [_timed(model, feats, mask, drafts) for _ in range(args.repeats)]
        int8 = quantize_int8(model)
        del model
        bf16, _ = build_models(args.config, dtype=torch.bfloat16, seed=args.seed)
        models = {"bfloat16": bf16, "int8": int8}
        errors = {}
        for name, model in models.items():
            logits = _slot_logits(model, model.model.encode_audio(feats, mask), drafts)
            diff = logits - reference
            errors[name] = {
                "relative_error": float(diff.norm() / reference.norm()),
                "max_abs_error": float(diff.abs().max()),
                "argmax_agreement": float((logits.argmax(-1) == reference.argmax(-1)).float().mean()),
            }
            _call(model, feats, mask, drafts)  # warm-up
        for _ in range(args.repeats):  # interleaved: bf16, int8, bf16, int8, ...
            for name, model in models.items():
                times[name].append(_timed(model, feats, mask, drafts))
    times = {name: ts for name, ts in times.items() if ts}
    medians = {name: statistics.median(ts) for name, ts in times.items()}
    report = {
        "setting": setting.name,
        "config": args.config,
        "device": _device_name(torch.device("cpu")),
        "threads": torch.get_num_threads(),
        "median_s": medians,
        "rtfx": {name: args.seconds / t for name, t in medians.items()},
        "int8_speedup_vs_bfloat16": medians["bfloat16"] / medians["int8"],
        "logit_error_vs_float32": errors,
    }
    print(f"{setting.name}, {args.config} size, {report['device']}, {report['threads']} threads")
    for name, t in medians.items():
        print(f"  {name:9s} median {t:7.3f} s  RTFx {args.seconds / t:6.2f}")
    print(f"  int8 vs bfloat16: {report['int8_speedup_vs_bfloat16']:.2f}x")
    for name, e in errors.items():
        print(
            f"  {name:9s} slot logits vs float32: relative error {e['relative_error']:.4f}, "
            f"max |diff| {e['max_abs_error']:.4f}, argmax agreement {e['argmax_agreement']:.1%}"
        )
    return report


def accuracy(args) -> dict:
    rows = [json.loads(line) for line in (Path(args.corpus) / f"{args.split}.jsonl").read_text().splitlines()]
    rows = rows[: args.limit] if args.limit else rows
    files = [str(Path(args.corpus) / row["audio_path"]) for row in rows]
    references = [row["text"] for row in rows]
    variants = {
        "float32": GraniteSpeechNarForCTC.from_pretrained(args.model, dtype=torch.float32),
        "bfloat16": GraniteSpeechNarForCTC.from_pretrained(args.model, dtype=torch.bfloat16),
        "int8": quantize_int8(GraniteSpeechNarForCTC.from_pretrained(args.model, dtype=torch.float32)),
    }
    texts = {
        name: transcribe(files, model=model, processor=args.model, batch_size=args.batch_size)
        for name, model in variants.items()
    }
    report = {"model": args.model, "corpus": args.corpus, "split": args.split, "utterances": len(rows)}
    print(f"{args.model} on {args.corpus}/{args.split} ({len(rows)} utterances)")
    for name, hyps in texts.items():
        same = sum(a == b for a, b in zip(hyps, texts["float32"], strict=True)) / len(rows)
        report[name] = {
            "wer": float(word_error_rate(references, hyps)),
            "cer": float(char_error_rate(references, hyps)),
            "identical_to_float32": same,
        }
        print(
            f"  {name:9s} WER {report[name]['wer']:.2%}  CER {report[name]['cer']:.2%}  "
            f"transcript identical to float32: {same:.1%}"
        )
    return report


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--speed", action="store_true")
    parser.add_argument("--accuracy", action="store_true")
    parser.add_argument("--config", choices=("tiny", "full"), default="tiny")
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--tokens-per-second", type=float, default=3.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--with-float32", action="store_true", help="also time the float32 model (before quantizing it)"
    )
    parser.add_argument("--model", default="examples/models/tiny-synth")
    parser.add_argument("--corpus", default="runs/synth-long")
    parser.add_argument("--split", default="test")
    parser.add_argument("--limit", type=int, default=0)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    if not (args.speed or args.accuracy):
        parser.error("choose --speed, --accuracy or both")
    if args.threads:
        torch.set_num_threads(args.threads)
    report = {}
    if args.speed:
        report["speed"] = speed(args)
    if args.accuracy:
        report["accuracy"] = accuracy(args)
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    main()
