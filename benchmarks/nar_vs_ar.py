"""Side-by-side speed of the NAR editor and autoregressive decoding, built from the same parts.

    python benchmarks/nar_vs_ar.py --config full --dtype bfloat16 --repeats 3 --warmup 1 --json out.json
    python benchmarks/nar_vs_ar.py --gemm                    # this machine's fp32 / bf16 matmul ceiling
    python benchmarks/nar_vs_ar.py --config full --dtype bfloat16 --mfu   # + model FLOP utilisation

Both decoders get identical synthetic inputs (seeded random log-mel features) and run from features
to token ids:

* NAR: encoder → BPE CTC head → projector → one bidirectional editing pass ("nar_1pass"), and the
  same run continued by a second pass ("nar_2pass");
* AR: encoder → projector → greedy decoding with a KV cache (:class:`GraniteSpeechArForConditionalGeneration`
  built with :meth:`~GraniteSpeechArForConditionalGeneration.from_nar`, weights shared, so the sizes
  are identical).

Random weights would make transcript lengths arbitrary (an AR model that emits EOS at once, a
CTC draft of any length), so both decoders are forced to the same realistic length,
``tokens_per_second`` BPE tokens per second of audio (3 by default, roughly English speech):

* AR: ``min_new_tokens = max_new_tokens = n_max`` — a batch decodes until its longest utterance is
  done (finished rows keep being computed), so this is exactly the cost of real transcripts;
* NAR: the encoder's own draft is computed (and timed) but replaced by a random draft of ``n_b``
  tokens per utterance, fed through the precomputed-draft path
  ``generate(audio_embeds=..., audio_lengths=..., input_ids=...)``; the second pass gets a draft of
  the same length again (a real second pass re-slots the first pass's output, of similar length).

Decoders are interleaved repeat by repeat (NAR, AR, NAR, AR …) so that load from other processes
hits both alike, and the NAR/AR ratio is always taken from the same run.

Stage shares come from forward hooks on the encoder, the BPE head and the projector (with
``torch.cuda.synchronize()`` on CUDA so that the clock reads finished work); "lm" is the rest of
the wall time: every language-model pass, the output head, CTC collapse and slot building, and
``generate``'s own loop. The stages therefore add up to the measured latency exactly.

With ``--mfu`` the NAR rows also get their model FLOP utilisation per stage and in total (see
:mod:`mfu`): analytic FLOPs on each utterance's own length and forced draft length (the "lm" stage is
the editor: every layer on audio and slot rows, and the output head on the slot rows), over the stage's
mean time, over the best ``F.linear`` throughput measured on the model's own matmul shapes in the same
dtype, device and threads, before any model runs.

Peak memory is the peak increase over the memory in use before the call: on CUDA from
``torch.cuda.max_memory_allocated``; on CPU the peak resident set size (``VmHWM``, reset through
``/proc/self/clear_refs``), which includes what the allocator keeps cached.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from granite_nar import (
    GraniteSpeechArForConditionalGeneration,
    GraniteSpeechNarConfig,
    GraniteSpeechNarForCTC,
)
from granite_nar.lengths import SAMPLES_PER_ENCODER_FRAME, SAMPLING_RATE
from granite_nar.testing import tiny_config

sys.path.insert(0, str(Path(__file__).resolve().parent))
from mfu import measure_gemm_peak, mfu, model_flops  # noqa: E402

__all__ = [
    "Setting",
    "STANDARD_SETTINGS",
    "MIXED_DURATIONS",
    "tiny_benchmark_config",
    "build_models",
    "run_benchmark",
    "gemm_benchmark",
    "format_table",
    "main",
]

ENCODER_FRAMES_PER_SECOND = SAMPLING_RATE // SAMPLES_PER_ENCODER_FRAME  # 50 frames of 20 ms
MIXED_DURATIONS = (2.0, 3.5, 6.0, 9.0, 12.5, 17.0, 23.0, 30.0)  # seconds; fixed batch of 8, Σ = 103 s
STAGES = ("encoder", "bpe_head", "projector", "lm")
DECODERS = ("nar_1pass", "nar_2pass", "ar")
MFU_HEADER = " MFU encoder | MFU BPE head | MFU projector | MFU LM | MFU total |"


@dataclass(frozen=True)
class Setting:
    """One batch of synthetic utterances, given by their durations in seconds."""

    name: str
    durations: tuple[float, ...]

    @property
    def batch_size(self) -> int:
        return len(self.durations)

    @property
    def audio_seconds(self) -> float:
        return float(sum(self.durations))

    @property
    def frames(self) -> list[int]:
        """Encoder frames per utterance (20 ms each)."""
        return [max(1, round(d * ENCODER_FRAMES_PER_SECOND)) for d in self.durations]

    def tokens(self, tokens_per_second: float) -> list[int]:
        """Forced transcript length per utterance."""
        return [max(1, round(d * tokens_per_second)) for d in self.durations]


STANDARD_SETTINGS = (
    Setting("b1_5s", (5.0,)),
    Setting("b1_15s", (15.0,)),
    Setting("b1_30s", (30.0,)),
    Setting("b8_mixed", MIXED_DURATIONS),
)


def settings_from_args(batch_size: int | None, durations: Sequence[float] | None) -> list[Setting]:
    """The standard settings, or those selected by ``--batch-size`` / ``--durations``.

    * neither: batch 1 at 5, 15, 30 s and the mixed batch of 8;
    * ``--batch-size 1``: batch 1 at each duration (default 5, 15, 30 s);
    * ``--batch-size B`` with B durations: one batch of those durations;
    * ``--batch-size B`` with other durations: one batch of B equal utterances per duration;
      without durations and B = 8, the fixed mixed list.
    """
    if batch_size is None and not durations:
        return list(STANDARD_SETTINGS)
    batch_size = batch_size or 1
    if batch_size < 1:
        raise ValueError(f"--batch-size must be >= 1, got {batch_size}.")
    if not durations:
        if batch_size == 1:
            durations = (5.0, 15.0, 30.0)
        elif batch_size == len(MIXED_DURATIONS):
            return [Setting("b8_mixed", MIXED_DURATIONS)]
        else:
            raise ValueError(f"--batch-size {batch_size} needs --durations.")
    if any(d <= 0.1 for d in durations):
        raise ValueError(f"durations must be longer than 0.1 s (one audio token), got {list(durations)}.")
    if batch_size > 1 and len(durations) == batch_size:
        return [Setting(f"b{batch_size}_custom", tuple(float(d) for d in durations))]
    return [Setting(f"b{batch_size}_{d:g}s", (float(d),) * batch_size) for d in durations]


# -- models ------------------------------------------------------------------------------------------------
def tiny_benchmark_config() -> GraniteSpeechNarConfig:
    """A few-layer model with every code path of the full one (for smoke tests and quick checks)."""
    return tiny_config(
        512,
        encoder=dict(
            hidden_dim=64,
            num_heads=4,
            feedforward_mult=4,
            output_dim=32,
            context_size=50,
            max_pos_emb=64,
            conv_kernel_size=15,
            dropout=0.1,
            pred_dropout=0.25,
        ),
        projector=dict(hidden_size=64, intermediate_size=128),
        text=dict(hidden_size=64, intermediate_size=128),
    )


def build_models(
    config: str | GraniteSpeechNarConfig = "tiny",
    dtype: torch.dtype = torch.float32,
    device: str | torch.device = "cpu",
    attn_implementation: str = "sdpa",
    seed: int = 0,
) -> tuple[GraniteSpeechNarForCTC, GraniteSpeechArForConditionalGeneration]:
    """A randomly filled NAR model and the AR model sharing its weights (identical sizes, one copy).

    The model is built on the ``meta`` device and its tensors are filled from a small seeded bank of
    N(0, 0.02) values, repeated: timing does not depend on the values, and filling 2.3 B parameters this
    way takes seconds instead of the minutes of drawing each one (BatchNorm statistics stay valid: mean 0,
    variance 1).
    """
    if isinstance(config, str):
        if config not in ("tiny", "full"):
            raise ValueError(f"config must be 'tiny' or 'full', got {config!r}.")
        config = tiny_benchmark_config() if config == "tiny" else GraniteSpeechNarConfig()
    device = torch.device(device)
    with torch.device("meta"):
        nar = GraniteSpeechNarForCTC._from_config(
            config, attn_implementation=attn_implementation, dtype=dtype
        )
    nar = nar.to_empty(device=device)
    nar.tie_weights()  # to_empty makes new parameters, which unties the output head
    bank = torch.randn(1 << 20, generator=torch.Generator().manual_seed(seed)).mul_(0.02).to(device, dtype)
    with torch.no_grad():
        for name, tensor in [*nar.named_parameters(), *nar.named_buffers()]:
            if not tensor.is_floating_point():
                tensor.zero_()
            elif name.endswith("running_var"):
                tensor.fill_(1.0)
            elif name.endswith("running_mean"):
                tensor.zero_()
            else:
                flat = tensor.view(-1)
                for start in range(0, flat.numel(), bank.numel()):
                    chunk = flat[start : start + bank.numel()]
                    chunk.copy_(bank[: chunk.numel()])
    nar.materialize_buffers(device)  # relative distances and RoPE frequencies (not random)
    nar = nar.eval()
    ar = GraniteSpeechArForConditionalGeneration.from_nar(nar, share_weights=True).eval()
    return nar, ar


def synthetic_inputs(
    setting: Setting, config: GraniteSpeechNarConfig, tokens_per_second: float, device, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]:
    """Seeded features ``(B, T_max, 160)``, their mask, and random drafts of the forced lengths (no blanks)."""
    g = torch.Generator().manual_seed(seed)
    frames = setting.frames
    feats = torch.randn(setting.batch_size, max(frames), config.encoder_config.input_dim, generator=g)
    mask = torch.arange(max(frames))[None, :] < torch.tensor(frames)[:, None]
    vocab, blank = config.text_config.vocab_size, config.blank_token_id
    drafts = []
    for n in setting.tokens(tokens_per_second):
        ids = torch.randint(0, vocab - 1, (n,), generator=g)
        drafts.append((ids + (ids >= blank).long()).to(device))  # skip the blank id
    return feats.to(device), mask.to(device), drafts


# -- measurement helpers -----------------------------------------------------------------------------------
def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class StageTimer:
    """Wall time spent inside given modules, accumulated over calls, via forward pre/post hooks."""

    def __init__(self, modules: dict[str, torch.nn.Module], device: torch.device):
        self.device = device
        self.times = dict.fromkeys(modules, 0.0)
        self._start: dict[str, float] = {}
        self._handles = []
        for name, module in modules.items():
            self._handles.append(module.register_forward_pre_hook(self._enter(name)))
            self._handles.append(module.register_forward_hook(self._leave(name)))

    def _enter(self, name: str) -> Callable:
        def hook(module, args):
            _synchronize(self.device)
            self._start[name] = time.perf_counter()

        return hook

    def _leave(self, name: str) -> Callable:
        def hook(module, args, output):
            _synchronize(self.device)
            self.times[name] += time.perf_counter() - self._start.pop(name)

        return hook

    def reset(self) -> None:
        self.times = dict.fromkeys(self.times, 0.0)

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()


def _status_kib(key: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    raise KeyError(key)


class PeakMemory:
    """Peak memory increase (MiB) during a ``with`` block; see the module docstring for what is counted."""

    def __init__(self, device: torch.device):
        self.device = device
        self.peak_mib = float("nan")

    def __enter__(self) -> PeakMemory:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self._base = torch.cuda.memory_allocated(self.device)
            return self
        self._poller = None
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")  # reset VmHWM to the current RSS
            self._base = _status_kib("VmRSS")
        except OSError:  # no /proc (or not writable): sample the RSS from a thread instead
            self._base = self._rss_kib()
            self._peak = self._base
            self._stop = threading.Event()
            self._poller = threading.Thread(target=self._poll, daemon=True)
            self._poller.start()
        return self

    def _rss_kib(self) -> int:
        try:
            return _status_kib("VmRSS")
        except (OSError, KeyError):
            import resource

            return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

    def _poll(self) -> None:
        while not self._stop.wait(0.005):
            self._peak = max(self._peak, self._rss_kib())

    def __exit__(self, *exc) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self.peak_mib = (torch.cuda.max_memory_allocated(self.device) - self._base) / 2**20
        elif self._poller is None:
            self.peak_mib = (_status_kib("VmHWM") - self._base) / 1024
        else:
            self._stop.set()
            self._poller.join()
            self.peak_mib = (max(self._peak, self._rss_kib()) - self._base) / 1024


# -- one timed call per decoder -----------------------------------------------------------------------------
def _run_nar(nar, feats, mask, drafts, timer: StageTimer, device) -> dict[str, dict]:
    """Encoder + BPE head + projector, then two editing passes; returns 1-pass and 2-pass measurements."""
    timer.reset()
    _synchronize(device)
    start = time.perf_counter()
    audio = nar.model.encode_audio(feats, mask)
    passes = []
    for _ in range(2):
        out = nar.generate(
            audio_embeds=audio.audio_embeds,
            audio_lengths=audio.audio_lengths,
            input_ids=drafts,
            num_editing_steps=1,
        )
        _synchronize(device)
        passes.append(time.perf_counter() - start)
    stages = dict(timer.times)
    if len(out) != len(drafts):
        raise RuntimeError("NAR generate returned a wrong number of transcripts.")
    result = {}
    for name, total in zip(("nar_1pass", "nar_2pass"), passes, strict=True):
        lm = total - stages["encoder"] - stages["bpe_head"] - stages["projector"]
        result[name] = {"total": total, **stages, "lm": lm}
    return result


def _run_ar(ar, feats, mask, num_tokens: int, timer: StageTimer, device) -> dict[str, dict]:
    timer.reset()
    _synchronize(device)
    start = time.perf_counter()
    out = ar.generate(
        input_features=feats,
        input_features_mask=mask,
        min_new_tokens=num_tokens,
        max_new_tokens=num_tokens,
        do_sample=False,
        num_beams=1,
    )
    _synchronize(device)
    total = time.perf_counter() - start
    if out.shape != (feats.shape[0], num_tokens):
        raise RuntimeError(
            f"AR generate returned {tuple(out.shape)}, expected ({feats.shape[0]}, {num_tokens})."
        )
    stages = dict(timer.times)
    lm = total - stages["encoder"] - stages["projector"]
    return {"ar": {"total": total, **stages, "bpe_head": 0.0, "lm": lm}}


def _summarise(setting: Setting, decoder: str, runs: list[dict], peak_mib: float, tokens: list[int]) -> dict:
    totals = [r["total"] for r in runs]
    median = statistics.median(totals)
    mean_total = sum(totals) / len(totals)
    stage_seconds = {s: sum(r[s] for r in runs) / len(runs) for s in STAGES}
    return {
        "setting": setting.name,
        "decoder": decoder,
        "batch_size": setting.batch_size,
        "durations_s": list(setting.durations),
        "audio_seconds": setting.audio_seconds,
        "tokens": tokens,
        "times_s": totals,
        "median_s": median,
        "rtfx": setting.audio_seconds / median,
        "stage_seconds": stage_seconds,  # mean over repeats
        "shares": {s: stage_seconds[s] / mean_total for s in STAGES},
        "peak_memory_mib": peak_mib,
    }


def run_benchmark(
    config: str | GraniteSpeechNarConfig = "tiny",
    dtype: torch.dtype | str = torch.float32,
    device: str | torch.device = "cpu",
    settings: Sequence[Setting] = STANDARD_SETTINGS,
    repeats: int = 3,
    warmup: int = 1,
    attn_implementation: str = "sdpa",
    tokens_per_second: float = 3.0,
    decoders: Sequence[str] = ("nar", "ar"),
    seed: int = 0,
    log: Callable[[str], None] | None = None,
    measure_mfu: bool = False,
) -> dict:
    """Run the side-by-side benchmark; returns ``{"meta": ..., "results": [...]}`` (one result per setting and
    decoder, each with ``median_s``, ``rtfx``, ``shares``, ``peak_memory_mib`` and, for NAR rows,
    ``speedup_vs_ar`` = AR median / NAR median from the same run).

    With ``measure_mfu`` the matmul peak on the model's shapes is measured first (``meta["gemm_peak"]``,
    :func:`mfu.measure_gemm_peak`, on the run's largest batch) and every NAR row gets ``flops`` (analytic,
    per stage and ``total``; :func:`mfu.model_flops`) and ``mfu`` (per stage and ``total``, from the mean
    stage seconds; :func:`mfu.mfu`), keyed by the stage names of ``stage_seconds``."""
    if repeats < 1 or warmup < 0:
        raise ValueError(f"need repeats >= 1 and warmup >= 0, got {repeats} and {warmup}.")
    if isinstance(dtype, str):
        dtype = getattr(torch, dtype)
    decoders = tuple(decoders)
    if not decoders or set(decoders) - {"nar", "ar"}:
        raise ValueError(f"decoders must be a non-empty subset of ('nar', 'ar'), got {decoders}.")
    device = torch.device(device)
    log = log or (lambda message: None)
    load_start = os.getloadavg() if hasattr(os, "getloadavg") else None

    build_start = time.perf_counter()
    nar, ar = build_models(config, dtype, device, attn_implementation, seed)
    log(
        f"built {config if isinstance(config, str) else 'custom'} models in {time.perf_counter() - build_start:.1f} s"
    )
    cfg = nar.config
    nar_timer = StageTimer(
        {"encoder": nar.model.encoder, "bpe_head": nar.model.out_bpe, "projector": nar.model.projector},
        device,
    )
    ar_timer = StageTimer({"encoder": ar.encoder, "projector": ar.projector}, device)

    gemm_peak = None
    if measure_mfu and "nar" in decoders:
        largest = max(settings, key=lambda s: s.batch_size * max(s.frames))
        gemm_peak = measure_gemm_peak(
            cfg, dtype, device, encoder_frames=largest.frames, draft_tokens=largest.tokens(tokens_per_second)
        )
        log(
            f"GEMM peak on the model's shapes ({largest.name}): {gemm_peak['peak_tflops']:.3f} TFLOP/s "
            f"({gemm_peak['peak_shape']})"
        )

    results = []
    try:
        with torch.inference_mode():
            for setting in settings:
                feats, mask, drafts = synthetic_inputs(setting, cfg, tokens_per_second, device, seed)
                tokens = setting.tokens(tokens_per_second)
                runs = {name: [] for name in DECODERS}
                peaks = dict.fromkeys(DECODERS, 0.0)
                for step in range(warmup + repeats):
                    measured = step >= warmup
                    step_runs = {}
                    for decoder in decoders:  # interleaved: NAR then AR within every repeat
                        with PeakMemory(device) as memory:
                            if decoder == "nar":
                                out = _run_nar(nar, feats, mask, drafts, nar_timer, device)
                            else:
                                out = _run_ar(ar, feats, mask, max(tokens), ar_timer, device)
                        step_runs.update(out)
                        if measured:
                            for name, value in out.items():
                                runs[name].append(value)
                                peaks[name] = max(peaks[name], memory.peak_mib)
                    log(
                        f"{setting.name} {'run' if measured else 'warm-up'} {step + 1}/{warmup + repeats}: "
                        + ", ".join(f"{k} {v['total']:.3f} s" for k, v in step_runs.items())
                    )
                rows = {
                    name: _summarise(setting, name, r, peaks[name], tokens) for name, r in runs.items() if r
                }
                if gemm_peak is not None:
                    for passes, name in enumerate(("nar_1pass", "nar_2pass"), start=1):
                        if name in rows:
                            _add_mfu(rows[name], cfg, setting.frames, tokens, passes, gemm_peak)
                if "ar" in rows:
                    for name in ("nar_1pass", "nar_2pass"):
                        if name in rows:
                            rows[name]["speedup_vs_ar"] = rows["ar"]["median_s"] / rows[name]["median_s"]
                results.extend(rows.values())
    finally:
        nar_timer.remove()
        ar_timer.remove()

    meta = {
        "config": config if isinstance(config, str) else "custom",
        "dtype": str(dtype).removeprefix("torch."),
        "device": str(device),
        "device_name": _device_name(device),
        "attn_implementation": attn_implementation,
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "repeats": repeats,
        "warmup": warmup,
        "tokens_per_second": tokens_per_second,
        "seed": seed,
        "parameters": sum(p.numel() for p in nar.parameters()),
        "weights_mib": sum(p.numel() * p.element_size() for p in nar.parameters()) / 2**20,
        "load_average_start": load_start,
        "load_average_end": os.getloadavg() if hasattr(os, "getloadavg") else None,
    }
    if gemm_peak is not None:
        meta["gemm_peak"] = gemm_peak
    return {"meta": meta, "results": results}


def _add_mfu(row: dict, config, frames: list[int], tokens: list[int], passes: int, gemm_peak: dict) -> None:
    """``flops`` and ``mfu`` of a NAR row, under the row's stage names (the editor's FLOPs are "lm")."""
    flops = model_flops(config, frames, tokens, editing_passes=passes)
    stage_flops = {stage: flops["editor" if stage == "lm" else stage] for stage in STAGES}
    row["flops"] = {**stage_flops, "total": flops["total"]}
    row["mfu"] = mfu(stage_flops, row["stage_seconds"], gemm_peak["peak_tflops"] * 1e12)


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    name = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    name = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"{name} ({os.cpu_count()} logical CPUs)"


# -- matmul ceiling -----------------------------------------------------------------------------------------
def gemm_benchmark(
    size: int = 2048,
    device: str | torch.device = "cpu",
    dtypes: Sequence[torch.dtype] = (torch.float32, torch.bfloat16),
    repeats: int = 10,
    warmup: int = 2,
) -> dict:
    """Median throughput of one ``size × size × size`` matmul per dtype, in TFLOP/s (``2 n³`` FLOPs)."""
    device = torch.device(device)
    out = {"size": size, "device": str(device), "device_name": _device_name(device)}
    out["threads"] = torch.get_num_threads()
    g = torch.Generator().manual_seed(0)
    for dtype in dtypes:
        a = torch.randn(size, size, generator=g).to(device=device, dtype=dtype)
        b = torch.randn(size, size, generator=g).to(device=device, dtype=dtype)
        times = []
        for step in range(warmup + repeats):
            _synchronize(device)
            start = time.perf_counter()
            torch.mm(a, b)
            _synchronize(device)
            if step >= warmup:
                times.append(time.perf_counter() - start)
        median = statistics.median(times)
        out[str(dtype).removeprefix("torch.")] = {"median_s": median, "tflops": 2 * size**3 / median / 1e12}
    return out


# -- output ---------------------------------------------------------------------------------------------------
def format_table(report: dict) -> str:
    """A markdown table of :func:`run_benchmark`'s results."""
    meta = report["meta"]
    with_mfu = "gemm_peak" in meta
    lines = [
        f"config={meta['config']} dtype={meta['dtype']} device={meta['device']} ({meta['device_name']}) "
        f"attn={meta['attn_implementation']} threads={meta['threads']} repeats={meta['repeats']} "
        f"warmup={meta['warmup']} tokens/s={meta['tokens_per_second']:g}",
        "",
        "| setting | decoder | audio s | tokens | median s | RTFx | encoder | BPE head | projector | LM "
        "| peak MiB | speed-up vs AR |" + (MFU_HEADER if with_mfu else ""),
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|" + ("---:|" * 5 if with_mfu else ""),
    ]
    if with_mfu:
        peak = meta["gemm_peak"]
        lines[1:1] = [
            f"MFU: analytic model FLOPs / stage time / GEMM peak {peak['peak_tflops']:.3f} TFLOP/s "
            f"({peak['peak_shape']}, {peak['dtype']}, {peak['threads']} threads)"
        ]
    for r in report["results"]:
        shares = " | ".join(f"{100 * r['shares'][s]:.0f} %" for s in STAGES)
        tokens = r["tokens"][0] if len(set(r["tokens"])) == 1 else f"{min(r['tokens'])}-{max(r['tokens'])}"
        speedup = f"{r['speedup_vs_ar']:.2f}x" if "speedup_vs_ar" in r else ""
        line = (
            f"| {r['setting']} | {r['decoder']} | {r['audio_seconds']:g} | {tokens} | {r['median_s']:.3f} "
            f"| {r['rtfx']:.2f} | {shares} | {r['peak_memory_mib']:.0f} | {speedup} |"
        )
        if with_mfu:  # AR rows have no MFU
            values = [r["mfu"][s] for s in (*STAGES, "total")] if "mfu" in r else [None] * 5
            line += "".join(f" {_percent(v)} |" for v in values)
        lines.append(line)
    return "\n".join(lines)


