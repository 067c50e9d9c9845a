"""Transcribe audio files with the Python API and report speed; bad files are listed, not fatal.

python examples/transcribe_files.py [--model MODEL_DIR] FILE... [--batch-size 8] [--device cpu] [--drafts]

Without --model it uses the tiny model trained on synthetic speech that ships in examples/models/tiny-synth
(it only knows the small grammar of that corpus). The same job from the shell is `granite-nar transcribe`.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from transformers.utils import logging as hf_logging

from granite_nar import load_model, transcribe

DEFAULT_MODEL = Path(__file__).resolve().parent / "models" / "tiny-synth"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="+")
    parser.add_argument(
        "--model", default=str(DEFAULT_MODEL), help="model folder or Hub id (default: %(default)s)"
    )
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--device", default=None)
    parser.add_argument("--editing-steps", type=int, default=1)
    parser.add_argument("--drafts", action="store_true", help="also print the CTC drafts")
    args = parser.parse_args(argv)
    hf_logging.disable_progress_bar()  # keep stderr for our own report

    # Load once; transcribe() would otherwise load the model on every call.
    model, processor = load_model(args.model, device=args.device)
    start = time.perf_counter()
    results = transcribe(
        args.files,
        model=model,
        processor=processor,
        batch_size=args.batch_size,
        num_editing_steps=args.editing_steps,
        return_drafts=args.drafts,
        on_error="skip",  # report bad files, transcribe the rest
    )
    seconds = time.perf_counter() - start

    for result in results:
        if not result.ok:
            print(f"FAILED  {result.error}", file=sys.stderr)
            continue
        print(f"{result.source}\t{result.text}")
        if args.drafts:
            print(f"{result.source}\tdraft: {result.draft}")
    audio = sum(r.duration_sec or 0.0 for r in results)
    ok = sum(r.ok for r in results)
    print(
        f"{ok}/{len(results)} files, {audio:.1f} s of audio in {seconds:.2f} s "
        f"({audio / max(seconds, 1e-9):.1f} s of audio per second)",
        file=sys.stderr,
    )
    return 0 if ok == len(results) else 1


if __name__ == "__main__":
    sys.exit(main())
