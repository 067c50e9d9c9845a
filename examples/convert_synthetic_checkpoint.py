#!/usr/bin/env python
"""Convert a synthetic original-layout checkpoint end to end and print the verification.

    python examples/convert_synthetic_checkpoint.py                      # tiny, fp32, in a temporary folder
    python examples/convert_synthetic_checkpoint.py --dtype bfloat16 --sharded --workdir runs/convert-demo

Writes a random checkpoint in the original remote-code layout (config field names, tensor names,
``preprocessor_config.json`` with ``n_mels``, a tokenizer), loads it directly, converts it to the native
layout, and transcribes the same random features with both to show they agree.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch

from granite_nar import GraniteSpeechNarForCTC
from granite_nar.conversion import convert_checkpoint, write_synthetic_original_checkpoint


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", type=Path, default=None, help="default: a temporary folder")
    parser.add_argument("--dtype", choices=["float32", "bfloat16"], default="float32")
    parser.add_argument(
        "--sharded", action="store_true", help="shard the original checkpoint (with an index)"
    )
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        workdir = args.workdir or Path(tmp)
        original = write_synthetic_original_checkpoint(
            workdir / "original",
            seed=args.seed,
            dtype=getattr(torch, args.dtype),
            max_shard_size="50KB" if args.sharded else None,
        )
        print(f"original layout: {sorted(p.name for p in original.iterdir())}")

        report = convert_checkpoint(original, workdir / "native", overwrite=True)
        print(report)

        direct = GraniteSpeechNarForCTC.from_pretrained(original)
        native = GraniteSpeechNarForCTC.from_pretrained(workdir / "native")
        features = torch.randn(2, 120, 160, generator=torch.Generator().manual_seed(1)).to(direct.dtype)
        mask = torch.ones(2, 120, dtype=torch.bool)
        mask[1, 70:] = False
        a, b = direct.generate(features, mask), native.generate(features, mask)
        print(f"direct load : {[t.tolist() for t in a]}")
        print(f"native load : {[t.tolist() for t in b]}")
        assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))


if __name__ == "__main__":
    main()