def _percent(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.1f} %"


def format_gemm(result: dict) -> str:
    parts = [f"{k} {v['tflops']:.3f} TFLOP/s" for k, v in result.items() if isinstance(v, dict)]
    return (
        f"GEMM {result['size']}x{result['size']}x{result['size']} on {result['device']} ({result['device_name']}, "
        f"{result['threads']} threads), median: " + ", ".join(parts)
    )


def main(argv: Sequence[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(
        prog="python benchmarks/nar_vs_ar.py", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--config", choices=("tiny", "full"), default="tiny")
    parser.add_argument("--dtype", choices=("float32", "bfloat16", "float16"), default="float32")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--durations", type=float, nargs="+", default=None, help="seconds")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--attn", default="sdpa", help="sdpa | eager | flash_attention_2")
    parser.add_argument("--tokens-per-second", type=float, default=3.0)
    parser.add_argument("--decoders", nargs="+", choices=("nar", "ar"), default=["nar", "ar"])
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", default=None, help="write the machine-readable report here")
    parser.add_argument("--gemm", action="store_true", help="only measure the matmul ceiling")
    parser.add_argument("--gemm-size", type=int, default=2048)
    parser.add_argument(
        "--mfu",
        action="store_true",
        help="measure the matmul peak on the model's shapes first, and report the NAR rows' model FLOP utilisation",
    )
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    log = None if args.quiet else (lambda message: print(message, file=sys.stderr, flush=True))

    if args.gemm:
        report = gemm_benchmark(args.gemm_size, args.device)
        print(format_gemm(report))
    else:
        report = run_benchmark(
            config=args.config,
            dtype=args.dtype,
            device=args.device,
            settings=settings_from_args(args.batch_size, args.durations),
            repeats=args.repeats,
            warmup=args.warmup,
            attn_implementation=args.attn,
            tokens_per_second=args.tokens_per_second,
            decoders=args.decoders,
            seed=args.seed,
            log=log,
            measure_mfu=args.mfu,
        )
        report["meta"]["command"] = "python benchmarks/nar_vs_ar.py " + " ".join(
            sys.argv[1:] if argv is None else argv
        )
        print(format_table(report))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=2)
    return report


if __name__ == "__main__":
    main()
