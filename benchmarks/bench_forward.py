"""Full-size forward time on this machine (random weights): one utterance, fp32 and bf16.

    python benchmarks/bench_forward.py --seconds 10 --dtype float32 bfloat16 --repeats 3

Prints the median wall time of ``generate`` (encoder + projector + one editing pass) and of its parts.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from granite_nar import GraniteSpeechNarConfig, GraniteSpeechNarForCTC
from granite_nar.lengths import SAMPLES_PER_ENCODER_FRAME, SAMPLING_RATE


def build(dtype: torch.dtype) -> GraniteSpeechNarForCTC:
    """Full-size model with random weights, built on meta and filled in place (no slow init)."""
    with torch.device("meta"):
        model = GraniteSpeechNarForCTC(GraniteSpeechNarConfig())
    model = model.to_empty(device="cpu").to(dtype)
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "norm" in name and name.endswith("weight"):
                param.fill_(1.0)
            else:
                param.copy_(torch.randn(param.shape, generator=gen) * 0.02)
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm1d):
                module.running_mean.zero_()
                module.running_var.fill_(1.0)
    model.materialize_buffers("cpu")
    model.tie_weights()
    return model.eval()


def timed(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--dtype", nargs="+", default=["float32", "bfloat16"])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--draft-tokens-per-second", type=float, default=3.0)
    args = parser.parse_args()
    frames = int(args.seconds * SAMPLING_RATE) // SAMPLES_PER_ENCODER_FRAME
    features = torch.randn(1, frames, 160, generator=torch.Generator().manual_seed(1))
    draft = [torch.randint(0, 100000, (int(args.seconds * args.draft_tokens_per_second),))]
    print(f"threads={torch.get_num_threads()} audio={args.seconds}s frames={frames} draft={len(draft[0])} tokens")
    for name in args.dtype:
        dtype = getattr(torch, name)
        model = build(dtype)
        with torch.inference_mode():
            audio = model.model.encode_audio(features)
            t_encode = timed(lambda: model.model.encode_audio(features), args.repeats)
            t_edit = timed(
                lambda: model.generate(audio_embeds=audio.audio_embeds, audio_lengths=audio.audio_lengths, input_ids=draft),
                args.repeats,
            )
            t_total = timed(lambda: model.generate(features, input_ids=draft), args.repeats)
        print(
            f"{name:9s} generate (1 pass, forced {len(draft[0])}-token draft): {t_total:.3f} s  "
            f"[encoder+BPE+projector {t_encode:.3f} s, editor+head {t_edit:.3f} s]  RTFx {args.seconds / t_total:.1f}"
        )
        del model


if __name__ == "__main__":
    main()
