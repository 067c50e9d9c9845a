"""Slow, obviously-correct references for the tricky parts, one utterance at a time.

The model's fast paths (batched pooling, window folding, packing, CTC collapse, block attention) are
tested against these. Nothing here is used for inference.
"""

from __future__ import annotations

import math

import torch

__all__ = [
    "reference_ctc_collapse",
    "reference_insert_slots",
    "reference_pool",
    "reference_windows",
    "reference_pack",
    "reference_block_attention",
]


def reference_ctc_collapse(ids: list[int], blank: int) -> list[int]:
    """Greedy CTC: keep a label when it differs from the previous frame's label and is not blank."""
    out, previous = [], None
    for label in ids:
        if label != previous and label != blank:
            out.append(label)
        previous = label
    return out


def reference_insert_slots(tokens: list[int], blank: int, min_length: int) -> list[int]:
    """``[_, t1, _, …, tn, _]`` padded with blanks to ``min_length``."""
    slots = [blank]
    for token in tokens:
        slots += [token, blank]
    return slots + [blank] * max(0, min_length - len(slots))


def reference_pool(hidden: torch.Tensor, blank_prob: torch.Tensor, window: int) -> torch.Tensor:
    """Posterior-weighted pooling of one utterance ``(T, D)`` into ``(ceil(T / window), D)``, in float64."""
    num_frames = hidden.shape[0]
    pooled = []
    for start in range(0, num_frames, window):
        frames = range(start, min(start + window, num_frames))
        importance = [1.0 - float(blank_prob[t].detach()) for t in frames]
        total = sum(importance) + 1e-8
        acc = torch.zeros(hidden.shape[1], dtype=torch.float64)
        for t, imp in zip(frames, importance, strict=True):
            acc += (imp / total) * hidden[t].double()
        pooled.append(acc)
    return torch.stack(pooled)


def reference_windows(hidden: torch.Tensor, window: int) -> list[torch.Tensor]:
    """Cut one utterance ``(T, D)`` into ``window``-frame windows, the last one zero padded."""
    windows = []
    for start in range(0, hidden.shape[0], window):
        chunk = hidden[start : start + window]
        padding = torch.zeros(window - chunk.shape[0], hidden.shape[1], dtype=hidden.dtype)
        windows.append(torch.cat([chunk, padding]))
    return windows


def reference_pack(
    audio: list[torch.Tensor], slots: list[torch.Tensor]
) -> tuple[torch.Tensor, list[int], list[int]]:
    """Rows ``[audio_0; slots_0; audio_1; slots_1; …]``, positions restarting per utterance, slot row indices."""
    rows, positions, text_rows = [], [], []
    for a, s in zip(audio, slots, strict=True):
        start = sum(r.shape[0] for r in rows)
        rows += [a, s]
        positions += list(range(a.shape[0] + s.shape[0]))
        text_rows += list(range(start + a.shape[0], start + a.shape[0] + s.shape[0]))
    return torch.cat(rows), positions, text_rows


def reference_block_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    rel_pos: torch.Tensor,
    context_size: int,
    max_pos_emb: int,
) -> torch.Tensor:
    """Block attention of one utterance, written out: ``q, k, v`` are ``(H, T, d)``; returns ``(H, T, d)``.

    Frame ``i`` attends to the frames ``j`` of its own ``context_size`` block only, with score
    ``(q_i · k_j + q_i · R[clamp(i - j, ±C) + max_pos_emb]) / sqrt(d)``.
    """
    heads, num_frames, dim = q.shape
    scale = 1.0 / math.sqrt(dim)
    out = torch.zeros_like(q, dtype=torch.float64)
    for start in range(0, num_frames, context_size):
        block = range(start, min(start + context_size, num_frames))
        for i in block:
            scores = []
            for j in block:
                rel = rel_pos[max(-context_size, min(context_size, i - j)) + max_pos_emb].double()
                scores.append((q[:, i].double() * (k[:, j].double() + rel)).sum(-1) * scale)  # (H,)
            weights = torch.stack(scores, dim=-1).softmax(dim=-1)  # (H, |block|)
            out[:, i] = torch.einsum("hj,hjd->hd", weights, v[:, block.start : block.stop].double())
    return out
