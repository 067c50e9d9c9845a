"""Granite Speech NAR: CTC draft → bidirectional LLM edit (docs/reference_behaviour.md §0, §4).

Data flow for a batch of ``B`` utterances::

    input_features (B, T, 160) ── encoder ──┬─ pooled windows (B, ceil(T/4), 1024) ── out_bpe ── greedy CTC ── draft ids
                                            └─ 4 hidden states (B, T, 4096) ── projector ── /12 ── audio embeds (B, T//5, 2048)
    per utterance: [audio embeds ; embed(slots(draft))]  ──► packed (1, ΣL, 2048) ── bidirectional editor
    slot rows ── lm_head (tied) / 8 ── greedy CTC ── edited ids            (repeat for num_editing_steps)
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from transformers.utils import ModelOutput

from ..checkpoints.loading import load_original_if_original
from ..lengths import lengths_to_mask
from .configuration_granite_speech_nar import GraniteSpeechNarConfig
from .ctc import build_slots, check_labels, ctc_collapse, ctc_greedy_decode, nar_losses, vocabulary_argmax
from .modeling_audio import GraniteSpeechAudioPreTrainedModel, check_input_features, project_audio
from .modeling_editor import GraniteSpeechNarEditor, PackedSequences
from .modeling_encoder import GraniteSpeechNarEncoder, _feature_mask
from .modeling_projector import GraniteSpeechNarProjector

__all__ = [
    "GraniteSpeechNarPreTrainedModel",
    "GraniteSpeechNarModel",
    "GraniteSpeechNarForCTC",
    "GraniteSpeechNarAudioOutput",
    "GraniteSpeechNarModelOutput",
    "GraniteSpeechNarOutput",
    "GraniteSpeechNarGenerateOutput",
]

# Rows of the (rows × vocabulary) BPE logits computed at once when only the argmax is needed (docs/reference_behaviour.md §11.5).
_BPE_ARGMAX_CHUNK = 2048


@dataclass
class GraniteSpeechNarAudioOutput(ModelOutput):
    """What the encoder, BPE head and projector produce; reused by every editing step.

    Args:
        audio_embeds: ``(B, A_max, D)`` audio embeddings (already divided by ``embedding_multiplier``
            when ``scale_projected_embeddings``); utterance ``b`` uses its first ``audio_lengths[b]`` rows.
        audio_lengths: ``(B,)`` ``T_b // downsample_rate``.
        draft_ids: list of ``B`` 1-D LongTensors, the greedy BPE-CTC hypotheses.
        bpe_logits: ``(Σ ceil(T_b/4), V)`` flat BPE logits, only when requested (or for the encoder loss).
        bpe_lengths: ``(B,)`` ``ceil(T_b / pooling_window)``.
        frame_lengths: ``(B,)`` valid encoder frames ``T_b``.
        pooled_hidden_states: ``(Σ ceil(T_b/4), hidden_dim)`` the pooled windows the BPE head reads (word
            timestamps align the final tokens against them).
        char_logits: ``(B, T, output_dim)`` logits of the encoder's mid-layer character CTC head.
        encoder_hidden_states: encoder hidden states when requested.
    """

    audio_embeds: torch.Tensor | None = None
    audio_lengths: torch.Tensor | None = None
    draft_ids: list[torch.Tensor] | None = None
    bpe_logits: torch.Tensor | None = None
    bpe_lengths: torch.Tensor | None = None
    frame_lengths: torch.Tensor | None = None
    pooled_hidden_states: torch.Tensor | None = None
    char_logits: torch.Tensor | None = None
    encoder_hidden_states: tuple[torch.Tensor, ...] | None = None


@dataclass
class GraniteSpeechNarModelOutput(ModelOutput):
    """Outputs of :class:`GraniteSpeechNarModel`.

    Args:
        last_hidden_state: ``(1, ΣS, D)`` editor states at the slot rows of all utterances, packed.
        seq_lengths: ``(B,)`` slot rows per utterance ``S_b``.
        inserted_ctc_token_ids: ``(ΣS,)`` the slot ids fed to the editor (blanks around the draft).
        draft_ids, bpe_logits, bpe_lengths, audio_embeds, audio_lengths: see
            :class:`GraniteSpeechNarAudioOutput` (``None`` when ``audio_embeds`` were given).
        hidden_states: editor hidden states of the whole packed row when requested.
    """

    last_hidden_state: torch.Tensor | None = None
    seq_lengths: torch.Tensor | None = None
    inserted_ctc_token_ids: torch.Tensor | None = None
    draft_ids: list[torch.Tensor] | None = None
    bpe_logits: torch.Tensor | None = None
    bpe_lengths: torch.Tensor | None = None
    audio_embeds: torch.Tensor | None = None
    audio_lengths: torch.Tensor | None = None
    hidden_states: tuple[torch.Tensor, ...] | None = None
    encoder_hidden_states: tuple[torch.Tensor, ...] | None = None


@dataclass
class GraniteSpeechNarOutput(ModelOutput):
    """Outputs of :meth:`GraniteSpeechNarForCTC.forward`.

    Args:
        loss: ``ctc_loss + ce_loss_lambda * ce_loss + encoder_ctc_loss_lambda * encoder_ctc_loss``.
        ctc_loss, ce_loss, encoder_ctc_loss: the components (``None`` when their weight is 0); ``ce_loss``
            is the copy loss.
        logits: ``(1, ΣS, V)`` slot logits of all utterances, packed, divided by ``logits_scaling``.
        seq_lengths: ``(B,)`` slot rows per utterance.
        inserted_ctc_token_ids: ``(ΣS,)`` the slot ids the editor saw.
        draft_ids: the BPE-CTC drafts.
        bpe_logits: flat BPE logits when requested, ``(Σ ceil(T_b/4), V)``; ``bpe_lengths`` per utterance.
            (``encoder_logits`` / ``encoder_lengths`` are deprecated aliases.)
    """

    loss: torch.Tensor | None = None
    ctc_loss: torch.Tensor | None = None
    ce_loss: torch.Tensor | None = None
    encoder_ctc_loss: torch.Tensor | None = None
    logits: torch.Tensor | None = None
    seq_lengths: torch.Tensor | None = None
    inserted_ctc_token_ids: torch.Tensor | None = None
    draft_ids: list[torch.Tensor] | None = None
    bpe_logits: torch.Tensor | None = None
    bpe_lengths: torch.Tensor | None = None
    hidden_states: tuple[torch.Tensor, ...] | None = None

    @property
    def encoder_logits(self) -> torch.Tensor | None:
        """Deprecated name of :attr:`bpe_logits`."""
        _renamed("encoder_logits", "bpe_logits")
        return self.bpe_logits

    @property
    def encoder_lengths(self) -> torch.Tensor | None:
        """Deprecated name of :attr:`bpe_lengths`."""
        _renamed("encoder_lengths", "bpe_lengths")
        return self.bpe_lengths


@dataclass
class GraniteSpeechNarGenerateOutput(ModelOutput):
    """Outputs of :meth:`GraniteSpeechNarForCTC.generate` with ``return_dict_in_generate=True``.

    Args:
        sequences: list of ``B`` 1-D LongTensors, the edited transcripts after the last step.
        draft_ids: list of ``B`` 1-D LongTensors, the BPE-CTC drafts (``encoder_sequences`` is a
            deprecated alias).
        logits: list of ``B`` ``(S_b, V)`` slot logits of the last step (divided by ``logits_scaling``).
        seq_lengths: ``(B,)`` slot rows per utterance in the last step.
        step_sequences: the transcripts after each editing step (``num_editing_steps`` lists).
    """

    sequences: list[torch.Tensor] | None = None
    draft_ids: list[torch.Tensor] | None = None
    logits: list[torch.Tensor] | None = None
    seq_lengths: torch.Tensor | None = None
    step_sequences: list[list[torch.Tensor]] | None = None

    @property
    def encoder_sequences(self) -> list[torch.Tensor] | None:
        """Deprecated name of :attr:`draft_ids`."""
        _renamed("encoder_sequences", "draft_ids")
        return self.draft_ids


# Arguments transformers' own machinery passes to every model (Trainer, common tests); accepted and unused.
_IGNORED_FORWARD_KWARGS = {"num_items_in_batch", "use_cache"}


def _check_forward_kwargs(name: str, kwargs: dict) -> None:
    """Refuse what ``forward`` cannot honour instead of silently ignoring it."""
    if kwargs.get("output_attentions"):
        raise ValueError(
            f"{name}: output_attentions is not supported: the editor attends over packed utterances with "
            "fused kernels and never materialises attention weights."
        )
    unknown = sorted(k for k in kwargs if k not in _IGNORED_FORWARD_KWARGS and k != "output_attentions")
    if unknown:
        raise TypeError(f"{name} got unexpected arguments: {unknown}.")


def _renamed(old: str, new: str) -> None:
    warnings.warn(f"`{old}` is deprecated; use `{new}`.", FutureWarning, stacklevel=3)


class GraniteSpeechNarPreTrainedModel(GraniteSpeechAudioPreTrainedModel):
    config: GraniteSpeechNarConfig
    config_class = GraniteSpeechNarConfig
    base_model_prefix = "model"
    _no_split_modules = ["GraniteSpeechNarConformerBlock", "GraniteSpeechNarEditorLayer"]

    def resize_token_embeddings(
        self,
        new_num_tokens: int | None = None,
        pad_to_multiple_of: int | None = None,
        mean_resizing: bool = True,
    ) -> nn.Embedding:
        """Resize the editor's vocabulary *and* the encoder's BPE head, which share one vocabulary.

        The editor's embeddings (and the tied output head) are resized by transformers; ``out_bpe`` keeps its
        old rows, and new rows start at the mean of the old ones (weight and bias), so a new token is
        neither favoured nor ruled out by the draft. ``text_config.vocab_size`` and
        ``encoder_config.vocabulary_size`` stay equal, so the result saves and loads back. Shrinking the
        vocabulary past the CTC blank is refused.
        """
        blank = self.config.blank_token_id
        if new_num_tokens is not None and new_num_tokens <= blank:
            raise ValueError(
                f"cannot resize the vocabulary to {new_num_tokens}: the CTC blank id {blank} must stay inside it."
            )
        embeddings = super().resize_token_embeddings(new_num_tokens, pad_to_multiple_of, mean_resizing)
        vocab = embeddings.num_embeddings
        base = getattr(self, self.base_model_prefix, self)
        old = base.out_bpe
        if old.out_features != vocab:
            new = nn.Linear(old.in_features, vocab, device=old.weight.device, dtype=old.weight.dtype)
            keep = min(vocab, old.out_features)
            with torch.no_grad():
                new.weight[:keep] = old.weight[:keep]
                new.bias[:keep] = old.bias[:keep]
                new.weight[keep:] = old.weight.mean(dim=0)
                new.bias[keep:] = old.bias.mean()
            base.out_bpe = new
        self.config.encoder_config.vocabulary_size = vocab
        self.config.text_config.vocab_size = vocab
        return embeddings

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *model_args, **kwargs):
        """Load a native checkpoint, or one in the original remote-code layout (mapped on the fly).

        Works offline from a local folder or the local Hub cache. The original layout is recognised by
        its config (``encoder_layer_indices``, ``auto_map``, ``text_config.model_type == "granite"`` …),
        mapped to native names and loaded without ``trust_remote_code``; every ``from_pretrained`` argument
        then means what it means for a native folder (see
        :func:`granite_nar.checkpoints.loading.load_original_if_original`).
        """
        if pretrained_model_name_or_path is not None:
            model = load_original_if_original(cls, pretrained_model_name_or_path, model_args, kwargs)
            if model is not None:
                return model
        return super().from_pretrained(pretrained_model_name_or_path, *model_args, **kwargs)


class GraniteSpeechNarModel(GraniteSpeechNarPreTrainedModel):
    """Encoder, BPE CTC head, projector and bidirectional editor, without the output head."""

    def __init__(self, config: GraniteSpeechNarConfig):
        super().__init__(config)
        self.encoder = GraniteSpeechNarEncoder(config.encoder_config)
        self.projector = GraniteSpeechNarProjector(config.projector_config, config.encoder_config.hidden_dim)
        self.out_bpe = nn.Linear(config.encoder_config.hidden_dim, config.encoder_config.vocabulary_size)
        self.language_model = GraniteSpeechNarEditor(config.text_config)
        self.post_init()

    def get_input_embeddings(self) -> nn.Embedding:
        return self.language_model.embed_tokens

    def set_input_embeddings(self, value: nn.Embedding):
        self.language_model.embed_tokens = value

    @torch.no_grad()
    def bpe_argmax(self, pooled: torch.Tensor) -> torch.Tensor:
        """``(W, hidden)`` pooled windows → ``(W,)`` the BPE head's best id per window, computed
        ``_BPE_ARGMAX_CHUNK`` rows at a time so that the ``(W, V)`` logits never exist at once."""
        return torch.cat([vocabulary_argmax(self.out_bpe(rows)) for rows in pooled.split(_BPE_ARGMAX_CHUNK)])

    # -- audio side: run once per batch ------------------------------------------------------------
    def encode_audio(
        self,
        input_features: torch.Tensor,
        input_features_mask: torch.Tensor | None = None,
        output_bpe_logits: bool = False,
        output_hidden_states: bool = False,
    ) -> GraniteSpeechNarAudioOutput:
        """Encoder + BPE CTC draft + projector.

        Args:
            input_features: ``(B, T, input_dim)`` stacked log-mel frames.
            input_features_mask: ``(B, T)`` bool right-padding mask (``None``: all frames valid).
            output_bpe_logits: keep the flat ``(Σ ceil(T_b/4), V)`` BPE logits; otherwise only their
                argmax is computed, chunk by chunk, so they never exist for the whole batch.
        """
        frame_lengths = check_input_features(self.config, input_features, input_features_mask)
        frame_mask = lengths_to_mask(frame_lengths, input_features.shape[1])

        enc = self.encoder(input_features, frame_mask, output_hidden_states=output_hidden_states)
        bpe_lengths = enc.pooled_lengths
        pooled = enc.pooled_hidden_states[lengths_to_mask(bpe_lengths, enc.pooled_hidden_states.shape[1])]
        bpe_logits = None
        blank = self.config.blank_token_id
        if output_bpe_logits:
            bpe_logits = self.out_bpe(pooled)  # (Σ W_b, V)
            draft_ids = ctc_greedy_decode(bpe_logits, bpe_lengths.tolist(), blank)
        else:
            draft_ids = ctc_collapse(self.bpe_argmax(pooled), bpe_lengths.tolist(), blank)

        audio_embeds, audio_lengths = project_audio(
            self.projector,
            self.config,
            enc.projector_input,
            frame_lengths,
            self.language_model.embed_tokens.weight.dtype,
        )
        return GraniteSpeechNarAudioOutput(
            audio_embeds=audio_embeds,
            audio_lengths=audio_lengths,
            draft_ids=draft_ids,
            bpe_logits=bpe_logits,
            bpe_lengths=bpe_lengths,
            frame_lengths=frame_lengths,
            pooled_hidden_states=pooled,
            char_logits=enc.char_logits,
            encoder_hidden_states=enc.hidden_states,
        )

    # -- text side: one editing pass -----------------------------------------------------------------
    def edit(
        self,
        audio_embeds: torch.Tensor | Sequence[torch.Tensor],
        audio_lengths: torch.Tensor | Sequence[int] | None,
        token_ids: Sequence[torch.Tensor],
        output_hidden_states: bool = False,
    ) -> GraniteSpeechNarModelOutput:
        """One bidirectional editing pass over packed utterances.

        Args:
            audio_embeds: ``(B, A_max, D)`` padded audio embeddings (with ``audio_lengths``), or a list of
                ``(A_b, D)`` tensors.
            audio_lengths: ``(B,)`` valid rows per utterance; ignored for a list.
            token_ids: ``B`` 1-D tensors, the hypotheses to edit (collapsed, no blanks).

        Returns the editor states at the slot rows, packed ``(1, ΣS, D)``.
        """
        if isinstance(audio_embeds, torch.Tensor):
            if audio_lengths is None:
                audio_lengths = [audio_embeds.shape[1]] * audio_embeds.shape[0]
            audio = [audio_embeds[b, : int(n)] for b, n in enumerate(audio_lengths)]
        else:
            audio = list(audio_embeds)
        if len(audio) != len(token_ids):
            raise ValueError(f"got audio for {len(audio)} utterances but {len(token_ids)} token sequences.")
        embed = self.language_model.embed_tokens
        # The inputs' device, not the embedding weight's: with device_map offloading, weights sit on "meta"
        # until their module runs.
        device = audio[0].device if audio else embed.weight.device
        blank = self.config.blank_token_id
        vocab = self.config.text_config.vocab_size
        token_ids = [torch.as_tensor(t, dtype=torch.long, device=device).reshape(-1) for t in token_ids]
        for b, t in enumerate(token_ids):
            if t.numel() and (int(t.min()) < 0 or int(t.max()) >= vocab):
                raise ValueError(f"token ids of utterance {b} fall outside the vocabulary [0, {vocab}).")
        slot_ids, slot_lengths = build_slots(token_ids, blank, self.config.min_edit_sequence_length)
        slot_embeds = embed(slot_ids).split(slot_lengths)  # B × (S_b, D)

        rows, text_index, offset = [], [], 0
        for a, s in zip(audio, slot_embeds, strict=True):
            rows += [a.to(s.dtype), s]
            text_index.append(
                torch.arange(offset + a.shape[0], offset + a.shape[0] + s.shape[0], device=device)
            )
            offset += a.shape[0] + s.shape[0]
        packed = PackedSequences.from_lengths(
            [a.shape[0] + s.shape[0] for a, s in zip(audio, slot_embeds, strict=True)], device=device
        )
        inputs_embeds = torch.cat(rows)[None]  # (1, ΣL, D)
        out = self.language_model(inputs_embeds, packed, output_hidden_states=output_hidden_states)
        text_states = out.last_hidden_state[:, torch.cat(text_index)]  # (1, ΣS, D)
        return GraniteSpeechNarModelOutput(
            last_hidden_state=text_states,
            seq_lengths=torch.tensor(slot_lengths, device=device),
            inserted_ctc_token_ids=slot_ids,
            hidden_states=out.hidden_states,
        )

    def forward(
        self,
        input_features: torch.Tensor | None = None,
        input_features_mask: torch.Tensor | None = None,
        audio_embeds: torch.Tensor | Sequence[torch.Tensor] | None = None,
        audio_lengths: torch.Tensor | None = None,
        input_ids: Sequence[torch.Tensor] | None = None,
        output_bpe_logits: bool = False,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        attention_mask: torch.Tensor | None = None,
        **kwargs,
    ) -> GraniteSpeechNarModelOutput | tuple:
        """Audio → draft → one editing pass.

        Either ``input_features`` (the draft comes from the BPE CTC head unless ``input_ids`` overrides
        it) or precomputed ``audio_embeds`` together with ``input_ids`` (a list of collapsed ids per
        utterance). ``attention_mask`` is accepted as the conventional name of ``input_features_mask``;
        ``output_hidden_states`` and ``return_dict`` default to the config's values.
        """
        _check_forward_kwargs("GraniteSpeechNarModel.forward", kwargs)
        input_features_mask = _feature_mask(input_features_mask, attention_mask)
        if output_hidden_states is None:
            output_hidden_states = self.config.output_hidden_states
        return_dict = self.config.return_dict if return_dict is None else return_dict
        if (input_features is None) == (audio_embeds is None):
            raise ValueError("pass exactly one of input_features and audio_embeds.")
        audio = None
        if input_features is not None:
            audio = self.encode_audio(
                input_features,
                input_features_mask,
                output_bpe_logits,
                output_hidden_states=output_hidden_states,
            )
            audio_embeds, audio_lengths = audio.audio_embeds, audio.audio_lengths
            if input_ids is None:
                input_ids = audio.draft_ids
        elif input_ids is None:
            raise ValueError(
                "audio_embeds need input_ids: the token ids to edit, one 1-D tensor per utterance."
            )
        out = self.edit(audio_embeds, audio_lengths, input_ids, output_hidden_states=output_hidden_states)
        if audio is not None:
            out.draft_ids = audio.draft_ids
            out.bpe_logits = audio.bpe_logits
            out.bpe_lengths = audio.bpe_lengths
            out.audio_embeds = audio.audio_embeds
            out.audio_lengths = audio.audio_lengths
            out.encoder_hidden_states = audio.encoder_hidden_states
        return out if return_dict else out.to_tuple()


class GraniteSpeechNarForCTC(GraniteSpeechNarPreTrainedModel):
    """Granite Speech NAR with the tied output head, the training losses and :meth:`generate`.

    The ``lm_head`` lives outside the language model and shares its weight with
    ``model.language_model.embed_tokens`` (the checkpoint stores no head).
    """

    _tied_weights_keys = {"lm_head.weight": "model.language_model.embed_tokens.weight"}
    # Tensor-parallel plan of the tied head, as GraniteForCausalLM has: it shares the embedding's weight,
    # which transformers shards.
    _tp_plan = {"lm_head": "colwise_gather_output"}

    def __init__(self, config: GraniteSpeechNarConfig):
        super().__init__(config)
        self.model = GraniteSpeechNarModel(config)
        self.lm_head = nn.Linear(config.text_config.hidden_size, config.text_config.vocab_size, bias=False)
        self.post_init()

    def get_input_embeddings(self) -> nn.Embedding:
        return self.model.language_model.embed_tokens

    def set_input_embeddings(self, value: nn.Embedding):
        self.model.language_model.embed_tokens = value

    def get_output_embeddings(self) -> nn.Linear:
        return self.lm_head

    def set_output_embeddings(self, value: nn.Linear):
        self.lm_head = value

    def slot_logits(self, states: torch.Tensor) -> torch.Tensor:
        """Editor states at the slot rows → logits: the tied ``lm_head``, then ``/ logits_scaling``."""
        return self.lm_head(states) / self.config.text_config.logits_scaling

    def forward(
        self,
        input_features: torch.Tensor | None = None,
        input_features_mask: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        label_lengths: torch.Tensor | None = None,
        audio_embeds: torch.Tensor | None = None,
        audio_lengths: torch.Tensor | None = None,
        input_ids: Sequence[torch.Tensor] | None = None,
        output_bpe_logits: bool = False,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        attention_mask: torch.Tensor | None = None,
        loss_closure: Callable[[GraniteSpeechNarForCTC], Any] | None = None,
        **kwargs,
    ) -> GraniteSpeechNarOutput | tuple:
        """One editing pass, and the training losses when ``labels`` are given (docs/reference_behaviour.md §5).

        Args:
            input_features: ``(B, T, 160)``; input_features_mask: ``(B, T)`` bool.
            labels: ``(B, S_max)`` reference token ids, right-padded with anything (negative values
                such as -100 are treated as padding when ``label_lengths`` is omitted). No blanks.
            label_lengths: ``(B,)`` true label lengths.
            audio_embeds, audio_lengths, input_ids: the precomputed-audio path of
                :meth:`GraniteSpeechNarModel.forward`.
            output_bpe_logits: return the flat encoder BPE logits (always computed for the encoder loss).
            loss_closure: ``loss_closure(model)`` is returned instead, with nothing else computed. A
                wrapper that must see a forward call (``DistributedDataParallel``, FSDP) can so run a
                training loss that needs more than ``forward`` (draft noise, weights, extra heads; see
                ``granite_nar.training.compute_nar_losses``).

        Returns packed slot logits ``(1, ΣS, V)`` (already divided by ``logits_scaling``) with their
        per-utterance lengths, and the losses.
        """
        if loss_closure is not None:
            return loss_closure(self)
        cfg = self.config
        _check_forward_kwargs("GraniteSpeechNarForCTC.forward", kwargs)
        input_features_mask = _feature_mask(input_features_mask, attention_mask)
        return_dict = cfg.return_dict if return_dict is None else return_dict
        want_encoder_loss = labels is not None and cfg.encoder_ctc_loss_lambda > 0
        out = self.model(
            input_features=input_features,
            input_features_mask=input_features_mask,
            audio_embeds=audio_embeds,
            audio_lengths=audio_lengths,
            input_ids=input_ids,
            output_bpe_logits=output_bpe_logits or want_encoder_loss,
            output_hidden_states=output_hidden_states,
            return_dict=True,
        )
        logits = self.slot_logits(out.last_hidden_state)  # (1, ΣS, V)
        seq_lengths = out.seq_lengths.tolist()

        losses = None
        if labels is not None:
            labels, label_lengths = check_labels(
                labels, label_lengths, len(seq_lengths), cfg.text_config.vocab_size, blank=cfg.blank_token_id
            )
            losses = nar_losses(
                labels,
                label_lengths,
                cfg.blank_token_id,
                slot_logits=logits[0],
                slot_lengths=seq_lengths,
                slot_ids=out.inserted_ctc_token_ids,
                ce_loss_lambda=cfg.ce_loss_lambda,
                bpe_logits=out.bpe_logits,
                bpe_lengths=out.bpe_lengths,
                encoder_ctc_loss_lambda=cfg.encoder_ctc_loss_lambda,
            )

        output = GraniteSpeechNarOutput(
            loss=None if losses is None else losses.loss,
            ctc_loss=None if losses is None else losses.ctc_loss,
            ce_loss=None if losses is None else losses.ce_loss,
            encoder_ctc_loss=None if losses is None else losses.encoder_ctc_loss,
            logits=logits,
            seq_lengths=out.seq_lengths,
            inserted_ctc_token_ids=out.inserted_ctc_token_ids,
            draft_ids=out.draft_ids,
            bpe_logits=out.bpe_logits if (output_bpe_logits or want_encoder_loss) else None,
            bpe_lengths=out.bpe_lengths,
            hidden_states=out.hidden_states,
        )
        return output if return_dict else output.to_tuple()

    @torch.no_grad()
    def generate(
        self,
        input_features: torch.Tensor | None = None,
        input_features_mask: torch.Tensor | None = None,
        num_editing_steps: int = 1,
        return_dict_in_generate: bool = False,
        audio_embeds: torch.Tensor | None = None,
        audio_lengths: torch.Tensor | None = None,
        input_ids: Sequence[torch.Tensor] | None = None,
        **kwargs,
    ) -> list[torch.Tensor] | GraniteSpeechNarGenerateOutput:
        """Transcribe: BPE-CTC draft, then ``num_editing_steps`` editing passes (docs/reference_behaviour.md §4).

        The encoder and projector run once; every step re-slots the previous step's output and reuses
        the audio embeddings. ``num_editing_steps=0`` returns the CTC drafts.

        Args:
            input_features: ``(B, T, 160)``; input_features_mask: ``(B, T)`` bool.
            audio_embeds, audio_lengths, input_ids: instead of features, precomputed audio embeddings
                and the hypotheses to edit (for experiments and benchmarks).

        Returns one 1-D LongTensor of token ids per utterance, or a
        :class:`GraniteSpeechNarGenerateOutput` with ``return_dict_in_generate=True``.
        """
        input_features_mask = _feature_mask(input_features_mask, kwargs.pop("attention_mask", None))
        if kwargs:
            raise TypeError(f"generate() got unexpected arguments: {sorted(kwargs)}.")
        if num_editing_steps < 0:
            raise ValueError(f"num_editing_steps must be >= 0, got {num_editing_steps}.")
        if input_features is not None:
            if audio_embeds is not None:
                raise ValueError("pass exactly one of input_features and audio_embeds.")
            audio = self.model.encode_audio(input_features, input_features_mask)
            audio_embeds, audio_lengths, drafts = audio.audio_embeds, audio.audio_lengths, audio.draft_ids
            if input_ids is not None:
                drafts = [torch.as_tensor(t, dtype=torch.long) for t in input_ids]
        elif audio_embeds is not None and input_ids is not None:
            drafts = [torch.as_tensor(t, dtype=torch.long) for t in input_ids]
        else:
            raise ValueError("pass input_features, or audio_embeds together with input_ids.")

        hypotheses, steps = drafts, []
        logits_list, seq_lengths = None, None
        for _ in range(num_editing_steps):
            out = self.model.edit(audio_embeds, audio_lengths, hypotheses)
            logits = self.slot_logits(out.last_hidden_state)[0]  # (ΣS, V)
            seq_lengths = out.seq_lengths
            hypotheses = ctc_greedy_decode(logits, seq_lengths.tolist(), self.config.blank_token_id)
            logits_list = list(logits.split(seq_lengths.tolist()))
            steps.append(hypotheses)
        if not return_dict_in_generate:
            return hypotheses
        return GraniteSpeechNarGenerateOutput(
            sequences=hypotheses,
            draft_ids=drafts,
            logits=logits_list,
            seq_lengths=seq_lengths,
            step_sequences=steps,
        )
