"""Render the README demo input, examples/audio/demo.wav, with espeak-ng (16 kHz mono, 16-bit PCM).

python examples/make_demo_wav.py [--text "the red cat sees two small dogs"] [--out examples/audio/demo.wav]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from granite_nar.testing.synthetic_speech import (
    EspeakNotFoundError,
    RenderParams,
    grammar_vocabulary,
    synthesize,
    write_wav,
)

DEMO_TEXT = "the red cat sees two small dogs"
DEMO_PARAMS = RenderParams(voice="en-us", rate=160, pitch=50, lead_silence=0.2, trail_silence=0.2)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--text", default=DEMO_TEXT)
    p.add_argument("--out", default=str(Path(__file__).resolve().parent / "audio" / "demo.wav"))
    args = p.parse_args(argv)
    unknown = sorted(set(args.text.split()) - set(grammar_vocabulary()))
    if unknown:
        print(f"warning: words outside the synthetic grammar: {' '.join(unknown)}", file=sys.stderr)
    try:
        wave = synthesize(args.text, DEMO_PARAMS)
    except EspeakNotFoundError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    duration = write_wav(out, wave)
    print(f"wrote {out} ({duration:.2f} s, {out.stat().st_size} bytes): {args.text!r}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
