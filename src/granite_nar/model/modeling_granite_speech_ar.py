"""Autoregressive counterpart of Granite Speech NAR, built from the same parts (docs/reference_behaviour.md §11.7).

Same conformer encoder and windowed Q-Former projector classes as the NAR model (imported, not
copied), followed by a *causal* Granite language model (``transformers.GraniteModel``) with its own
``lm_head`` and transformers' ``GenerationMixin`` with a KV cache. It exists so that the NAR editor
can be compared, in speed and accuracy, with ordinary autoregressive decoding at identical sizes.

Data flow for a batch of ``B`` utterances::

    input_features (B, T, 160) ── encoder ── 4 hidden states (B, T, 4096) ── projector ── /12 ── audio (B, A_max, 2048)
    per utterance, LEFT-padded to a common length:
        [ pad … pad | audio_b (A_b = T_b // 5 rows) | <start> | y_1 … y_n ]  ── causal Granite LM (×12 on all rows)
                                                                     └─ lm_head / 8 ── next token … until EOS

``<start>`` and EOS are both ``<|end_of_text|>`` (``text_config.bos_token_id`` / ``eos_token_id``),
as in Granite's own LMs. The BPE CTC head of the NAR encoder is not used.

Batching choice — left padding. Every prompt ``[audio_b ; <start>]`` is right-aligned, so all
utterances produce their next token at the same column and the KV cache grows by one column per
step for the whole batch. The ``attention_mask`` hides the padding columns and the position ids
are ``cumsum(attention_mask) - 1`` (computed by ``GenerationMixin``), so an utterance sees the same
rows at the same RoPE positions as when it is alone: batched and one-by-one greedy decoding give
the same tokens. (Packing would avoid the padding rows but has no standard KV-cache layout.)
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from huggingface_hub.dataclasses import strict
from torch import nn
from transformers import GenerationMixin, GraniteModel
from transformers.cache_utils import Cache
from transformers.modeling_outputs import CausalLMOutputWithPast

from ..lengths import lengths_from_mask, lengths_to_mask, num_audio_tokens, num_bpe_windows
from .configuration_granite_speech_nar import GraniteSpeechNarConfig
from .ctc import check_labels
from .modeling_audio import GraniteSpeechAudioPreTrainedModel, check_input_features, project_audio
from .modeling_encoder import GraniteSpeechNarEncoder
from .modeling_projector import GraniteSpeechNarProjector

__all__ = [
    "GraniteSpeechArConfig",
    "GraniteSpeechArPreTrainedModel",
    "GraniteSpeechArForConditionalGeneration",
]


@strict
class GraniteSpeechArConfig(GraniteSpeechNarConfig):
    r"""Configuration of :class:`GraniteSpeechArForConditionalGeneration`.

    The same fields as :class:`GraniteSpeechNarConfig` (so one config describes both decoders at identical
    sizes); only ``model_type`` differs, so that a saved AR checkpoint loads back as the AR model. The
    editing fields (``blank_token_id``, ``min_edit_sequence_length``, the CTC loss weights) are unused.
    """

    model_type = "granite_speech_ar"

    @classmethod
    def from_nar_config(cls, config: GraniteSpeechNarConfig) -> GraniteSpeechArConfig:
        """The AR configuration with the sizes of a NAR configuration."""
        fields = ("blank_token_id", "min_edit_sequence_length", "scale_projected_embeddings")
        ar_config = cls(
            encoder_config=config.encoder_config.to_dict(),
            projector_config=config.projector_config.to_dict(),
            text_config=config.text_config.to_dict(),
            tie_word_embeddings=config.tie_word_embeddings,
            initializer_range=config.initializer_range,
            **{name: getattr(config, name) for name in fields},
        )
        ar_config.text_config._attn_implementation = config.text_config._attn_implementation
        return ar_config


class GraniteSpeechArPreTrainedModel(GraniteSpeechAudioPreTrainedModel):
    """The audio side's initialisation and buffer handling; loads native AR checkpoints (``save_pretrained``
    output). To start from NAR weights, load the NAR model and use
    :meth:`GraniteSpeechArForConditionalGeneration.from_nar`."""

    config: GraniteSpeechArConfig
    config_class = GraniteSpeechArConfig
    base_model_prefix = "model"
    _no_split_modules = ["GraniteSpeechNarConformerBlock", "GraniteDecoderLayer"]


class GraniteSpeechArForConditionalGeneration(GraniteSpeechArPreTrainedModel, GenerationMixin):
    """Encoder + projector + causal Granite LM with a (tied by default) ``lm_head``; greedy ``generate``.

    Attributes ``encoder`` / ``projector`` are the NAR model's classes; ``language_model`` is a
    ``transformers.GraniteModel`` (causal attention, KV cache) whose tensor names equal the NAR editor's,
    so :meth:`from_nar` copies the weights one to one.
    """

    _tied_weights_keys = {"lm_head.weight": "language_model.embed_tokens.weight"}
    _tp_plan = {"lm_head": "colwise_gather_output"}
    # What GenerationMixin decodes; the audio prompt reaches it as ``inputs_embeds`` (see :meth:`generate`).
    main_input_name = "input_ids"

    def __init__(self, config: GraniteSpeechArConfig):
        super().__init__(config)
        self.encoder = GraniteSpeechNarEncoder(config.encoder_config)
        self.projector = GraniteSpeechNarProjector(config.projector_config, config.encoder_config.hidden_dim)
        # GraniteSpeechNarTextConfig is a GraniteConfig with the released editor's defaults.
        self.language_model = GraniteModel(config.text_config)
        self.lm_head = nn.Linear(config.text_config.hidden_size, config.text_config.vocab_size, bias=False)
        self.post_init()

    def get_input_embeddings(self) -> nn.Embedding:
        return self.language_model.embed_tokens

    def set_input_embeddings(self, value: nn.Embedding):
        self.language_model.embed_tokens = value

    def get_output_embeddings(self) -> nn.Linear:
        return self.lm_head

    def set_output_embeddings(self, value: nn.Linear):
        self.lm_head = value

    # -- building from the NAR model ---------------------------------------------------------------------
    @classmethod
    def from_nar(
        cls, nar_model: nn.Module, share_weights: bool = False
    ) -> GraniteSpeechArForConditionalGeneration:
        """An AR model with the sizes of ``nar_model`` (a :class:`GraniteSpeechNarForCTC`) and its weights.

        Encoder, projector and language model (embeddings, layers, final norm) are copied one to one; the
        output head is the NAR's tied head. The NAR BPE head (``out_bpe``) has no AR counterpart.

        Args:
            share_weights: alias the NAR tensors instead of copying them (no extra memory; meant for
                side-by-side benchmarks — training either model then changes both).
        """
        config = GraniteSpeechArConfig.from_nar_config(nar_model.config)
        config._attn_implementation = nar_model.config._attn_implementation
        nar = nar_model.model
        state = {}
        for prefix, module in (
            ("encoder.", nar.encoder),
            ("projector.", nar.projector),
            ("language_model.", nar.language_model),
        ):
            for name, tensor in module.state_dict().items():
                state[prefix + name] = tensor if share_weights else tensor.detach().clone()
        head = nar_model.get_output_embeddings().weight
        tied = head is nar.language_model.embed_tokens.weight and config.tie_word_embeddings
        if not tied:  # a separately trained head stays separate
            state["lm_head.weight"] = head if share_weights else head.detach().clone()
            config.tie_word_embeddings = config.text_config.tie_word_embeddings = False
        with torch.device("meta"):
            model = cls(config)
        missing, unexpected = model.load_state_dict(state, strict=False, assign=True)
        missing = set(missing) - ({"lm_head.weight"} if tied else set())
        if missing or unexpected:
            raise RuntimeError(
                f"NAR → AR weight mapping is incomplete: missing {sorted(missing)}, unexpected {sorted(unexpected)}."
            )
        device = head.device
        model.materialize_buffers(device)
        if tied:
            model.lm_head.weight = model.language_model.embed_tokens.weight
        return model.train(nar_model.training)

    # -- audio side ----------------------------------------------------------------------------------------
    def get_audio_features(
        self, input_features: torch.Tensor, input_features_mask: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Encoder + projector, exactly as in the NAR model (docs/reference_behaviour.md §3.1–§3.2).

        Args:
            input_features: ``(B, T, input_dim)`` stacked log-mel frames.
            input_features_mask: ``(B, T)`` bool right-padding mask (``None``: all frames valid).

        Returns ``audio_embeds`` ``(B, A_max, D)`` (right-padded, divided by ``embedding_multiplier`` when
        ``scale_projected_embeddings``) and ``audio_lengths`` ``(B,)`` = ``T_b // downsample_rate``.
        """
        frame_lengths = check_input_features(self.config, input_features, input_features_mask)
        audio_lengths = num_audio_tokens(frame_lengths, self.config.projector_config.downsample_rate)
        short = (audio_lengths == 0).nonzero().flatten().tolist()
        if short:
            raise ValueError(f"utterances {short} are shorter than one audio token (100 ms).")
        enc = self.encoder(input_features, lengths_to_mask(frame_lengths, input_features.shape[1]))
        return project_audio(
            self.projector,
            self.config,
            enc.projector_input,
            frame_lengths,
            self.language_model.embed_tokens.weight.dtype,
        )

    def build_inputs(
        self,
        audio_embeds: torch.Tensor,
        audio_lengths: torch.Tensor,
        text_ids: torch.Tensor | None = None,
        text_lengths: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Left-padded ``[audio_b ; <start> ; text_b]`` rows for the causal LM.

        Args:
            audio_embeds: ``(B, A_max, D)`` right-padded audio embeddings; ``audio_lengths``: ``(B,)``.
            text_ids: ``(B, N_max)`` token ids following the start token (teacher forcing), right-padded;
                ``text_lengths`` ``(B,)`` their lengths. ``None``: the generation prompt (start token only).

        Returns ``inputs_embeds`` ``(B, A_max + 1 + N_max, D)`` and ``attention_mask`` of the same length.
        The audio is right-aligned at column ``A_max`` (left padding) so the start token of every
        utterance sits at column ``A_max``; teacher-forced text is right-padded after it (causal
        attention never lets a real row see those padding rows).
        """
        bsz, a_max, _ = audio_embeds.shape
        device = audio_embeds.device
        audio_lengths = torch.as_tensor(audio_lengths, device=device).long()
        start = torch.full((bsz, 1), self.config.text_config.bos_token_id, dtype=torch.long, device=device)
        if text_ids is None:
            text_ids, text_mask = start, torch.ones_like(start, dtype=torch.bool)
        else:
            text_lengths = torch.as_tensor(text_lengths, device=device).long()
            text_mask = lengths_to_mask(text_lengths + 1, text_ids.shape[1] + 1)  # (B, 1 + N_max)
            pad = self.config.text_config.pad_token_id or 0
            text_ids = torch.cat([start, text_ids.to(device).masked_fill(~text_mask[:, 1:], pad)], dim=1)
        # Right-align the audio: column j of utterance b holds audio row j - (A_max - A_b).
        source = torch.arange(a_max, device=device)[None, :] - (a_max - audio_lengths)[:, None]  # (B, A_max)
        audio_mask = source >= 0
        audio = audio_embeds.gather(1, source.clamp_min(0)[..., None].expand(-1, -1, audio_embeds.shape[-1]))
        audio = torch.where(audio_mask[..., None], audio, torch.zeros_like(audio))  # (B, A_max, D)
        text = self.language_model.embed_tokens(text_ids)  # (B, 1 + N_max, D)
        inputs_embeds = torch.cat([audio.to(text.dtype), text], dim=1)
        attention_mask = torch.cat([audio_mask, text_mask], dim=1).long()
        return inputs_embeds, attention_mask

    # -- causal LM -----------------------------------------------------------------------------------------
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        input_features: torch.Tensor | None = None,
        input_features_mask: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        past_key_values: Cache | None = None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        label_lengths: torch.Tensor | None = None,
        use_cache: bool | None = None,
        logits_to_keep: int = 0,
        **kwargs,
    ) -> CausalLMOutputWithPast:
        """Teacher-forced training pass, or one causal-LM step of generation.

        Two ways to call it:

        * ``input_features`` ``(B, T, 160)`` (+ ``input_features_mask`` ``(B, T)``): runs the encoder and
          projector and builds the left-padded rows of :meth:`build_inputs`. With ``labels`` ``(B, S_max)``
          (reference ids, right-padded; ``label_lengths`` ``(B,)``, or negative values such as -100 as
          padding) it teacher-forces ``[audio ; <start> ; labels]`` and returns the cross-entropy of
          predicting ``labels`` followed by EOS, averaged over all target tokens of the batch; ``logits``
          are then ``(B, S_max + 1, V)`` at the start-token and label rows (row ``i`` predicts target
          ``i``). Without ``labels`` it runs the generation prompt and returns the logits of its last row.
        * ``inputs_embeds`` or ``input_ids`` ``(B, S)`` with ``attention_mask`` ``(B, past + S)``,
          ``position_ids`` and ``past_key_values``: a plain causal-LM step (what ``generate`` calls).

        Logits are divided by ``logits_scaling`` as in Granite.
        """
        kwargs.pop("return_dict", None)
        if input_features is not None:
            if input_ids is not None or inputs_embeds is not None:
                raise ValueError("pass input_features, or input_ids / inputs_embeds, not both.")
            return self._forward_audio(
                input_features,
                input_features_mask,
                labels,
                label_lengths,
                use_cache,
                logits_to_keep,
                **kwargs,
            )
        if labels is not None:
            raise ValueError("labels need input_features (the loss is teacher-forced from the audio).")
        out = self.language_model(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids,
            past_key_values=past_key_values,
            inputs_embeds=inputs_embeds,
            use_cache=use_cache,
            **kwargs,
        )
        hidden = out.last_hidden_state
        if logits_to_keep:
            hidden = hidden[:, -logits_to_keep:]
        return CausalLMOutputWithPast(
            logits=self._logits(hidden), past_key_values=out.past_key_values, hidden_states=out.hidden_states
        )

    def _logits(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.lm_head(hidden_states) / self.config.text_config.logits_scaling

    def _forward_audio(
        self, input_features, input_features_mask, labels, label_lengths, use_cache, logits_to_keep, **kwargs
    ):
        audio_embeds, audio_lengths = self.get_audio_features(input_features, input_features_mask)
        a_max = audio_embeds.shape[1]
        if labels is not None:
            labels, label_lengths = check_labels(
                labels, label_lengths, audio_embeds.shape[0], self.config.text_config.vocab_size
            )
        inputs_embeds, attention_mask = self.build_inputs(audio_embeds, audio_lengths, labels, label_lengths)
        position_ids = (attention_mask.cumsum(-1) - 1).masked_fill(attention_mask == 0, 0)
        out = self.language_model(
            inputs_embeds=inputs_embeds,
            attention_mask=attention_mask,
            position_ids=position_ids,
            use_cache=bool(use_cache),
            **kwargs,
        )
        if labels is None:
            hidden = out.last_hidden_state[:, -(logits_to_keep or 1) :]
            return CausalLMOutputWithPast(logits=self._logits(hidden), past_key_values=out.past_key_values)
        # Rows A_max .. A_max + S_max: the start token and the labels; row i predicts target i.
        logits = self._logits(out.last_hidden_state[:, a_max:])  # (B, S_max + 1, V)
        targets = torch.cat([labels, labels.new_full((labels.shape[0], 1), -100)], dim=1)  # (B, S_max + 1)
        targets = targets.masked_fill(~lengths_to_mask(label_lengths, targets.shape[1]), -100)
        targets[torch.arange(targets.shape[0], device=targets.device), label_lengths] = (
            self.config.text_config.eos_token_id
        )
        loss = F.cross_entropy(logits.float().flatten(0, 1), targets.flatten(), ignore_index=-100)
        return CausalLMOutputWithPast(loss=loss, logits=logits, past_key_values=out.past_key_values)

    # -- generation ----------------------------------------------------------------------------------------
    def prepare_inputs_for_generation(
        self,
        input_ids: torch.LongTensor,
        past_key_values: Cache | None = None,
        attention_mask: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        is_first_iteration: bool | None = False,
        **kwargs,
    ) -> dict:
        """The prompt (audio embeddings + start token) exists only as ``inputs_embeds``: it is fed once, on
        the prefill step, when the cache is still empty. Every later step feeds only the newest token id at
        its position; everything before it is read from the KV cache. Audio features are never re-encoded."""
        # transformers >= 5.24 passes the cache as ``cache``; earlier versions as ``past_key_values``.
        cache = kwargs.get("cache", past_key_values)
        cache_empty = cache is None or cache.get_seq_length() == 0
        first = bool(is_first_iteration) or cache_empty
        if first and inputs_embeds is None and input_ids.shape[1] == 0:
            raise ValueError("generation needs a prompt: pass input_features (or inputs_embeds).")
        for name in ("input_features", "input_features_mask"):
            if kwargs.pop(name, None) is not None:
                raise ValueError(f"{name} must go through generate(), which encodes the audio once.")
        if past_key_values is not None:
            kwargs["past_key_values"] = past_key_values
        return super().prepare_inputs_for_generation(
            input_ids,
            attention_mask=attention_mask,
            inputs_embeds=inputs_embeds if first else None,
            is_first_iteration=first,
            **kwargs,
        )

    @torch.no_grad()
    def generate(
        self,
        input_features: torch.Tensor | None = None,
        input_features_mask: torch.Tensor | None = None,
        generation_config=None,
        **kwargs,
    ):
        """Transcribe with ``GenerationMixin.generate`` (greedy unless a ``generation_config`` says otherwise).

        Args:
            input_features: ``(B, T, 160)``; input_features_mask: ``(B, T)`` bool right-padding mask.
            **kwargs: any ``generate`` argument (``max_new_tokens``, ``min_new_tokens``,
                ``return_dict_in_generate`` …). Without ``max_new_tokens`` / ``max_length`` the limit is one
                token per 80 ms BPE window of the longest utterance plus EOS — the CTC draft's own bound.

        The encoder and projector run once; the prompt ``[audio ; <start>]`` is left-padded
        (see the module docstring) and fed as ``inputs_embeds``. Returns the new tokens only,
        ``(B, n_new)`` (finished rows padded with ``pad_token_id``), or a ``GenerateOutput``.
        """
        if input_features is None:
            return super().generate(generation_config=generation_config, **kwargs)
        for name in ("input_ids", "inputs_embeds", "attention_mask"):
            if kwargs.get(name) is not None:
                raise ValueError(f"generate() builds {name} from input_features; do not pass it.")
        audio_embeds, audio_lengths = self.get_audio_features(input_features, input_features_mask)
        inputs_embeds, attention_mask = self.build_inputs(audio_embeds, audio_lengths)
        limits = ("max_new_tokens", "max_length")
        if not any(kwargs.get(k) is not None for k in limits) and (
            generation_config is None or generation_config.max_new_tokens is None
        ):
            frames = lengths_from_mask(input_features_mask, *input_features.shape[:2], input_features.device)
            kwargs["max_new_tokens"] = (
                int(num_bpe_windows(frames.max(), self.config.encoder_config.pooling_window)) + 1
            )
        return super().generate(
            inputs_embeds=inputs_embeds,
            attention_mask=attention_mask,
            generation_config=generation_config,
            **kwargs,
        )
