"""Score the tiny synthetic-speech models on the held-out test split: CER / WER and RTFx.

    python examples/evaluate_tiny_synth.py --nar examples/models/tiny-synth --ar runs/tiny-synth-ar/model \\
        --corpus runs/synth --json runs/tiny-synth/results.json

For the NAR model it scores the BPE-CTC draft and the transcript after 1 and 2 editing steps (one pass,
the steps' outputs collected), then times ``generate`` separately for 0, 1 and 2 editing steps; for the
AR counterpart it scores and times greedy decoding. RTFx = seconds of audio / seconds of compute, float32,
on ``--threads`` CPU threads, at batch size ``--batch-size`` and at batch size 1, best of ``--repeats``
timed passes over the whole test set (feature extraction excluded, the same for every model).

``--export-fixtures DIR`` copies ``--num-fixtures`` short test utterances, preferring ones whose draft the
editor corrects, into ``DIR`` with their reference, draft and edited transcripts (``expected.json``).
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

import torch

from granite_nar import GraniteSpeechNarForCTC, GraniteSpeechNarProcessor
from granite_nar.training import (
    DataCollatorForGraniteSpeechNar,
    SpeechDataset,
    TranscriptionEvaluator,
    read_manifest,
)
from granite_nar.training.metrics import char_error_rate, word_error_rate


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--nar", default="examples/models/tiny-synth")
    p.add_argument("--ar", help="AR counterpart folder (optional)")
    p.add_argument("--corpus", default="runs/synth")
    p.add_argument("--split", default="test")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--json", help="write the results here")
    p.add_argument("--export-fixtures", help="folder for a few test WAVs and their expected transcripts")
    p.add_argument("--num-fixtures", type=int, default=4)
    return p.parse_args()


def batches(dataset, collator, batch_size):
    return [
        collator([dataset[i] for i in range(start, min(start + batch_size, len(dataset)))])
        for start in range(0, len(dataset), batch_size)
    ]


@torch.no_grad()
def best_time(fn, inputs, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        tic = time.perf_counter()
        for batch in inputs:
            fn(batch)
        best = min(best, time.perf_counter() - tic)
    return best


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    processor = GraniteSpeechNarProcessor.from_pretrained(args.nar)
    tokenizer = processor.tokenizer
    model = GraniteSpeechNarForCTC.from_pretrained(args.nar, dtype=torch.float32).eval()
    rows, report = read_manifest(Path(args.corpus) / f"{args.split}.jsonl", tokenizer=tokenizer)
    print(report)
    dataset = SpeechDataset(rows, processor.feature_extractor, cache_features=True)
    collator = DataCollatorForGraniteSpeechNar.from_processor(processor)
    audio_seconds = sum(num_frames * 0.02 for num_frames in dataset.lengths)

    evaluator = TranscriptionEvaluator(
        dataset, collator, tokenizer, num_editing_steps=2, batch_size=args.batch_size
    )
    refs, hyps, _, _ = evaluator.transcribe(model)
    scores = evaluator.score(refs, hyps)
    results = {
        "split": args.split,
        "utterances": len(rows),
        "audio_seconds": round(audio_seconds, 1),
        "rows": {},
    }
    big, single = batches(dataset, collator, args.batch_size), batches(dataset, collator, 1)
    for steps, name in [(0, "draft"), (1, "edit1"), (2, "edit2")]:

        def run(batch, steps=steps):
            model.generate(batch["input_features"], batch["input_features_mask"], num_editing_steps=steps)

        results["rows"][name] = {
            "cer": scores[f"{name}_cer"],
            "wer": scores[f"{name}_wer"],
            f"rtfx_batch{args.batch_size}": audio_seconds / best_time(run, big, args.repeats),
            "rtfx_batch1": audio_seconds / best_time(run, single, args.repeats),
        }

    if args.ar:
        from granite_nar import GraniteSpeechArForConditionalGeneration

        ar = GraniteSpeechArForConditionalGeneration.from_pretrained(args.ar, dtype=torch.float32).eval()
        limit = 64

        def run_ar(batch):
            return ar.generate(
                input_features=batch["input_features"],
                input_features_mask=batch["input_features_mask"],
                max_new_tokens=limit,
            )

        with torch.no_grad():
            ar_hyps = [t for b in big for t in tokenizer.batch_decode(run_ar(b), skip_special_tokens=True)]
        results["rows"]["ar"] = {
            "cer": char_error_rate(refs, ar_hyps).rate,
            "wer": word_error_rate(refs, ar_hyps).rate,
            f"rtfx_batch{args.batch_size}": audio_seconds / best_time(run_ar, big, args.repeats),
            "rtfx_batch1": audio_seconds / best_time(run_ar, single, args.repeats),
        }
        hyps["ar"] = ar_hyps

    print(f"{'':8s} {'CER':>7s} {'WER':>7s} {'RTFx b' + str(args.batch_size):>10s} {'RTFx b1':>9s}")
    for name, row in results["rows"].items():
        print(
            f"{name:8s} {100 * row['cer']:6.2f}% {100 * row['wer']:6.2f}% "
            f"{row[f'rtfx_batch{args.batch_size}']:10.0f} {row['rtfx_batch1']:9.0f}"
        )
    changed = [
        {"reference": r, "draft": d, "edit1": e}
        for r, d, e in zip(refs, hyps[0], hyps[1], strict=True)
        if d != e
    ]
    results["edits"] = {
        "utterances_changed_by_edit1": len(changed),
        "fixed": sum(1 for c in changed if c["edit1"] == c["reference"]),
        "broken": sum(1 for c in changed if c["draft"] == c["reference"]),
        "examples": changed[:10],
    }
    print(json.dumps(results["edits"], indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")

    if args.export_fixtures:
        export_fixtures(Path(args.export_fixtures), rows, refs, hyps, args.num_fixtures)


def export_fixtures(out: Path, rows, refs, hyps, count: int) -> None:
    """Short test utterances, those the editor corrects first, with their recorded transcripts."""

    def cer(ref, hyp):
        return char_error_rate(ref, hyp).rate

    candidates = []
    for i, row in enumerate(rows):
        draft, edit1, edit2 = hyps[0][i], hyps[1][i], hyps[2][i]
        gain = cer(refs[i], draft) - cer(refs[i], edit1)
        if cer(refs[i], edit1) > cer(refs[i], draft) or cer(refs[i], edit2) > cer(refs[i], edit1):
            continue
        candidates.append((-(gain > 0), row.duration_sec, i))
    candidates.sort()
    chosen = sorted(i for _, _, i in candidates[:count])
    out.mkdir(parents=True, exist_ok=True)
    expected = []
    for i in chosen:
        row = rows[i]
        name = row.audio_path.name
        shutil.copy(row.audio_path, out / name)
        expected.append(
            {
                "audio": name,
                "reference": refs[i],
                "draft": hyps[0][i],
                "edit1": hyps[1][i],
                "edit2": hyps[2][i],
                "draft_cer": round(cer(refs[i], hyps[0][i]), 6),
                "edit1_cer": round(cer(refs[i], hyps[1][i]), 6),
                "edit2_cer": round(cer(refs[i], hyps[2][i]), 6),
            }
        )
    (out / "expected.json").write_text(json.dumps(expected, indent=2) + "\n")
    manifest = [
        {"audio_path": e["audio"], "text": e["reference"], "duration_sec": rows[i].duration_sec}
        for e, i in zip(expected, chosen, strict=True)
    ]
    (out / "manifest.jsonl").write_text("".join(json.dumps(m) + "\n" for m in manifest))
    print(f"exported {len(expected)} fixtures to {out}")


if __name__ == "__main__":
    main()
