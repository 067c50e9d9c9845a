"""Render examples/audio/talk.flac, the long-form demo input: 16 held-out sentences of the synthetic
grammar in one voice, joined by pauses of 0.3-1.5 s (about a minute; 16 kHz mono FLAC), with espeak-ng.

python examples/make_long_demo.py [--out examples/audio/talk.flac] [--sentences 16] [--seed 2026]

The reference transcript goes next to it as talk.txt.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import soundfile as sf

from granite_nar.testing.synthetic_speech import (
    EspeakNotFoundError,
    RenderParams,
    generate_sentences,
    synthesize,
)

PARAMS = RenderParams(voice="en-us", rate=160, pitch=50, lead_silence=0.2, trail_silence=0.2)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default=str(Path(__file__).resolve().parent / "audio" / "talk.flac"))
    p.add_argument("--sentences", type=int, default=16)
    p.add_argument("--seed", type=int, default=2026)
    args = p.parse_args(argv)
    sentences = generate_sentences(args.sentences, seed=args.seed, unique=True)
    rng = np.random.default_rng(args.seed)
    parts = []
    try:
        for text in sentences:
            parts += [synthesize(text, PARAMS), np.zeros(int(rng.uniform(0.3, 1.5) * 16000), np.float32)]
    except EspeakNotFoundError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    wave = np.concatenate(parts)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    sf.write(out, wave, 16000, subtype="PCM_16")
    out.with_suffix(".txt").write_text(" ".join(sentences) + "\n")
    print(f"wrote {out} ({len(wave) / 16000:.1f} s, {out.stat().st_size} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
