"""Sequence-level training: minimum expected word (or character) error over sampled hypotheses.

Token-level training (the editing CTC loss) makes every slot likely on its own; what a user measures is the
error rate of the whole collapsed transcript. This stage optimises that directly, after supervised
fine-tuning, the way minimum-WER training and group-relative policy optimisation do for autoregressive
models, but with the editor's one-pass structure:

1. one forward pass gives the distribution of every slot (the editor is not autoregressive, so the slots
   are independent given the audio and the draft);
2. ``group_size`` *paths* are sampled per utterance, slot by slot, from ``softmax(logits / temperature)``,
   and CTC-collapsed (merge repeats, drop blanks) into hypotheses — exactly what greedy decoding does to
   the argmax path;
3. each hypothesis gets a *risk*, its word (or character) error rate against the reference, after the
   same text normalisation as evaluation;
4. the loss is ``-(1/G) Σ_g A_g · log p(path_g)``, divided by the batch's slot count, with the advantage
   ``A_g`` the negated risk relative to the group's mean: ``"mwer"`` uses ``mean - risk`` (an unbiased
   estimate of the gradient of the expected risk, with the group mean as baseline), ``"group"``
   additionally divides by the group's standard deviation (group-relative). A group whose samples are
   all equally good has zero advantage everywhere, hence no gradient;
5. an *anchor*: the usual editing CTC loss (and the encoder's BPE CTC, with its configured weight) keeps
   the model close to the reference alignment so that the sampled objective cannot drift.

Optionally the encoder's BPE head gets the same treatment on its own CTC draft (``encoder_weight``).

Functions here are small and pure so that the sampling and the estimator can be tested on their own;
:func:`compute_sequence_losses` wires them into one training batch and
:class:`~granite_nar.training.GraniteSpeechNarTrainer` runs it when given a :class:`SequenceObjective`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from torch import nn

from ..model.ctc import Divisor, NarLosses, ctc_collapse, ctc_greedy_decode, nar_losses
from .metrics import Normalizer, basic_normalize, char_error_rate, word_error_rate
from .presets import unwrap_model

__all__ = [
    "ADVANTAGES",
    "RISKS",
    "SequenceObjective",
    "SequenceLosses",
    "sample_ctc_paths",
    "path_log_probs",
    "collapse_paths",
    "hypothesis_risks",
    "group_advantages",
    "policy_loss",
    "compute_sequence_losses",
]

ADVANTAGES = ("group", "mwer")
RISKS = ("wer", "cer")


@dataclass
class SequenceObjective:
    """Settings of the sequence-level stage.

    Args:
        group_size: hypotheses sampled per utterance (``G``).
        temperature: slot logits are divided by it before sampling; the log-probabilities are those of
            the sampling distribution, so the estimator stays on-policy.
        risk: ``"wer"`` or ``"cer"`` of each hypothesis against the reference.
        advantage: ``"mwer"`` (risk minus the group mean: minimum expected risk; the default) or ``"group"``
            (that divided by the group's standard deviation). On the tiny model (docs/training.md) ``"mwer"``
            with ``anchor_weight=1`` was the least harmful setting; ``"group"`` with 0.5 made it worse.
        anchor_weight: weight of the editing CTC loss towards the reference, added for stability (0: none).
        encoder_weight: weight of the same objective on the encoder's BPE-CTC draft (0: editor only).
        normalize: text normalisation before scoring (references and hypotheses alike).
        ignore_spaces: CER without spaces (languages written without them).
        seed: of the sampling generator.
    """

    group_size: int = 8
    temperature: float = 1.0
    risk: str = "wer"
    advantage: str = "mwer"
    anchor_weight: float = 1.0
    encoder_weight: float = 0.0
    normalize: Normalizer | None = basic_normalize
    ignore_spaces: bool = False
    seed: int = 0
    _generator: torch.Generator = field(init=False, repr=False)

    def __post_init__(self):
        if self.group_size < 2:
            raise ValueError(
                f"group_size must be at least 2 (a group needs a baseline), got {self.group_size}."
            )
        if not self.temperature > 0:
            raise ValueError(f"temperature must be positive, got {self.temperature}.")
        if self.risk not in RISKS:
            raise ValueError(f"risk must be one of {RISKS}, got {self.risk!r}.")
        if self.advantage not in ADVANTAGES:
            raise ValueError(f"advantage must be one of {ADVANTAGES}, got {self.advantage!r}.")
        if self.anchor_weight < 0 or self.encoder_weight < 0:
            raise ValueError("anchor_weight and encoder_weight must not be negative.")
        self._generator = torch.Generator().manual_seed(self.seed)

    def risk_fn(self) -> Callable[[str, str], float]:
        """``(reference, hypothesis) -> error rate`` of one utterance."""
        if self.risk == "wer":
            return lambda ref, hyp: word_error_rate(ref, hyp, self.normalize).rate
        return lambda ref, hyp: char_error_rate(ref, hyp, self.normalize, self.ignore_spaces).rate


@dataclass
class SequenceLosses:
    """The total loss of a sequence-level batch and its parts.

    ``policy_loss`` is the sampled objective of the editor, ``encoder_policy_loss`` the encoder's (when
    trained), ``anchor`` the CTC terms (a :class:`~granite_nar.model.ctc.NarLosses`), ``sample_risk`` the
    mean risk of the sampled hypotheses and ``greedy_risk`` that of the greedy (argmax) edit of the same
    pass: the two numbers to watch while training.
    """

    loss: torch.Tensor
    policy_loss: torch.Tensor
    anchor: NarLosses | None
    sample_risk: float
    greedy_risk: float
    encoder_policy_loss: torch.Tensor | None = None

    def components(self) -> dict[str, float]:
        out = {"policy_loss": float(self.policy_loss.detach())}
        if self.encoder_policy_loss is not None:
            out["encoder_policy_loss"] = float(self.encoder_policy_loss.detach())
        if self.anchor is not None:
            out.update(self.anchor.components())
        out["sample_risk"] = self.sample_risk
        out["greedy_risk"] = self.greedy_risk
        return out


def sample_ctc_paths(
    logits: torch.Tensor, group_size: int, temperature: float = 1.0, generator: torch.Generator | None = None
) -> torch.Tensor:
    """``group_size`` independent label paths from flat per-position logits.

    Args:
        logits: ``(ΣS, V)`` logits of every position (slot or BPE window) of every utterance.

    Returns ``(G, ΣS)`` sampled ids, drawn from ``softmax(logits / temperature)`` on the CPU (so that a
    seeded generator gives the same samples on any device), on ``logits``' device.
    """
    probs = torch.softmax(logits.detach().float().cpu() / temperature, dim=-1)
    picks = torch.multinomial(probs, group_size, replacement=True, generator=generator)  # (ΣS, G)
    return picks.t().contiguous().to(logits.device)


def path_log_probs(
    logits: torch.Tensor, paths: torch.Tensor, lengths: Sequence[int], temperature: float = 1.0
) -> torch.Tensor:
    """``(G, B)`` log-probability of each sampled path per utterance under ``softmax(logits / temperature)``.

    Args:
        logits: ``(ΣS, V)`` (differentiable); paths: ``(G, ΣS)`` from :func:`sample_ctc_paths`;
        lengths: positions per utterance (``S_b``, summing to ``ΣS``).
    """
    log_probs = torch.log_softmax(logits.float() / temperature, dim=-1)  # (ΣS, V)
    picked = log_probs.gather(1, paths.t()).t()  # (G, ΣS)
    utterance = torch.repeat_interleave(
        torch.arange(len(lengths), device=logits.device), torch.as_tensor(list(lengths), device=logits.device)
    )
    out = picked.new_zeros(paths.shape[0], len(lengths))
    return out.index_add(1, utterance, picked)


def collapse_paths(paths: torch.Tensor, lengths: Sequence[int], blank: int) -> list[list[torch.Tensor]]:
    """CTC-collapse every sampled path: ``[g][b]`` the hypothesis of sample ``g`` of utterance ``b``."""
    return [ctc_collapse(path, lengths, blank) for path in paths]


def hypothesis_risks(
    references: Sequence[str], hypotheses: Sequence[Sequence[str]], risk: Callable[[str, str], float]
) -> torch.Tensor:
    """``(G, B)`` risks: ``risk(references[b], hypotheses[g][b])``."""
    return torch.tensor(
        [[risk(ref, hyp) for ref, hyp in zip(references, group, strict=True)] for group in hypotheses],
        dtype=torch.float32,
    )


def group_advantages(risks: torch.Tensor, advantage: str = "group", eps: float = 1e-6) -> torch.Tensor:
    """``(G, B)`` advantages from ``(G, B)`` risks: lower risk than the group's mean → positive.

    ``"mwer"``: ``mean_g(risk) - risk``. ``"group"``: that divided by the group's (population) standard
    deviation; a group whose risks are all equal gets exactly zero.
    """
    if advantage not in ADVANTAGES:
        raise ValueError(f"advantage must be one of {ADVANTAGES}, got {advantage!r}.")
    centred = risks.mean(dim=0, keepdim=True) - risks
    if advantage == "mwer":
        return centred
    std = risks.std(dim=0, unbiased=False, keepdim=True)
    return torch.where(std > eps, centred / std.clamp_min(eps), torch.zeros_like(centred))


def policy_loss(log_probs: torch.Tensor, advantages: torch.Tensor, num_positions) -> torch.Tensor:
    """``-(1/G) Σ_{g,b} A_gb · log p_gb / num_positions``: its gradient is the advantage-weighted
    score-function estimate, per position of the batch (as the CTC losses are)."""
    advantages = advantages.to(log_probs.device, log_probs.dtype)
    return -(advantages * log_probs).sum() / (log_probs.shape[0] * num_positions)


def _sampled_objective(
    logits: torch.Tensor,
    lengths: Sequence[int],
    references: Sequence[str],
    decode: Callable[[list[list[int]]], list[str]],
    blank: int,
    objective: SequenceObjective,
    divisor: Divisor | None,
) -> tuple[torch.Tensor, float, float]:
    """The policy loss over one set of flat logits, its samples' mean risk and the greedy path's risk."""
    paths = sample_ctc_paths(logits, objective.group_size, objective.temperature, objective._generator)
    hypotheses = [decode([h.tolist() for h in group]) for group in collapse_paths(paths, lengths, blank)]
    risk = objective.risk_fn()
    risks = hypothesis_risks(references, hypotheses, risk)
    greedy = decode([h.tolist() for h in ctc_greedy_decode(logits.detach(), lengths, blank)])
    greedy_risk = sum(risk(r, h) for r, h in zip(references, greedy, strict=True)) / max(len(references), 1)
    log_probs = path_log_probs(logits, paths, lengths, objective.temperature)
    count = torch.tensor(float(sum(lengths)), device=logits.device)
    count = divisor(count) if divisor is not None else count
    loss = policy_loss(log_probs, group_advantages(risks, objective.advantage), count)
    return loss, float(risks.mean()), greedy_risk


def compute_sequence_losses(
    model: nn.Module,
    input_features: torch.Tensor,
    input_features_mask: torch.Tensor | None,
    labels: torch.Tensor,
    label_lengths: torch.Tensor,
    objective: SequenceObjective,
    decode: Callable[[list[list[int]]], list[str]],
    encoder_ctc_loss_lambda: float | None = None,
    divisor: Divisor | None = None,
) -> SequenceLosses:
    """The sequence-level loss of one batch: sampled edits of the model's own drafts, plus the anchor.

    Args:
        model: a :class:`~granite_nar.GraniteSpeechNarForCTC` (or a peft model wrapping one).
        labels, label_lengths: ``(B, S_max)`` reference ids and lengths; the reference *text* is their
            decoding (``decode``), which is exact for the tokenizers in use.
        objective: the :class:`SequenceObjective`.
        decode: token id lists → texts (``tokenizer.batch_decode(..., skip_special_tokens=True)``).
        encoder_ctc_loss_lambda: weight of the encoder BPE CTC in the anchor (default: the config's).
    """
    base = unwrap_model(model)
    cfg = base.config
    blank = cfg.blank_token_id
    lambda_enc = cfg.encoder_ctc_loss_lambda if encoder_ctc_loss_lambda is None else encoder_ctc_loss_lambda
    label_lengths = torch.as_tensor(label_lengths, device=labels.device).long()
    labels = labels.clamp_min(0)
    references = decode([labels[b, : int(n)].tolist() for b, n in enumerate(label_lengths)])

    audio = base.model.encode_audio(
        input_features, input_features_mask, output_bpe_logits=lambda_enc > 0 or objective.encoder_weight > 0
    )
    edited = base.model(
        audio_embeds=audio.audio_embeds,
        audio_lengths=audio.audio_lengths,
        input_ids=audio.draft_ids,
        return_dict=True,
    )
    slot_logits = base.slot_logits(edited.last_hidden_state)[0]
    slot_lengths = edited.seq_lengths.tolist()
    loss, sample_risk, greedy_risk = _sampled_objective(
        slot_logits, slot_lengths, references, decode, blank, objective, divisor
    )
    total = loss
    encoder_loss = None
    if objective.encoder_weight > 0:
        bpe_lengths = audio.bpe_lengths.tolist()
        encoder_loss, _, _ = _sampled_objective(
            audio.bpe_logits, bpe_lengths, references, decode, blank, objective, divisor
        )
        total = total + objective.encoder_weight * encoder_loss
    anchor = None
    if objective.anchor_weight > 0 or lambda_enc > 0:
        anchor = nar_losses(
            labels,
            label_lengths,
            blank,
            slot_logits=slot_logits,
            slot_lengths=slot_lengths,
            slot_ids=edited.inserted_ctc_token_ids,
            edit_loss_weight=objective.anchor_weight,
            bpe_logits=audio.bpe_logits,
            bpe_lengths=None if audio.bpe_lengths is None else audio.bpe_lengths.tolist(),
            encoder_ctc_loss_lambda=lambda_enc,
            divisor=divisor,
        )
        total = total + anchor.loss
    return SequenceLosses(
        loss=total,
        policy_loss=loss,
        anchor=anchor,
        sample_risk=sample_risk,
        greedy_risk=greedy_risk,
        encoder_policy_loss=encoder_loss,
    )
