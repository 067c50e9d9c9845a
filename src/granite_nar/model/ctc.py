"""CTC helpers: greedy collapse, insertion slots and the three training losses (SPEC §4, §5).

All functions work on flat (packed) tensors plus per-utterance lengths, the layout the model uses.
Slow per-utterance versions live in :mod:`granite_nar.testing.reference` and check these in the tests.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

__all__ = [
    "ctc_collapse",
    "ctc_greedy_decode",
    "insert_slots",
    "build_slots",
    "ctc_loss_from_flat_logits",
    "copy_loss",
    "check_labels",
]


def ctc_collapse(ids: torch.Tensor, lengths: Sequence[int] | torch.Tensor, blank: int) -> list[torch.Tensor]:
    """Greedy CTC collapse of flat frame labels: merge repeats *then* drop blanks (``a _ a`` → ``a a``).

    Args:
        ids: ``(ΣT,)`` argmax ids of all utterances, concatenated.
        lengths: ``T_b`` per utterance.
        blank: the blank id.

    Returns one 1-D LongTensor per utterance (possibly empty).
    """
    lengths = [int(n) for n in lengths]
    ids = ids.reshape(-1)
    if ids.numel() != sum(lengths):
        raise ValueError(f"ids hold {ids.numel()} frames but the lengths add up to {sum(lengths)}.")
    if ids.numel() == 0:
        return [ids.new_empty(0, dtype=torch.long) for _ in lengths]
    # A frame starts a new run if it differs from its predecessor or starts an utterance.
    starts = torch.zeros_like(ids, dtype=torch.bool)
    starts[1:] = ids[1:] != ids[:-1]
    offsets = torch.tensor([0, *lengths[:-1]], device=ids.device).cumsum(0)
    starts[offsets[torch.tensor(lengths, device=ids.device) > 0]] = True
    keep = starts & (ids != blank)
    counts = torch.zeros(len(lengths), dtype=torch.long, device=ids.device)
    utt = torch.repeat_interleave(
        torch.arange(len(lengths), device=ids.device), torch.tensor(lengths, device=ids.device)
    )
    counts.index_add_(0, utt, keep.long())
    return list(ids[keep].long().split(counts.tolist()))


def ctc_greedy_decode(
    logits: torch.Tensor, lengths: Sequence[int] | torch.Tensor, blank: int
) -> list[torch.Tensor]:
    """Argmax over ``(ΣT, V)`` flat logits, then :func:`ctc_collapse` per utterance."""
    return ctc_collapse(logits.argmax(dim=-1), lengths, blank)


def insert_slots(tokens: torch.Tensor, blank: int, min_length: int = 1) -> torch.Tensor:
    """``[t1 … tn]`` → ``[_, t1, _, t2, …, tn, _]``, right-padded with blanks to ``min_length`` (SPEC §4).

    With ``n = 0`` the result is ``max(1, min_length)`` blanks.
    """
    n = tokens.numel()
    out = torch.full((max(2 * n + 1, min_length),), blank, dtype=torch.long, device=tokens.device)
    out[1 : 2 * n : 2] = tokens.reshape(-1)
    return out


def build_slots(
    drafts: Sequence[torch.Tensor], blank: int, min_length: int = 1
) -> tuple[torch.Tensor, list[int]]:
    """Insertion slots of a batch: the flat ``(ΣS,)`` slot ids and the per-utterance slot counts."""
    slots = [insert_slots(draft, blank, min_length) for draft in drafts]
    return torch.cat(slots), [s.numel() for s in slots]


def _pad_log_probs(flat_log_probs: torch.Tensor, lengths: Sequence[int]) -> torch.Tensor:
    """``(ΣL, V)`` → ``(L_max, B, V)`` as ``F.ctc_loss`` wants (padding is never read)."""
    pieces = flat_log_probs.split([int(n) for n in lengths])
    return torch.nn.utils.rnn.pad_sequence(pieces, batch_first=False)


def ctc_loss_from_flat_logits(
    flat_logits: torch.Tensor,
    lengths: Sequence[int],
    labels: torch.Tensor,
    label_lengths: torch.Tensor,
    blank: int,
) -> torch.Tensor:
    """CTC loss over per-utterance logit runs, summed and divided by ``Σ L_b`` (SPEC §5.1, §5.3).

    Normalised by the total number of input positions of the batch, not by target length, as the
    reference does; infeasible utterances (labels longer than their CTC can emit) contribute 0
    (``zero_infinity``). Computed in float32.

    Args:
        flat_logits: ``(ΣL, V)`` logits of all utterances, concatenated.
        lengths: ``L_b`` per utterance.
        labels: ``(B, S_max)`` target ids, right-padded with anything.
        label_lengths: ``(B,)`` true target lengths.
    """
    log_probs = _pad_log_probs(F.log_softmax(flat_logits.float(), dim=-1), lengths)
    input_lengths = torch.tensor([int(n) for n in lengths], dtype=torch.long, device=flat_logits.device)
    label_lengths = label_lengths.to(device=flat_logits.device, dtype=torch.long)
    if labels.shape[1] == 0:
        labels = labels.new_zeros(labels.shape[0], 1)
    loss = F.ctc_loss(
        log_probs,
        labels.to(flat_logits.device).long(),
        input_lengths,
        label_lengths,
        blank=blank,
        reduction="sum",
        zero_infinity=True,
    )
    return loss / input_lengths.sum().clamp_min(1)


def copy_loss(flat_logits: torch.Tensor, slot_ids: torch.Tensor) -> torch.Tensor:
    """Copy (identity) regulariser: cross-entropy of the slot logits against the input slots (SPEC §5.2).

    Mean over all slot positions of the batch.
    """
    return F.cross_entropy(flat_logits.float(), slot_ids.to(flat_logits.device).long(), reduction="mean")


def check_labels(
    labels: torch.Tensor,
    label_lengths: torch.Tensor | None,
    batch: int,
    vocab_size: int,
    blank: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Validate right-padded ``(B, S_max)`` labels; return them with padding set to 0, and ``(B,)`` lengths.

    Without ``label_lengths``, negative ids (e.g. -100) mark padding. Inside the lengths, ids must be in
    the vocabulary and, for CTC targets, differ from the ``blank``.
    """
    labels = torch.as_tensor(labels)
    if labels.dim() != 2 or labels.shape[0] != batch:
        raise ValueError(f"labels must be (batch={batch}, max_label_length), got {tuple(labels.shape)}.")
    if label_lengths is None:
        label_lengths = (labels >= 0).sum(dim=1)
    label_lengths = torch.as_tensor(label_lengths, device=labels.device).long()
    if label_lengths.shape != (batch,) or bool((label_lengths > labels.shape[1]).any()):
        raise ValueError(
            f"label_lengths must be ({batch},) with values <= {labels.shape[1]}, got {label_lengths.tolist()}."
        )
    inside = torch.arange(labels.shape[1], device=labels.device)[None, :] < label_lengths[:, None]
    valid = labels[inside]
    if bool((valid < 0).any()):
        raise ValueError("labels hold negative ids inside label_lengths (padding must come last).")
    if bool((valid >= vocab_size).any()):
        raise ValueError(f"labels hold ids outside the vocabulary [0, {vocab_size}).")
    if blank is not None and bool((valid == blank).any()):
        raise ValueError(f"labels must not contain the blank id ({blank}): it cannot be a CTC target.")
    return labels.clamp_min(0).long(), label_lengths
