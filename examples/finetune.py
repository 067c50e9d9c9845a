"""Fine-tune Granite Speech NAR: ``granite-nar finetune`` (the same options; see ``granite-nar finetune --help``
and docs/training.md).

    python examples/finetune.py --model examples/models/tiny-synth \\
        --train-manifest runs/synth/train.jsonl --eval-manifest runs/synth/dev.jsonl \\
        --output-dir runs/finetune --preset lora --lora-targets encoder editor --epochs 1

is ``granite-nar finetune --model examples/models/tiny-synth ...``.
"""

from __future__ import annotations

import sys

import granite_nar_cli


def main(argv: list[str] | None = None) -> int:
    return granite_nar_cli.main(["finetune", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
