"""Bidirectional Granite editor over packed utterances (docs/reference_behaviour.md §3.3, §11.4).

The editor is a standard Granite decoder (``transformers.models.granite``: RMSNorm, RoPE, GQA
attention, SwiGLU MLP, the four Granite multipliers) with two differences:

* attention is **not causal**: every row of an utterance sees every other row of it;
* all utterances of a batch are packed into one ``(1, ΣL, D)`` row. Each utterance attends only
  to itself (block-diagonal attention) and its positions restart at 0.

No backend builds a dense ``ΣL × ΣL`` mask: flash-attn runs varlen over ``cu_seqlens``; SDPA and
eager attention run one call per utterance on its slice of the packed row.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS
from transformers.models.granite.modeling_granite import (
    GraniteAttention,
    GraniteDecoderLayer,
    GranitePreTrainedModel,
    GraniteRMSNorm,
    GraniteRotaryEmbedding,
    apply_rotary_pos_emb,
    eager_attention_forward,
)
from transformers.utils import ModelOutput

from .configuration_granite_speech_nar import GraniteSpeechNarTextConfig

__all__ = ["GraniteSpeechNarEditor", "PackedSequences"]


@dataclass
class PackedSequences:
    """Bookkeeping of utterances packed into one row.

    Args:
        lengths: python list of per-utterance lengths ``L_b``.
        cu_seqlens: ``(B + 1,)`` int32 cumulative lengths starting at 0 (flash-attn varlen layout).
        position_ids: ``(1, ΣL)`` positions restarting at 0 for each utterance.
    """

    lengths: list[int]
    cu_seqlens: torch.Tensor
    position_ids: torch.Tensor

    @classmethod
    def from_lengths(
        cls, lengths: Sequence[int], device: torch.device | str | None = None
    ) -> PackedSequences:
        lengths = [int(n) for n in lengths]
        if any(n <= 0 for n in lengths):
            raise ValueError(f"every packed sequence needs at least one row, got lengths {lengths}.")
        lens = torch.tensor(lengths, dtype=torch.int32, device=device)
        cu_seqlens = torch.nn.functional.pad(lens.cumsum(0, dtype=torch.int32), (1, 0))
        starts = torch.repeat_interleave(cu_seqlens[:-1].long(), lens.long())
        position_ids = torch.arange(int(cu_seqlens[-1]), device=device) - starts
        return cls(lengths=lengths, cu_seqlens=cu_seqlens, position_ids=position_ids[None, :])

    @property
    def max_length(self) -> int:
        return max(self.lengths)


class GraniteSpeechNarEditorAttention(GraniteAttention):
    """Granite GQA attention without the causal mask, block-diagonal over packed utterances."""

    def __init__(self, config: GraniteSpeechNarTextConfig, layer_idx: int):
        super().__init__(config, layer_idx)
        self.is_causal = False

    def forward(
        self,
        hidden_states: torch.Tensor,
        position_embeddings: tuple[torch.Tensor, torch.Tensor],
        packed: PackedSequences | None = None,
        **kwargs,
    ) -> tuple[torch.Tensor, None]:
        """``(1, ΣL, D)`` → ``(1, ΣL, D)``; ``packed`` describes the utterances (``None``: one sequence)."""
        input_shape = hidden_states.shape[:-1]
        hidden_shape = (*input_shape, -1, self.head_dim)
        query = self.q_proj(hidden_states).view(hidden_shape).transpose(1, 2)  # (1, H, ΣL, d)
        key = self.k_proj(hidden_states).view(hidden_shape).transpose(1, 2)  # (1, H_kv, ΣL, d)
        value = self.v_proj(hidden_states).view(hidden_shape).transpose(1, 2)
        cos, sin = position_embeddings
        query, key = apply_rotary_pos_emb(query, key, cos, sin)

        implementation = self.config._attn_implementation or "sdpa"
        interface = ALL_ATTENTION_FUNCTIONS.get_interface(implementation, eager_attention_forward)
        common = {"dropout": self.attention_dropout if self.training else 0.0, "scaling": self.scaling}
        if packed is None or len(packed.lengths) == 1:
            out, _ = interface(self, query, key, value, None, is_causal=False, **common)
        elif implementation.startswith("flash_attention") or implementation.startswith("kernels-community"):
            out, _ = interface(
                self,
                query,
                key,
                value,
                None,
                is_causal=False,
                cu_seq_lens_q=packed.cu_seqlens,
                cu_seq_lens_k=packed.cu_seqlens,
                max_length_q=packed.max_length,
                max_length_k=packed.max_length,
                **common,
            )
        else:
            # One dense call per utterance: exact block-diagonal attention with no ΣL × ΣL mask.
            pieces = zip(
                query.split(packed.lengths, dim=2),
                key.split(packed.lengths, dim=2),
                value.split(packed.lengths, dim=2),
                strict=True,
            )
            out = torch.cat(
                [interface(self, q, k, v, None, is_causal=False, **common)[0] for q, k, v in pieces], dim=1
            )  # (1, ΣL, H, d)
        out = self.o_proj(out.reshape(*input_shape, -1).contiguous())
        return out, None


class GraniteSpeechNarEditorLayer(GraniteDecoderLayer):
    """Granite decoder layer (residual multiplier, RMSNorms, SwiGLU) with bidirectional attention."""

    def __init__(self, config: GraniteSpeechNarTextConfig, layer_idx: int):
        super().__init__(config, layer_idx)
        self.self_attn = GraniteSpeechNarEditorAttention(config, layer_idx)


@dataclass
class GraniteSpeechNarEditorOutput(ModelOutput):
    last_hidden_state: torch.Tensor | None = None
    hidden_states: tuple[torch.Tensor, ...] | None = None


class GraniteSpeechNarEditor(GranitePreTrainedModel):
    """The editor: Granite decoder stack run without a causal mask on packed utterances.

    Tensor names match ``GraniteModel`` (``embed_tokens``, ``layers.N.*``, ``norm``) so the weights of a
    Granite language model load unchanged.
    """

    config_class = GraniteSpeechNarTextConfig
    _no_split_modules = ["GraniteSpeechNarEditorLayer"]
    _can_record_outputs = None

    def __init__(self, config: GraniteSpeechNarTextConfig):
        super().__init__(config)
        self.embed_tokens = nn.Embedding(config.vocab_size, config.hidden_size, config.pad_token_id)
        self.layers = nn.ModuleList(
            [GraniteSpeechNarEditorLayer(config, idx) for idx in range(config.num_hidden_layers)]
        )
        self.norm = GraniteRMSNorm(config.hidden_size, eps=config.rms_norm_eps)
        self.rotary_emb = GraniteRotaryEmbedding(config=config)
        self.embedding_multiplier = config.embedding_multiplier
        self.post_init()

    def forward(
        self,
        inputs_embeds: torch.Tensor,
        packed: PackedSequences | None = None,
        output_hidden_states: bool = False,
    ) -> GraniteSpeechNarEditorOutput:
        """Args:
        inputs_embeds: ``(1, ΣL, D)`` packed rows (audio embeddings and slot token embeddings); they
            are multiplied by ``embedding_multiplier`` here, on every row (docs/reference_behaviour.md §3.3).
        packed: lengths and positions of the utterances; ``None`` treats the row as one utterance.

        Returns the final-norm hidden states ``(1, ΣL, D)``.
        """
        if packed is None:
            packed = PackedSequences.from_lengths([inputs_embeds.shape[1]], device=inputs_embeds.device)
        if inputs_embeds.shape[0] != 1 or inputs_embeds.shape[1] != packed.cu_seqlens[-1]:
            raise ValueError(
                f"inputs_embeds must be one packed row of {int(packed.cu_seqlens[-1])} positions, got shape "
                f"{tuple(inputs_embeds.shape)}."
            )
        hidden_states = inputs_embeds * self.embedding_multiplier
        position_embeddings = self.rotary_emb(hidden_states, packed.position_ids)
        all_hidden = [hidden_states] if output_hidden_states else None
        for layer in self.layers:  # GradientCheckpointingLayer: checkpointed when enabled on the model
            hidden_states = layer(hidden_states, position_embeddings=position_embeddings, packed=packed)
            if output_hidden_states:
                all_hidden.append(hidden_states)
        hidden_states = self.norm(hidden_states)
        return GraniteSpeechNarEditorOutput(
            last_hidden_state=hidden_states, hidden_states=tuple(all_hidden) if output_hidden_states else None
        )
