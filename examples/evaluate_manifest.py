"""Score a model on a manifest with the library function behind ``granite-nar evaluate``.

    python examples/evaluate_manifest.py tests/fixtures/tiny_synth/manifest.jsonl \\
        --model examples/models/tiny-synth --slice-by duration_sec:2.2

Prints CER / WER of the CTC draft and of each editing step, overall and per slice, the utterances the
editor changed, and the RTFx. See docs/evaluation.md.
"""

from __future__ import annotations

import argparse

import torch

from granite_nar.training import evaluate_manifest


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("manifest", help="JSON-lines manifest: audio_path, text, duration_sec, other fields")
    p.add_argument("--model", default="examples/models/tiny-synth")
    p.add_argument("--editing-steps", type=int, default=2)
    p.add_argument("--slice-by", nargs="*", default=[], metavar="FIELD[:EDGES]")
    p.add_argument("--normalize", default="basic", help="normalisation steps, e.g. english or nfkc,case")
    p.add_argument("--cjk", action="store_true", help="score CJK text per character")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    torch.set_num_threads(args.threads)

    report = evaluate_manifest(
        args.manifest,
        args.model,
        num_editing_steps=args.editing_steps,
        normalizer=args.normalize,
        cjk_chars=args.cjk,
        slice_by=args.slice_by,
        device="cpu",
        on_failure=lambda failure: print(f"not scored: {failure.message}"),
    )
    for score in [report.overall, *(s for group in report.slices.values() for s in group)]:
        steps = ", ".join(f"{s.name} CER {100 * s.cer:.2f}% WER {100 * s.wer:.2f}%" for s in score.steps)
        print(f"{score.label}: {score.utterances} utterances; {steps}; best: {score.best_step.name}")
    for utterance in report.utterances:
        if utterance.hypotheses[-1] != utterance.hypotheses[0]:
            print(f"edited: {utterance.hypotheses[0]!r} -> {utterance.hypotheses[-1]!r}")
    print(
        f"{report.audio_seconds:.1f} s of audio, RTFx {report.rtfx:.0f} (model), {report.rtfx_end_to_end:.0f} (end to end)"
    )


if __name__ == "__main__":
    main()
