"""Render the synthetic espeak-ng corpus used for the CPU training demo.

    python examples/make_synthetic_corpus.py --out runs/synth --num-train 3000 --num-dev 150 --num-test 150 \
        --seed 0 --noise-snr-db 30 --noise-prob 0.5 --vocab-size 320 --jobs 2 \
        --multi-prob 0.25 --max-seconds 30 --num-test-long 100

Writes wavs/, train.jsonl, dev.jsonl, test.jsonl (test_long.jsonl with --num-test-long), tokenizer/ and
corpus_info.json under --out (see docs/synthetic_data.md). Each manifest row also records how it was
rendered (voice, variant, rate, rate_band, noise, snr_db): the fields evaluation reports slice by.
``--annotate DIR`` adds those fields to the manifests of a corpus made before they existed (nothing is
rendered again). Without the multi-sentence options every
utterance is one sentence, as in corpora made before they existed.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from granite_nar.testing.synthetic_speech import EspeakNotFoundError, annotate_corpus, make_corpus


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", help="output folder (created)")
    p.add_argument("--annotate", metavar="DIR", help="add the render fields to an existing corpus and exit")
    p.add_argument("--voices", nargs="+", help="espeak-ng voices to draw from (default: eight English ones)")
    p.add_argument("--variants", nargs="+", help='voice variants to draw from ("" = none; default: 16)')
    p.add_argument("--num-train", type=int, default=2000)
    p.add_argument("--num-dev", type=int, default=100)
    p.add_argument("--num-test", type=int, default=100)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--noise-snr-db", type=float, default=None, help="add white/pink noise at about this SNR")
    p.add_argument("--noise-prob", type=float, default=0.5, help="fraction of utterances that get noise")
    p.add_argument(
        "--vocab-size", type=int, default=320, help="tokenizer size including the two special tokens"
    )
    p.add_argument("--jobs", type=int, default=None, help="worker processes (default: all CPUs)")
    p.add_argument("--min-words", type=int, default=3)
    p.add_argument("--max-words", type=int, default=10)
    p.add_argument(
        "--multi-prob",
        type=float,
        default=0.0,
        help="fraction of train/dev utterances that join several sentences with pauses",
    )
    p.add_argument(
        "--max-seconds", type=float, default=30.0, help="longest multi-sentence utterance, padding included"
    )
    p.add_argument(
        "--pause-range",
        type=float,
        nargs=2,
        default=(0.2, 1.5),
        metavar=("MIN", "MAX"),
        help="seconds of silence between the sentences of an utterance",
    )
    p.add_argument(
        "--continuous-prob",
        type=float,
        default=0.2,
        help="probability that a pause is only 0-50 ms (continuous speech)",
    )
    p.add_argument(
        "--num-test-long", type=int, default=0, help="held-out multi-sentence utterances (test_long split)"
    )
    p.add_argument("--long-min-seconds", type=float, default=10.0, help="shortest test_long utterance")
    p.add_argument("--espeak", default=None, help="espeak-ng binary (default: $ESPEAK_NG or PATH)")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.annotate:
        print(f"annotated {annotate_corpus(args.annotate)} rows")
        return 0
    if not args.out:
        print("error: --out is required (or --annotate DIR)", file=sys.stderr)
        return 2
    choices = {}
    if args.voices:
        choices["voices"] = args.voices
    if args.variants:
        choices["variants"] = args.variants
    t0 = time.perf_counter()
    try:
        info = make_corpus(
            args.out,
            num_train=args.num_train,
            num_dev=args.num_dev,
            num_test=args.num_test,
            seed=args.seed,
            noise_snr_db=args.noise_snr_db,
            noise_prob=args.noise_prob,
            vocab_size=args.vocab_size,
            jobs=args.jobs,
            min_words=args.min_words,
            max_words=args.max_words,
            multi_prob=args.multi_prob,
            max_seconds=args.max_seconds,
            pause_range=tuple(args.pause_range),
            continuous_prob=args.continuous_prob,
            num_test_long=args.num_test_long,
            long_min_seconds=args.long_min_seconds,
            espeak=args.espeak,
            **choices,
        )
    except EspeakNotFoundError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    total = time.perf_counter() - t0
    summary = {k: info[k] for k in ("total_hours", "mean_duration_sec", "vocab_size", "noisy_utterances")}
    summary.update(render_seconds=round(info["render_seconds"], 1), total_seconds=round(total, 1))
    summary.update({f"{s}_utterances": info["splits"][s]["utterances"] for s in info["splits"]})
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
