"""Recordings of any length: the encoder in chunks, the CTC draft cut at pauses, segments edited in batches.

    waveform (any length)
      └─ log-mel of the whole recording, computed a minute at a time ─► (T, 160) features
           └─ encoder over chunks of whole attention blocks, each with context blocks on both sides
              (outputs kept only for the chunk's own frames: the same numbers as one pass over the file)
                ├─ BPE CTC labels of every 80 ms window ─► cut points at the longest pauses
                └─ projector input of the frames not yet cut (at most a few segments' worth)
                     └─ segment [a, c) ─► projector ─► audio tokens + the draft of its windows
                          └─ edit queue: segments of every file, packed ``batch_size`` at a time
                               └─ edited tokens + confidences (+ word times by forced alignment)

The encoder attends only inside its attention blocks, so the only way one block reaches into the next is
the depthwise convolution: ``(kernel - 1) / 2`` frames per layer. A chunk that starts and ends on block
boundaries with ``ceil(layers · (kernel - 1) / 2 / block)`` context blocks on each side therefore gets
the same encoder outputs as the whole recording would (one block for the released model: 16 × 7 = 112 of
200 frames). Cuts fall on 80 ms windows at the longest run of blank windows (a pause), or, when speech
runs on, before a word; a window a run of one token continues is never cut, so each draft token lands in
exactly one segment. Segments are disjoint and cover the recording. See docs/long_form.md.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch

from ..lengths import ENCODER_FRAME_SECONDS, num_bpe_windows
from ..model.ctc import ctc_collapse
from ..model.modeling_audio import project_audio

__all__ = ["LongFormOptions", "SegmentPlan", "encoder_context_blocks", "find_cut", "plan_segments"]


@dataclass
class LongFormOptions:
    """How long recordings are cut and encoded.

    Attributes:
        max_segment_seconds: the longest segment the editor sees. The released editor was trained on
            utterances well under this; its positions reach 4096 (about 4 minutes of speech).
        min_segment_seconds: the shortest segment cut from a longer recording (default: a third of
            ``max_segment_seconds``); a cut is looked for between the two.
        min_pause_seconds: a run of blank windows at least this long counts as a pause. When no pause is
            found within a segment's range, the cut goes before a word instead.
        encoder_chunk_seconds: audio encoded at once (rounded to whole attention blocks); bounds memory.
        encoder_context_blocks: attention blocks of context on each side of a chunk; ``None`` takes the
            fewest that make chunked outputs equal to one pass (see :func:`encoder_context_blocks`).
        reencode_segments: encode every segment again on its own, as a short clip, for the editor (its
            audio tokens and draft); the pass over the whole recording then only places the cuts. Costs a
            second encoder pass; helps a model whose encoder never saw two utterances in one attention
            block (the tiny synthetic-speech model), and makes a segment's transcript exactly that of the
            same audio given as a clip.
    """

    max_segment_seconds: float = 30.0
    min_segment_seconds: float | None = None
    min_pause_seconds: float = 0.24
    encoder_chunk_seconds: float = 60.0
    encoder_context_blocks: int | None = None
    reencode_segments: bool = False

    def __post_init__(self):
        if not self.max_segment_seconds > 0:
            raise ValueError(f"max_segment_seconds must be > 0, got {self.max_segment_seconds}")
        if self.min_segment_seconds is None:
            self.min_segment_seconds = self.max_segment_seconds / 3
        if not 0 < self.min_segment_seconds <= self.max_segment_seconds / 2:
            raise ValueError(
                f"min_segment_seconds must be > 0 and at most half of max_segment_seconds "
                f"({self.max_segment_seconds}), got {self.min_segment_seconds}"
            )
        if self.min_pause_seconds < 0:
            raise ValueError(f"min_pause_seconds must be >= 0, got {self.min_pause_seconds}")
        if not self.encoder_chunk_seconds > 0:
            raise ValueError(f"encoder_chunk_seconds must be > 0, got {self.encoder_chunk_seconds}")
        if self.encoder_context_blocks is not None and self.encoder_context_blocks < 0:
            raise ValueError(f"encoder_context_blocks must be >= 0, got {self.encoder_context_blocks}")


def encoder_context_blocks(encoder_config) -> int:
    """Fewest attention blocks of context per side for which a chunk's outputs equal one pass's."""
    kernel = encoder_config.conv_kernel_size
    reach = encoder_config.num_layers * (kernel // 2)  # frames one output sees on either side
    return math.ceil(reach / encoder_config.context_size)


@dataclass
class SegmentPlan:
    """Where cuts go, in 80 ms windows of one recording."""

    blank: int
    starts_word: np.ndarray  # (V,) bool
    max_windows: int
    min_windows: int
    min_pause_windows: int


def _can_cut(labels: np.ndarray, c: int, blank: int) -> bool:
    """A cut before window ``c`` keeps every draft token whole: ``c`` is blank or starts a new token."""
    return labels[c] == blank or labels[c] != labels[c - 1]


def find_cut(labels: np.ndarray, start: int, lo: int, hi: int, plan: SegmentPlan) -> int:
    """The window before which to cut, in ``[lo, hi]``: the middle of the best run of blank windows.

    Runs are ranked by (is a pause of at least ``min_pause_windows``, else comes right before a word),
    then length, then lateness. Without any blank window in range, the latest window that starts a new
    token; failing even that, ``hi``.
    """
    margin = plan.max_windows
    view_lo, view_hi = max(start, lo - margin), min(len(labels), hi + margin + 1)
    blank_run = labels[view_lo:view_hi] == plan.blank
    edges = np.diff(np.concatenate([[0], blank_run.astype(np.int8), [0]]))
    run_starts, run_ends = np.flatnonzero(edges == 1) + view_lo, np.flatnonzero(edges == -1) + view_lo
    best, best_key = None, None
    for run_start, run_end in zip(run_starts.tolist(), run_ends.tolist(), strict=True):
        if run_end - 1 < lo or run_start > hi:
            continue
        cut = min(max((run_start + run_end) // 2, lo), hi)
        length = run_end - run_start
        before_word = run_end >= len(labels) or bool(plan.starts_word[labels[run_end]])
        rank = 2 if length >= plan.min_pause_windows else int(before_word)
        key = (rank, length, cut)
        if best_key is None or key > best_key:
            best, best_key = cut, key
    if best is not None:
        return best
    for c in range(hi, lo - 1, -1):
        if _can_cut(labels, c, plan.blank):
            return c
    return hi


def plan_segments(labels: np.ndarray, start: int, known: int, done: bool, plan: SegmentPlan) -> list[int]:
    """Cut points after ``start`` that the windows known so far (``known``) settle.

    A cut is settled once the windows a whole ``max_windows`` past the candidate range are known (the
    length of a pause that runs past the range counts in its rank). With ``done`` the recording ends at
    ``known`` and the returned cuts end with ``known`` itself.
    """
    cuts = []
    while True:
        remaining = known - start
        if done and remaining <= plan.max_windows:
            if remaining > 0:
                cuts.append(known)
            return cuts
        if not done and remaining <= 2 * plan.max_windows:
            return cuts
        lo, hi = start + plan.min_windows, start + plan.max_windows
        if done:  # leave the last segment at least min_windows long
            hi = min(hi, known - plan.min_windows)
        cut = find_cut(labels, start, lo, hi, plan)
        cuts.append(cut)
        start = cut


@dataclass
class SegmentAudio:
    """One segment ready for the editor."""

    start_frame: int
    end_frame: int
    audio_embeds: torch.Tensor  # (A, D)
    draft_ids: torch.Tensor  # (n,)
    pooled: torch.Tensor | None  # (W, hidden) for word timestamps


def encode_long(
    model,
    features: torch.Tensor,
    options: LongFormOptions,
    plan: SegmentPlan,
    keep_pooled: bool,
) -> Iterator[SegmentAudio]:
    """Encode ``(T, 160)`` features chunk by chunk and yield the segments in time order as their cuts settle.

    Memory holds the features, the labels of every window (one integer per 80 ms) and the encoder outputs
    of the frames not yet cut: at most about ``2 · max_segment_seconds + encoder_chunk_seconds``.
    """
    base = model.model
    enc_cfg = model.config.encoder_config
    block, window = enc_cfg.context_size, enc_cfg.pooling_window
    if block % window:
        raise ValueError(
            f"long-form encoding needs the attention block ({block} frames) to be a multiple of the pooling "
            f"window ({window} frames)"
        )
    context = options.encoder_context_blocks
    if context is None:
        context = encoder_context_blocks(enc_cfg)
    num_frames = features.shape[0]
    chunk = max(1, round(options.encoder_chunk_seconds / ENCODER_FRAME_SECONDS / block)) * block
    dtype = base.language_model.embed_tokens.weight.dtype
    total_windows = int(num_bpe_windows(num_frames, window))
    labels = np.zeros(total_windows, dtype=np.int64)

    kept_start = 0  # first frame whose projector input / pooled window is still held
    kept_proj: list[torch.Tensor] = []
    kept_pooled: list[torch.Tensor] = []
    seg_start = 0  # in windows
    for first in range(0, num_frames, chunk):
        last = min(first + chunk, num_frames)
        lo, hi = max(first - context * block, 0), min(last + context * block, num_frames)
        with torch.no_grad():
            out = base.encoder(features[None, lo:hi])
        proj = out.projector_input[0, first - lo : last - lo]
        w_first, w_last = first // window, int(num_bpe_windows(last, window))
        pooled = out.pooled_hidden_states[
            0, (first - lo) // window : (first - lo) // window + w_last - w_first
        ]
        labels[w_first:w_last] = base.bpe_argmax(pooled).cpu().numpy()
        kept_proj.append(proj)
        if keep_pooled:
            kept_pooled.append(pooled)
        done = last == num_frames
        cuts = plan_segments(labels, seg_start, w_last, done, plan)
        if not cuts:
            continue
        held_proj = torch.cat(kept_proj)
        held_pooled = torch.cat(kept_pooled) if keep_pooled else None
        for cut in cuts:
            f0, f1 = seg_start * window, min(cut * window, num_frames)
            seg_proj = held_proj[f0 - kept_start : f1 - kept_start]
            with torch.no_grad():
                embeds, lengths = project_audio(
                    base.projector, model.config, seg_proj[None], torch.tensor([f1 - f0]), dtype
                )
            draft = ctc_collapse(torch.from_numpy(labels[seg_start:cut]), [cut - seg_start], plan.blank)[0]
            seg_pooled = None
            if held_pooled is not None:
                w0 = seg_start - kept_start // window
                seg_pooled = held_pooled[w0 : w0 + cut - seg_start]
            yield SegmentAudio(f0, f1, embeds[0, : int(lengths[0])], draft.to(embeds.device), seg_pooled)
            seg_start = cut
        new_start = seg_start * window
        kept_proj = [held_proj[new_start - kept_start :]]
        if held_pooled is not None:
            kept_pooled = [held_pooled[(new_start - kept_start) // window :]]
        kept_start = new_start
