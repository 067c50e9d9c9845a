"""NAR editing vs autoregressive decoding, side by side, on this machine (see docs/performance.md).

A thin wrapper around ``python -m granite_nar.benchmark``; every option is passed through.

    python examples/benchmark_nar_vs_ar.py                              # tiny config, all settings, quick check
    python examples/benchmark_nar_vs_ar.py --config full --dtype bfloat16 --batch-size 1 --durations 15 \\
        --repeats 3 --warmup 1 --json nar_vs_ar_bf16.json              # the headline batch-1 figure
    python examples/benchmark_nar_vs_ar.py --gemm                       # fp32 / bf16 matmul ceiling
    python examples/benchmark_nar_vs_ar.py --config full --dtype bfloat16 --device cuda \\
        --attn flash_attention_2                                        # on a GPU with flash-attn installed

Full-size runs use random weights: the speed of a forward pass does not depend on the weight
values, and transcript lengths are forced to 3 tokens per second of audio for both decoders.
"""

from __future__ import annotations

import sys

from granite_nar.benchmark import main

if __name__ == "__main__":
    main(sys.argv[1:])
