"""Model FLOP utilisation (MFU) of the NAR model: analytic FLOPs per stage, and a matmul peak measured on
the model's own shapes.

    import sys; sys.path.insert(0, "benchmarks")
    from mfu import measure_gemm_peak, mfu, model_flops

    flops = model_flops(config, encoder_frames=[750], draft_tokens=[45])   # one 15 s utterance
    peak = measure_gemm_peak(config, torch.bfloat16, "cpu", encoder_frames=[750], draft_tokens=[45])
    seconds = {"encoder": 1.9, "bpe_head": 0.1, "projector": 0.1, "editor": 1.7}   # measured stage times
    mfu(flops, seconds, peak["peak_tflops"] * 1e12)   # {"encoder": ..., ..., "total": ...}

MFU = model FLOPs / seconds / peak FLOP/s. The model FLOPs are the useful matrix products of one NAR
``generate`` call (2 FLOPs per multiply-add), counted from the configuration on each utterance's own
length; the peak is the best throughput ``F.linear`` reaches on the model's dominant matmul shapes in the
same dtype, on the same device and with the same threads, so that an MFU of 1 means that a stage's useful
FLOPs ran at the speed of the model's fastest matmul.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F

from granite_nar import GraniteSpeechNarConfig
from granite_nar.lengths import (
    SAMPLES_PER_ENCODER_FRAME,
    SAMPLING_RATE,
    num_audio_tokens,
    num_bpe_windows,
    num_slots,
)

__all__ = [
    "FLOP_STAGES",
    "model_flops",
    "encoder_flops",
    "bpe_head_flops",
    "projector_flops",
    "editor_flops",
    "gemm_shapes",
    "measure_gemm_peak",
    "mfu",
]

FLOP_STAGES = ("encoder", "bpe_head", "projector", "editor")
_FRAMES_PER_SECOND = SAMPLING_RATE // SAMPLES_PER_ENCODER_FRAME  # 50 encoder frames of 20 ms


def _ceil_div(a: int, b: int) -> int:
    return -(a // -b)


# -- analytic FLOPs ------------------------------------------------------------------------------------------
def encoder_flops(config: GraniteSpeechNarConfig, frames: int) -> int:
    """Matmul FLOPs of the conformer encoder on one utterance of ``frames`` encoder frames.

    ``input_linear``; per block: two half-step feed-forwards (up and down), the attention projections
    ``to_q`` / ``to_kv`` / ``to_out``, the block attention (QKᵀ, the Shaw relative-position term — the
    query against the ``(C, C, d)`` table — and weights·V, each ``n² · d`` multiply-adds per head for a
    block holding ``n`` of the utterance's frames: keys past the end are masked and queries past it
    discarded, so that work is not counted), the conv module's pointwise up / down projections and its
    depthwise convolution (``conv_kernel_size`` taps per output frame and channel); and once, the
    self-conditioning character head ``out`` and its projection back ``out_mid``
    (docs/reference_behaviour.md §3.1).
    """
    enc = config.encoder_config
    t, d = int(frames), enc.hidden_dim
    ff = d * enc.feedforward_mult
    inner = enc.num_heads * enc.dim_head  # attention width
    conv = d * enc.conv_expansion_factor  # GLU output width
    full_blocks, rest = divmod(t, enc.context_size)
    sum_sq = full_blocks * enc.context_size**2 + rest**2  # Σ over blocks of n_block²

    feed_forwards = 2 * (2 * t * d * ff + 2 * t * ff * d)
    projections = 2 * t * d * inner + 2 * t * d * 2 * inner + 2 * t * inner * d
    block_attention = 3 * 2 * enc.num_heads * enc.dim_head * sum_sq  # QKᵀ, rel-pos, weights·V
    conv_module = 2 * t * d * 2 * conv + 2 * t * conv * enc.conv_kernel_size + 2 * t * conv * d
    per_block = feed_forwards + projections + block_attention + conv_module
    input_linear = 2 * t * enc.input_dim * d
    char_head = 2 * t * d * enc.output_dim + 2 * t * enc.output_dim * d  # out, out_mid
    return input_linear + enc.num_layers * per_block + char_head


def bpe_head_flops(config: GraniteSpeechNarConfig, frames: int) -> int:
    """The BPE CTC head ``out_bpe`` on the ``ceil(T / pooling_window)`` pooled windows of one utterance."""
    enc = config.encoder_config
    windows = int(num_bpe_windows(int(frames), enc.pooling_window))
    return 2 * windows * enc.hidden_dim * enc.vocabulary_size


def projector_flops(config: GraniteSpeechNarConfig, frames: int) -> int:
    """The windowed Q-Former on one utterance, counting only the work that reaches its audio embeddings.

    An utterance keeps ``T // downsample_rate`` audio tokens (one learned query each), which live in
    ``ceil(tokens / num_queries)`` windows. Counted: ``proj`` on the utterance's frames inside those
    windows; per Q-Former layer, ``k_proj`` / ``v_proj`` on every frame of those windows (a window's
    zero-filled tail is attended to, as in the reference, so it is part of the computation;
    docs/reference_behaviour.md §3.2), ``q_proj`` / ``o_proj``, the attention (QKᵀ and weights·V over
    ``window_size`` keys) and the MLP on the kept queries; and the output ``linear`` on the kept queries.
    """
    proj = config.projector_config
    t, e, d, f = int(frames), proj.encoder_hidden_size, proj.hidden_size, proj.intermediate_size
    tokens = int(num_audio_tokens(t, proj.downsample_rate))
    windows = _ceil_div(tokens, proj.num_queries)
    kv_rows = windows * proj.window_size
    input_proj = 2 * min(t, kv_rows) * e * d
    per_layer = (
        2 * tokens * d * d  # q_proj
        + 2 * 2 * kv_rows * d * d  # k_proj, v_proj
        + 2 * 2 * tokens * proj.window_size * d  # QKᵀ and weights·V, all heads together
        + 2 * tokens * d * d  # o_proj
        + 2 * 2 * tokens * d * f  # fc1, fc2
    )
    return input_proj + proj.num_hidden_layers * per_layer + 2 * tokens * d * d  # + output linear


def editor_flops(config: GraniteSpeechNarConfig, frames: int, draft_tokens: int) -> int:
    """One editing pass over one utterance: every editor layer on its ``A + S`` rows, then the tied
    ``lm_head`` on the ``S`` slot rows only.

    ``A = T // downsample_rate`` audio embeddings and ``S = max(2n + 1, min_edit_sequence_length)``
    insertion slots for a draft of ``n`` tokens (docs/reference_behaviour.md §3.3, §4). Per layer:
    ``q_proj`` / ``k_proj`` / ``v_proj`` / ``o_proj`` (grouped-query widths), bidirectional attention over
    the utterance's own rows (QKᵀ and weights·V, every query head) and the SwiGLU MLP (gate, up, down).
    """
    text = config.text_config
    audio = int(num_audio_tokens(int(frames), config.projector_config.downsample_rate))
    slots = int(num_slots(int(draft_tokens), config.min_edit_sequence_length))
    rows, d = audio + slots, text.hidden_size
    head_dim = getattr(text, "head_dim", None) or d // text.num_attention_heads
    q_width = text.num_attention_heads * head_dim
    kv_width = text.num_key_value_heads * head_dim
    per_layer = (
        2 * rows * d * q_width  # q_proj
        + 2 * 2 * rows * d * kv_width  # k_proj, v_proj
        + 2 * 2 * text.num_attention_heads * rows * rows * head_dim  # QKᵀ and weights·V
        + 2 * rows * q_width * d  # o_proj
        + 3 * 2 * rows * d * text.intermediate_size  # gate_proj, up_proj, down_proj
    )
    lm_head = 2 * slots * d * text.vocab_size
    return text.num_hidden_layers * per_layer + lm_head


def model_flops(
    config: GraniteSpeechNarConfig,
    encoder_frames: list[int],
    draft_tokens: list[int],
    editing_passes: int = 1,
) -> dict[str, int]:
    """Analytic FLOPs of one NAR ``generate`` call on a batch, per stage (2 FLOPs per multiply-add).

    Args:
        config: the model's configuration (sizes are read from it, not from module types).
        encoder_frames: valid encoder frames (20 ms) per utterance.
        draft_tokens: draft length per utterance (tokens, no blanks) that every editing pass edits.
        editing_passes: editing passes (``num_editing_steps``); the audio side runs once.

    Returns ``{"encoder", "bpe_head", "projector", "editor", "total"}``, each summed over the utterances
    on their own lengths: padding of a batch (to the longest utterance, to whole attention blocks or
    Q-Former windows) is not counted. Only matrix products and convolutions are counted; elementwise work
    — norms, activations, softmax, the GLU, RoPE, the posterior-weighted pooling, the query seeding, biases,
    embedding look-ups, argmax and CTC collapse — is ignored, as in ``torch.utils.flop_counter``.
    """
    if len(encoder_frames) != len(draft_tokens):
        raise ValueError(
            f"need one draft length per utterance, got {len(encoder_frames)} utterances and "
            f"{len(draft_tokens)} draft lengths."
        )
    if editing_passes < 0:
        raise ValueError(f"editing_passes must be >= 0, got {editing_passes}.")
    if any(int(t) < 1 for t in encoder_frames) or any(int(n) < 0 for n in draft_tokens):
        raise ValueError("every utterance needs at least one frame and a draft length >= 0.")
    out = {
        "encoder": sum(encoder_flops(config, t) for t in encoder_frames),
        "bpe_head": sum(bpe_head_flops(config, t) for t in encoder_frames),
        "projector": sum(projector_flops(config, t) for t in encoder_frames),
        "editor": editing_passes
        * sum(editor_flops(config, t, n) for t, n in zip(encoder_frames, draft_tokens, strict=True)),
    }
    out["total"] = sum(out.values())
    return out


# -- matmul peak on the model's shapes -----------------------------------------------------------------------
def gemm_shapes(
    config: GraniteSpeechNarConfig, encoder_frames: Sequence[int], draft_tokens: Sequence[int]
) -> list[tuple[str, int, int, int]]:
    """The model's dominant matmuls for a batch, as ``(name, M, K, N)``: ``(M, K) @ (K, N)``.

    ``M`` is the number of rows the model really feeds them: the padded batch ``B · T_max`` for the encoder
    and the projector input, the pooled windows for the BPE head, the packed ``Σ (A + S)`` rows for the
    editor and the ``Σ S`` slot rows for the output head.
    """
    enc, proj, text = config.encoder_config, config.projector_config, config.text_config
    frames = [int(t) for t in encoder_frames]
    padded = len(frames) * max(frames)
    windows = sum(int(num_bpe_windows(t, enc.pooling_window)) for t in frames)
    audio = [int(num_audio_tokens(t, proj.downsample_rate)) for t in frames]
    slots = [int(num_slots(int(n), config.min_edit_sequence_length)) for n in draft_tokens]
    rows = sum(audio) + sum(slots)
    d, ff, inner = enc.hidden_dim, enc.hidden_dim * enc.feedforward_mult, enc.num_heads * enc.dim_head
    conv = d * enc.conv_expansion_factor
    td = text.hidden_size
    head_dim = getattr(text, "head_dim", None) or td // text.num_attention_heads
    return [
        ("encoder.ff_up", padded, d, ff),
        ("encoder.ff_down", padded, ff, d),
        ("encoder.attn_q", padded, d, inner),
        ("encoder.attn_kv", padded, d, 2 * inner),
        ("encoder.attn_out", padded, inner, d),
        ("encoder.conv_up", padded, d, 2 * conv),
        ("encoder.conv_down", padded, conv, d),
        ("bpe_head", windows, d, enc.vocabulary_size),
        ("projector.proj", padded, proj.encoder_hidden_size, proj.hidden_size),
        ("editor.q_proj", rows, td, text.num_attention_heads * head_dim),
        ("editor.kv_proj", rows, td, text.num_key_value_heads * head_dim),
        ("editor.o_proj", rows, text.num_attention_heads * head_dim, td),
        ("editor.mlp_up", rows, td, text.intermediate_size),
        ("editor.mlp_down", rows, text.intermediate_size, td),
        ("lm_head", sum(slots), td, text.vocab_size),
    ]


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _time_linear(x: torch.Tensor, weight: torch.Tensor, repeats: int, warmup: int, min_sample_s: float):
    """Median seconds of one ``F.linear(x, weight)``; a sample loops over enough calls to last
    ``min_sample_s``, so that small shapes are not measured against the clock's resolution."""
    device = x.device
    for _ in range(max(1, warmup)):
        F.linear(x, weight)
    _synchronize(device)
    start = time.perf_counter()
    F.linear(x, weight)
    _synchronize(device)
    calls = max(1, math.ceil(min_sample_s / max(time.perf_counter() - start, 1e-9)))
    times = []
    for _ in range(repeats):
        _synchronize(device)
        start = time.perf_counter()
        for _ in range(calls):
            F.linear(x, weight)
        _synchronize(device)
        times.append((time.perf_counter() - start) / calls)
    return statistics.median(times)


