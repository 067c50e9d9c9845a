"""Tables of the fine-tuning recipe run by ``examples/adapt_tiny_synth.sh`` (docs/training.md).

    python examples/summarize_adaptation.py runs/adapt

Reads ``OUT/eval/NAME.{accents,orig}.json`` (``granite-nar evaluate --json`` reports) and each run's
``OUT/NAME/finetune_summary.json`` and log, and prints Markdown tables: ``CER / WER`` (%) of the draft and
of each editing step on the adapted condition and on the original held-out set, with the run's trainable
parameters, steps and seconds; then each later stage's WER change against the SFT model it started from,
paired on the same accents test utterances (``--predictions`` files), with a 95 % bootstrap interval.
Also written to ``OUT/summary.md``.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

SFT = ("sft-projector", "sft-last1-head", "sft-lora", "sft-full", "sft-lora-replay", "sft-full-replay")
STAGES = (
    "sft-full",
    "stage-sft",
    "stage-sequence",
    "stage-sequence-group",
    "stage-self-correction",
    "stage-sft-lr1e-4",
    "stage-sequence-lr1e-4",
    "stage-sft-e2",
    "stage-self-correction-e2",
)
STEPS = ("draft", "edit1", "edit2")


def _report(out: Path, name: str, condition: str) -> dict | None:
    path = out / "eval" / f"{name}.{condition}.json"
    return json.loads(path.read_text()) if path.is_file() else None


def _rates(report: dict | None) -> list[str]:
    """``CER / WER`` in percent of the draft and of each editing step."""
    if report is None:
        return ["–"] * len(STEPS)
    steps = report["overall"]["steps"]
    return [f"{100 * steps[s]['cer']:.2f} / {100 * steps[s]['wer']:.2f}" for s in STEPS]


def _run(out: Path, name: str) -> list[str]:
    """Trainable parameters, steps, seconds, the dev metric at the end of the budget and the step kept
    (0: no step beat the starting model), from the run's summary and log."""
    summary_path, log_path = out / name / "finetune_summary.json", out / f"{name}.log"
    if not summary_path.is_file():
        return ["–"] * 5
    summary = json.loads(summary_path.read_text())
    trainable = "–"
    if log_path.is_file():
        match = re.search(r"([\d,]+) trainable of ([\d,]+) parameters", log_path.read_text())
        if match:
            trainable = match.group(1)
    metric, evaluations = summary.get("metric"), summary.get("evaluations") or []
    end = (
        f"{100 * evaluations[-1][metric]:.2f}"
        if metric and evaluations and metric in evaluations[-1]
        else "–"
    )
    kept = str(summary["best_step"]) if summary.get("best_step") is not None else "–"
    return [trainable, str(summary["steps"]), f"{summary['seconds']:.0f}", end, kept]


def table(out: Path, names, title: str) -> str:
    head = [
        "run",
        "trainable",
        "steps",
        "s",
        "dev metric at end",
        "step kept",
        *(f"accents {s}" for s in STEPS),
        *(f"original {s}" for s in STEPS),
    ]
    rows = [
        ["shipped model (no tuning)", "0", "0", "0", "–", "–", *_rates(_report(out, "baseline", "accents"))]
    ]
    rows[0] += _rates(_report(out, "baseline", "orig"))
    for name in names:
        rows.append(
            [
                name,
                *_run(out, name),
                *_rates(_report(out, name, "accents")),
                *_rates(_report(out, name, "orig")),
            ]
        )
    lines = [f"### {title}", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def _word_errors(out: Path, name: str, step: str) -> tuple[list[int], list[int]] | None:
    """Per-utterance word errors and reference lengths of a run's accents predictions at ``step``."""
    path = out / "eval" / f"{name}.accents.predictions.jsonl"
    if not path.is_file():
        return None
    errors, lengths = [], []
    for line in path.read_text().splitlines():
        counts = json.loads(line)["steps"][step]["word_errors"]
        errors.append(counts["substitutions"] + counts["deletions"] + counts["insertions"])
        lengths.append(counts["reference_length"])
    return errors, lengths


def paired_difference(
    base: tuple[list[int], list[int]],
    other: tuple[list[int], list[int]],
    resamples: int = 2000,
    seed: int = 0,
) -> tuple[float, float, float, int, int]:
    """WER(other) - WER(base) on the same utterances, in points, with a 95 % paired bootstrap interval
    (utterances resampled with replacement), and the numbers of utterances ``other`` got better / worse."""
    import numpy as np

    a, b, n = np.array(base[0]), np.array(other[0]), np.array(base[1])
    if len(a) != len(b) or list(n) != list(other[1]):
        raise ValueError("the two prediction files do not hold the same utterances")
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(a), size=(resamples, len(a)))
    deltas = 100 * ((b[picks].sum(1) - a[picks].sum(1)) / n[picks].sum(1))
    low, high = np.percentile(deltas, [2.5, 97.5])
    return (
        100 * (b.sum() - a.sum()) / n.sum(),
        float(low),
        float(high),
        int((b < a).sum()),
        int((b > a).sum()),
    )


def comparison(out: Path, base: str, names, title: str) -> str:
    """Each run's accents WER change against ``base`` (edit 1 and edit 2), with its paired interval."""
    lines = [
        f"### {title}",
        "",
        "| run | step | WER change (points) | 95 % interval | utterances better / worse |",
        "|---|---|---|---|---|",
    ]
    for name in names:
        for step in ("edit1", "edit2"):
            first, second = _word_errors(out, base, step), _word_errors(out, name, step)
            if first is None or second is None:
                continue
            delta, low, high, better, worse = paired_difference(first, second)
            lines.append(
                f"| {name} | {step} | {delta:+.2f} | {low:+.2f} … {high:+.2f} | {better} / {worse} |"
            )
    return "\n".join(lines)


def main(argv=None) -> int:
    args = sys.argv[1:] if argv is None else argv
    out = Path(args[0] if args else "runs/adapt")
    text = "\n\n".join(
        [
            table(out, SFT, "SFT presets at equal wall-clock time"),
            table(out, STAGES, "After full SFT: same extra time, editor parameters"),
            comparison(
                out,
                "sft-full",
                [n for n in STAGES if n != "sft-full"],
                "Against the full SFT model, paired on the accents test",
            ),
        ]
    )
    print(text)
    (out / "summary.md").write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
