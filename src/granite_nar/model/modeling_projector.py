"""Windowed Q-Former projector (docs/reference_behaviour.md §3.2), in the native layout of docs/reference_behaviour.md §6.4 / §11.1.

Encoder frames (20 ms) are cut into 15-frame windows (300 ms); each window is summarised by 3 queries
(100 ms per audio token) that cross-attend to the window's frames. No query self-attention, no mask.

The released checkpoint's projector LayerNorms all have identity affine parameters, so the native
layout drops them (``elementwise_affine=False``); the checkpoint loaders verify that before dropping.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from transformers.activations import ACT2FN

from ..lengths import num_audio_tokens
from .configuration_granite_speech_nar import GraniteSpeechNarProjectorConfig

__all__ = ["GraniteSpeechNarProjector"]


class GraniteSpeechNarQFormerCrossAttention(nn.Module):
    """Multi-head cross-attention from the window queries to the window frames (scale ``d ** -0.5``)."""

    def __init__(self, config: GraniteSpeechNarProjectorConfig):
        super().__init__()
        hidden = config.hidden_size
        self.config = config
        self.num_heads = config.num_attention_heads
        self.head_dim = hidden // self.num_heads
        self.q_proj = nn.Linear(hidden, hidden, bias=config.attention_bias)
        self.k_proj = nn.Linear(hidden, hidden, bias=config.attention_bias)
        self.v_proj = nn.Linear(hidden, hidden, bias=config.attention_bias)
        self.o_proj = nn.Linear(hidden, hidden, bias=config.attention_bias)

    def forward(self, queries: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        """``queries`` ``(N, Q, D)``, ``context`` ``(N, W, D)`` → ``(N, Q, D)``."""
        n, num_q, _ = queries.shape
        q = self.q_proj(queries).view(n, num_q, self.num_heads, self.head_dim).transpose(1, 2)  # (N, H, Q, d)
        k = self.k_proj(context).view(n, -1, self.num_heads, self.head_dim).transpose(1, 2)  # (N, H, W, d)
        v = self.v_proj(context).view(n, -1, self.num_heads, self.head_dim).transpose(1, 2)
        if self.config._attn_implementation == "eager":
            weights = (torch.matmul(q, k.transpose(-1, -2)) * self.head_dim**-0.5).softmax(dim=-1)
            out = torch.matmul(weights, v)  # (N, H, Q, d)
        else:  # 3 queries over 15 frames: every other backend choice runs sdpa
            out = F.scaled_dot_product_attention(q, k, v)  # (N, H, Q, d)
        return self.o_proj(out.transpose(1, 2).reshape(n, num_q, -1))


class GraniteSpeechNarQFormerMLP(nn.Module):
    def __init__(self, config: GraniteSpeechNarProjectorConfig):
        super().__init__()
        self.fc1 = nn.Linear(config.hidden_size, config.intermediate_size)
        self.fc2 = nn.Linear(config.intermediate_size, config.hidden_size)
        self.act = ACT2FN[config.hidden_act]

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(hidden_states)))


class GraniteSpeechNarQFormerLayer(nn.Module):
    """Pre-norm cross-attention + MLP; the key/value source is neither normalised nor updated."""

    def __init__(self, config: GraniteSpeechNarProjectorConfig):
        super().__init__()
        self.input_layernorm = nn.LayerNorm(
            config.hidden_size, eps=config.layer_norm_eps, elementwise_affine=False
        )
        self.cross_attn = GraniteSpeechNarQFormerCrossAttention(config)
        self.post_attention_layernorm = nn.LayerNorm(
            config.hidden_size, eps=config.layer_norm_eps, elementwise_affine=False
        )
        self.mlp = GraniteSpeechNarQFormerMLP(config)

    def forward(self, queries: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        queries = queries + self.cross_attn(self.input_layernorm(queries), context)
        return queries + self.mlp(self.post_attention_layernorm(queries))


class GraniteSpeechNarQFormer(nn.Module):
    """Window Q-Former: mean-seeded learned queries, window positions on the keys/values only."""

    def __init__(self, config: GraniteSpeechNarProjectorConfig):
        super().__init__()
        self.window_size = config.window_size
        self.downsample_rate = config.downsample_rate
        self.num_queries = config.num_queries
        self.queries = nn.Parameter(torch.zeros(1, self.num_queries, config.hidden_size))
        self.pos_emb = nn.Parameter(torch.zeros(1, self.window_size, config.hidden_size))
        self.layers = nn.ModuleList(
            [GraniteSpeechNarQFormerLayer(config) for _ in range(config.num_hidden_layers)]
        )
        self.norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps, elementwise_affine=False)
        self.linear = nn.Linear(config.hidden_size, config.hidden_size)

    def forward(self, windows: torch.Tensor) -> torch.Tensor:
        """``(N, window_size, D)`` windows → ``(N, num_queries, D)``."""
        n, _, dim = windows.shape
        # Each query is seeded with the mean of its 5 frames: frames 0-4, 5-9, 10-14.
        seeds = windows.view(n, self.num_queries, self.downsample_rate, dim).mean(dim=2)  # (N, 3, D)
        queries = self.queries + seeds
        context = windows + self.pos_emb
        for layer in self.layers:
            queries = layer(queries, context)
        return self.linear(self.norm(queries))


class GraniteSpeechNarProjector(nn.Module):
    """Concatenated encoder hidden states ``(B, T, 4 * 1024)`` → audio embeddings ``(B, ceil(T/15)*3, 2048)``."""

    def __init__(self, config: GraniteSpeechNarProjectorConfig, encoder_hidden_dim: int):
        super().__init__()
        if config.encoder_hidden_size is None or config.encoder_hidden_size % encoder_hidden_dim:
            raise ValueError(
                f"projector_config.encoder_hidden_size ({config.encoder_hidden_size}) must be a multiple of "
                f"the encoder hidden_dim ({encoder_hidden_dim}); build it through GraniteSpeechNarConfig."
            )
        self.config = config
        self.num_chunks = config.encoder_hidden_size // encoder_hidden_dim
        # One non-affine LayerNorm over each encoder layer's chunk (the original per-chunk LayerNorms have
        # identity affines, so a single parameter-free one is the same computation).
        self.norm = nn.LayerNorm(encoder_hidden_dim, eps=config.layer_norm_eps, elementwise_affine=False)
        self.proj = nn.Linear(config.encoder_hidden_size, config.hidden_size)
        self.qformer = GraniteSpeechNarQFormer(config)

    def forward(self, encoder_states: torch.Tensor, frame_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Args:
        encoder_states: ``(B, T, encoder_hidden_size)``.
        frame_mask: ``(B, T)`` bool; frames past an utterance's end are zeroed before windowing so
            that its last window sees the same zero padding as when it is alone (docs/reference_behaviour.md §11.3).

        Returns ``(B, ceil(T / window_size) * num_queries, hidden_size)``; an utterance of ``T_b``
        frames uses only the first ``T_b // downsample_rate`` rows.
        """
        if frame_mask is not None and not bool(frame_mask.all()):
            return self._forward_needed_windows(encoder_states, frame_mask)
        bsz, num_frames, width = encoder_states.shape
        chunks = encoder_states.view(bsz, num_frames, self.num_chunks, width // self.num_chunks)
        hidden = self.norm(chunks).view(bsz, num_frames, width)
        hidden = F.gelu(self.proj(hidden))  # exact erf GELU
        window = self.config.window_size
        pad = -num_frames % window
        hidden = F.pad(hidden, (0, 0, 0, pad))  # zero padding after the GELU, as in the reference
        windows = hidden.view(-1, window, hidden.shape[-1])  # (B * nb, 15, D)
        out = self.qformer(windows)  # (B * nb, 3, D)
        return out.view(bsz, -1, out.shape[-1])  # (B, nb * 3, D)

    def _forward_needed_windows(self, encoder_states: torch.Tensor, frame_mask: torch.Tensor) -> torch.Tensor:
        """:meth:`forward` for a batch with padding, computing only the windows that hold an audio token.

        Windows are independent, so each utterance's first ``ceil((T_b // downsample_rate) / num_queries)``
        windows are gathered from its own frames (frames past ``T_b`` become the zeros the reference pads
        with), run together, and put back in place; the rows of other windows are zero and unused. A
        mixed-length batch then costs its utterances' windows, not ``B`` times the longest.
        """
        bsz, num_frames, width = encoder_states.shape
        window, queries = self.config.window_size, self.qformer.num_queries
        num_windows = -(num_frames // -window)
        lengths = frame_mask.sum(dim=1)
        tokens = num_audio_tokens(lengths, self.config.downsample_rate)
        needed = torch.arange(num_windows, device=frame_mask.device)[None, :] < -(tokens[:, None] // -queries)
        batch_index, window_index = needed.nonzero(as_tuple=True)  # (N,) each
        frames = window_index[:, None] * window + torch.arange(window, device=frame_mask.device)  # (N, 15)
        inside = frames.clamp(max=num_frames - 1)
        valid = frame_mask[batch_index[:, None], inside] & (frames < num_frames)
        states = encoder_states[batch_index[:, None], inside]  # (N, 15, width)
        chunks = states.view(*frames.shape, self.num_chunks, width // self.num_chunks)
        hidden = F.gelu(self.proj(self.norm(chunks).view(*frames.shape, width)))
        # Zero padding after the GELU, as in the reference.
        hidden = hidden * valid[..., None].to(hidden.dtype)
        out = encoder_states.new_zeros(bsz, num_windows, queries, hidden.shape[-1])
        out[batch_index, window_index] = self.qformer(hidden)  # (N, 3, D)
        return out.view(bsz, num_windows * queries, -1)