def measure_gemm_peak(
    config: GraniteSpeechNarConfig,
    dtype: torch.dtype | str = torch.float32,
    device: str | torch.device = "cpu",
    threads: int | None = None,
    encoder_frames: Sequence[int] = (15 * _FRAMES_PER_SECOND,),
    draft_tokens: Sequence[int] = (45,),
    repeats: int = 3,
    warmup: int = 1,
    min_sample_s: float = 0.002,
    seed: int = 0,
) -> dict:
    """Throughput of ``F.linear`` on the model's own matmul shapes (:func:`gemm_shapes`); the best is the peak.

    Args:
        dtype, device, threads: as the model runs (``threads`` sets ``torch.set_num_threads`` for the
            measurement only; ``None`` keeps the current setting).
        encoder_frames, draft_tokens: the batch the shapes are taken from (default: one 15 s utterance
            with a draft of 45 tokens).
        repeats, warmup: median of ``repeats`` samples after ``warmup`` untimed calls, per shape.

    Returns ``{"dtype", "device", "threads", "shapes": [{"name", "m", "k", "n", "flops", "median_s",
    "tflops"}, ...], "peak_tflops", "peak_shape"}``.
    """
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}.")
    if isinstance(dtype, str):
        dtype = getattr(torch, dtype)
    device = torch.device(device)
    previous_threads = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    generator = torch.Generator(device=device).manual_seed(seed)
    shapes = []
    try:
        with torch.inference_mode():
            for name, m, k, n in gemm_shapes(config, encoder_frames, draft_tokens):
                m = max(1, m)
                x = torch.randn(m, k, generator=generator, device=device, dtype=dtype)
                weight = torch.randn(n, k, generator=generator, device=device, dtype=dtype)
                seconds = _time_linear(x, weight, repeats, warmup, min_sample_s)
                flops = 2 * m * k * n
                shapes.append(
                    {
                        "name": name,
                        "m": m,
                        "k": k,
                        "n": n,
                        "flops": flops,
                        "median_s": seconds,
                        "tflops": flops / seconds / 1e12,
                    }
                )
                del x, weight
        threads_used = torch.get_num_threads()
    finally:
        torch.set_num_threads(previous_threads)
    best = max(shapes, key=lambda s: s["tflops"])
    return {
        "dtype": str(dtype).removeprefix("torch."),
        "device": str(device),
        "threads": threads_used,
        "shapes": shapes,
        "peak_tflops": best["tflops"],
        "peak_shape": best["name"],
    }


