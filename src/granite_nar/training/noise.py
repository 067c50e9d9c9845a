"""Draft noise: corrupt the hypotheses the editor is trained to fix.

The editor sees the CTC draft in insertion slots and is trained with CTC towards the reference. If every
training draft were already correct, copying would be optimal and the editor would learn nothing beyond
the identity (the copy loss of docs/reference_behaviour.md §5.2 pushes it there too). With a well-trained encoder, drafts on the
*training* set are nearly perfect, so the editor rarely sees the kind of errors it meets on new audio.
:class:`DraftNoise` makes errors on purpose: each draft token is substituted, deleted or followed by an
inserted token with the given probabilities, and with probability ``reference_prob`` the draft is replaced
by the reference transcript before corruption (useful early in training from scratch, when the encoder's
drafts are still empty or garbage and the editor would otherwise get no feasible target to learn from).

Random tokens are drawn uniformly from the vocabulary minus ``excluded_ids`` (the blank, padding and
other special ids). Uniform random tokens are easy to spot in a fluent sentence; the errors of a real
encoder are acoustically plausible ones. ``sampling_temperature > 0`` makes drafts of that kind: instead
of the greedy CTC path, each 80 ms window's token is *sampled* from the encoder's BPE posterior at that
temperature and the samples are collapsed as usual, so the draft errs where the encoder is unsure, with
the tokens it hesitates between (:meth:`sample_drafts`; the token noise is applied after it).

Multi-step editing feeds the editor its own output: step 2 edits what step 1 wrote. Drafts that are the
encoder's output (corrupted or not) never look like that, so a second step trained only on them tends to
change nothing, or to undo good edits. ``self_correction_prob`` replaces a drafted utterance's draft by the
model's own greedy edit of it (computed without gradients, the editor in inference mode), so that the
editor also learns to fix what its first pass missed (:func:`~granite_nar.training.compute_nar_losses`
does this; it needs the model, so it is not part of :meth:`__call__`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

__all__ = ["DraftNoise"]


@dataclass
class DraftNoise:
    """Random substitutions, deletions and insertions applied to drafts.

    Args:
        substitution_prob: per draft token, probability of replacing it by a random token.
        deletion_prob: per draft token, probability of dropping it.
        insertion_prob: per draft token, probability of inserting a random token after it (and once
            before the first token).
        reference_prob: per utterance, probability of starting from the reference instead of the draft.
        self_correction_prob: per utterance, probability of starting from the model's own edit-1 output
            of its draft (self-correction training; applied by ``compute_nar_losses``, without token noise).
        sampling_temperature: when > 0, drafts are sampled from the encoder's CTC posterior at this
            temperature instead of taken greedily (needs the BPE logits; see :meth:`sample_drafts`).
        vocab_size: size of the vocabulary random tokens are drawn from.
        excluded_ids: ids never drawn (the CTC blank, padding, unknown …).
        seed: seed of the noise's own random generator (independent of the global torch seed).
    """

    substitution_prob: float = 0.0
    deletion_prob: float = 0.0
    insertion_prob: float = 0.0
    reference_prob: float = 0.0
    self_correction_prob: float = 0.0
    sampling_temperature: float = 0.0
    vocab_size: int | None = None
    excluded_ids: Sequence[int] = ()
    seed: int = 0
    _generator: torch.Generator = field(init=False, repr=False)
    _candidates: torch.Tensor | None = field(init=False, repr=False, default=None)

    def __post_init__(self):
        for name in (
            "substitution_prob",
            "deletion_prob",
            "insertion_prob",
            "reference_prob",
            "self_correction_prob",
        ):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {value}.")
        if self.substitution_prob + self.deletion_prob > 1.0:
            raise ValueError(
                f"substitution_prob ({self.substitution_prob}) + deletion_prob ({self.deletion_prob}) must not exceed 1."
            )
        self._generator = torch.Generator().manual_seed(self.seed)

    @property
    def enabled(self) -> bool:
        return any(
            p > 0
            for p in (
                self.substitution_prob,
                self.deletion_prob,
                self.insertion_prob,
                self.reference_prob,
                self.sampling_temperature,
            )
        )

    def sample_drafts(
        self, bpe_logits: torch.Tensor, lengths: Sequence[int], blank: int
    ) -> list[torch.Tensor]:
        """Drafts sampled window by window from ``softmax(bpe_logits / sampling_temperature)``, then collapsed.

        Args:
            bpe_logits: ``(ΣW, V)`` flat encoder BPE logits; lengths: windows per utterance; blank: CTC blank.
        """
        from ..model.ctc import ctc_collapse

        probs = torch.softmax(bpe_logits.detach().float().cpu() / self.sampling_temperature, dim=-1)
        picks = torch.multinomial(probs, 1, generator=self._generator).flatten()  # (ΣW,)
        return [d.to(bpe_logits.device) for d in ctc_collapse(picks, lengths, blank)]

    def self_correction_mask(self, batch_size: int) -> torch.Tensor:
        """``(B,)`` bool: which utterances of a batch start from the model's own edit-1 output."""
        if self.self_correction_prob <= 0:
            return torch.zeros(batch_size, dtype=torch.bool)
        return torch.rand(batch_size, generator=self._generator) < self.self_correction_prob

    def _random_tokens(self, count: int) -> torch.Tensor:
        if self._candidates is None:
            if self.vocab_size is None:
                raise ValueError("DraftNoise needs vocab_size to draw random tokens.")
            keep = torch.ones(self.vocab_size, dtype=torch.bool)
            keep[[i for i in self.excluded_ids if 0 <= i < self.vocab_size]] = False
            self._candidates = keep.nonzero().flatten()
        pick = torch.randint(len(self._candidates), (count,), generator=self._generator)
        return self._candidates[pick]

    def corrupt(self, tokens: torch.Tensor) -> torch.Tensor:
        """One corrupted copy of a 1-D token sequence (on the CPU)."""
        tokens = tokens.detach().cpu().long().reshape(-1)
        n = tokens.numel()
        u = torch.rand(n, generator=self._generator)
        substitute = u < self.substitution_prob
        delete = (u >= self.substitution_prob) & (u < self.substitution_prob + self.deletion_prob)
        out = tokens.clone()
        if bool(substitute.any()):
            out[substitute] = self._random_tokens(int(substitute.sum()))
        insert_after = (
            torch.rand(n + 1, generator=self._generator) < self.insertion_prob
        )  # slot 0 = before all
        pieces = []
        if bool(insert_after[0]):
            pieces.append(self._random_tokens(1))
        inserted = self._random_tokens(int(insert_after[1:].sum())) if bool(insert_after[1:].any()) else None
        k = 0
        for i in range(n):
            if not bool(delete[i]):
                pieces.append(out[i : i + 1])
            if bool(insert_after[i + 1]):
                pieces.append(inserted[k : k + 1])
                k += 1
        return torch.cat(pieces) if pieces else tokens.new_empty(0)

    def __call__(
        self,
        drafts: Sequence[torch.Tensor],
        labels: torch.Tensor | None = None,
        label_lengths: torch.Tensor | None = None,
    ) -> list[torch.Tensor]:
        """Corrupted drafts for a batch, on the drafts' device.

        Args:
            drafts: ``B`` 1-D tensors (the encoder's CTC hypotheses).
            labels, label_lengths: the references, needed when ``reference_prob > 0``.
        """
        out = []
        use_reference = torch.rand(len(drafts), generator=self._generator) < self.reference_prob
        for b, draft in enumerate(drafts):
            source = draft
            if bool(use_reference[b]):
                if labels is None or label_lengths is None:
                    raise ValueError("reference_prob > 0 needs labels and label_lengths.")
                source = labels[b, : int(label_lengths[b])]
            out.append(self.corrupt(source).to(draft.device))
        return out