# -- utilisation ---------------------------------------------------------------------------------------------
def mfu(
    stage_flops: Mapping[str, float], stage_seconds: Mapping[str, float], peak_flops_per_s: float
) -> dict[str, float | None]:
    """Per-stage and total model FLOP utilisation.

    ``stage_flops`` and ``stage_seconds`` share their stage names (a ``"total"`` entry in
    ``stage_flops`` is ignored). Each stage's MFU is ``flops / seconds / peak``; ``"total"`` is the sum
    of the FLOPs over the sum of the seconds of all stages in ``stage_seconds``, divided by the peak (the
    time-weighted mean of the stages). A stage with no measured time gets ``None``.
    """
    if peak_flops_per_s <= 0:
        raise ValueError(f"peak_flops_per_s must be > 0, got {peak_flops_per_s}.")
    stages = [s for s in stage_flops if s != "total"]
    missing = [s for s in stages if s not in stage_seconds]
    if missing:
        raise ValueError(f"no time for stage(s) {missing}.")

    def ratio(flops: float, seconds: float) -> float | None:
        return flops / seconds / peak_flops_per_s if seconds > 0 else None

    out = {s: ratio(stage_flops[s], stage_seconds[s]) for s in stages}
    out["total"] = ratio(sum(stage_flops[s] for s in stages), sum(stage_seconds.values()))
    return out
