"""Conformer CTC encoder of Granite Speech NAR (docs/reference_behaviour.md §3.1).

The block structure and tensor names are those of Granite Speech's conformer
(``transformers.models.granite_speech``). The code is our own because the released reference has no
padding mask: frames past an utterance's end are ordinary frames there, so a transcript depends on
what else is in the batch. Here every step that mixes frames (block attention, the depthwise
convolution, the pooling) ignores frames past each utterance's length (docs/reference_behaviour.md §11.3). For a batch of
one the operations are exactly the reference's.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PreTrainedModel
from transformers import initialization as init
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.utils import ModelOutput

from ..lengths import num_bpe_windows
from .configuration_granite_speech_nar import GraniteSpeechNarEncoderConfig

__all__ = [
    "GraniteSpeechNarEncoder",
    "GraniteSpeechNarEncoderPreTrainedModel",
    "GraniteSpeechNarEncoderOutput",
    "relative_distances",
]


def _feature_mask(input_features_mask: torch.Tensor | None, attention_mask: torch.Tensor | None):
    """``input_features_mask``, or ``attention_mask`` (its conventional name for audio models); not both."""
    if attention_mask is None:
        return input_features_mask
    if input_features_mask is not None and not torch.equal(input_features_mask.bool(), attention_mask.bool()):
        raise ValueError("input_features_mask and attention_mask disagree; pass one of them.")
    return attention_mask


def relative_distances(context_size: int, max_pos_emb: int, device=None) -> torch.Tensor:
    """``(C, C)`` rows of the Shaw table: ``clamp(i - j, -C, C) + max_pos_emb`` (docs/reference_behaviour.md §3.1.3 step 4)."""
    seq = torch.arange(context_size, device=device)
    return (seq[:, None] - seq[None, :]).clamp(-context_size, context_size) + max_pos_emb


def _at_least_fp32(dtype: torch.dtype) -> torch.dtype:
    """float32 for half types (the reference's precision), float64 stays float64."""
    return torch.promote_types(dtype, torch.float32)


@dataclass
class _FlatLayout:
    """Where each utterance of a ``(B, T)`` batch sits in the flat row of the ``"flat"`` batch layout.

    Utterance ``b`` starts at ``offsets[b]``, a multiple of the attention block, and the next one starts at
    least ``conv_kernel_size // 2`` frames after its end, so every block and every convolution window
    sees one utterance and masked frames only (see ``GraniteSpeechNarEncoderConfig.batch_layout``).
    """

    frame_mask: torch.Tensor  # (B, T) the batch's mask
    positions: torch.Tensor  # (N,) row index of each valid frame, in ``frame_mask`` order
    row_mask: torch.Tensor  # (1, L) valid frames of the row

    @classmethod
    def plan(cls, frame_mask: torch.Tensor, config: GraniteSpeechNarEncoderConfig) -> _FlatLayout | None:
        """The layout, or ``None`` when the batch should run padded (see ``batch_layout``)."""
        bsz, num_frames = frame_mask.shape
        if config.batch_layout == "padded" or bool(frame_mask.all()):
            return None  # nothing to save: the batch as given is the reference's computation
        frames = torch.arange(num_frames, device=frame_mask.device)
        lengths = frame_mask.sum(dim=1)
        if not torch.equal(frame_mask, frames[None, :] < lengths[:, None]):
            return None  # not a right-padded batch: no utterance boundaries to lay out
        block, halo = config.context_size, config.conv_kernel_size // 2
        spans = torch.where(lengths > 0, -((lengths + halo) // -block) * block, 0)
        spans[-1] = lengths[-1]  # the row ends with the last utterance
        row_len = int(spans.sum())
        if row_len == 0 or (config.batch_layout == "auto" and row_len >= bsz * num_frames):
            return None
        offsets = torch.cumsum(spans, dim=0) - spans
        positions = (offsets[:, None] + frames[None, :])[frame_mask]
        row_mask = torch.zeros(1, row_len, dtype=torch.bool, device=frame_mask.device)
        row_mask[0, positions] = True
        return cls(frame_mask=frame_mask, positions=positions, row_mask=row_mask)

    def pack(self, batch: torch.Tensor) -> torch.Tensor:
        """``(B, T, F)`` → ``(1, L, F)``; frames between utterances are zero."""
        row = batch.new_zeros(1, self.row_mask.shape[1], batch.shape[-1])
        row[0, self.positions] = batch[self.frame_mask]
        return row

    def unpack(self, row: torch.Tensor) -> torch.Tensor:
        """``(1, L, ...)`` → ``(B, T, ...)``; frames past each utterance's end are zero."""
        batch = row.new_zeros(*self.frame_mask.shape, *row.shape[2:])
        batch[self.frame_mask] = row[0, self.positions]
        return batch


@dataclass
class GraniteSpeechNarEncoderOutput(ModelOutput):
    """Outputs of :class:`GraniteSpeechNarEncoder`.

    Args:
        last_hidden_state: ``(B, T, hidden_dim)`` output of the last block.
        projector_input: ``(B, T, hidden_dim * num_exported_layers)``, the concatenation of the
            ``cat_hidden_layers`` hidden states and the last layer, fed to the projector.
        pooled_hidden_states: ``(B, ceil(T / pooling_window), hidden_dim)`` posterior-weighted pooled
            last layer, input of the BPE CTC head.
        pooled_lengths: ``(B,)`` valid pooled windows per utterance, ``ceil(T_b / pooling_window)``.
        char_logits: ``(B, T, output_dim)`` logits of the mid-layer character CTC head.
        hidden_states: ``(input_linear output, block 1, ..., block N)`` when requested.
    """

    last_hidden_state: torch.Tensor | None = None
    projector_input: torch.Tensor | None = None
    pooled_hidden_states: torch.Tensor | None = None
    pooled_lengths: torch.Tensor | None = None
    char_logits: torch.Tensor | None = None
    hidden_states: tuple[torch.Tensor, ...] | None = None


class GraniteSpeechNarConformerFeedForward(nn.Module):
    """``down_proj(SiLU(up_proj(LN(x))))``, used twice per block with a 0.5 residual weight."""

    def __init__(self, config: GraniteSpeechNarEncoderConfig):
        super().__init__()
        self.pre_norm = nn.LayerNorm(config.hidden_dim)
        self.up_proj = nn.Linear(config.hidden_dim, config.hidden_dim * config.feedforward_mult)
        self.silu = nn.SiLU()
        self.dropout = nn.Dropout(config.dropout)
        self.down_proj = nn.Linear(config.hidden_dim * config.feedforward_mult, config.hidden_dim)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        hidden_states = self.dropout(self.silu(self.up_proj(self.pre_norm(hidden_states))))
        return self.dropout(self.down_proj(hidden_states))


class GraniteSpeechNarConformerAttention(nn.Module):
    """Block ("context") attention with Shaw relative positions (docs/reference_behaviour.md §3.1.3).

    Frames attend only inside their own ``context_size``-frame block. The reference masks only the
    zero padding of the batch's last block; we mask every key past the utterance's own length, which
    is the same thing for a batch of one and makes batched results equal to single ones.
    """

    def __init__(self, config: GraniteSpeechNarEncoderConfig):
        super().__init__()
        inner_dim = config.dim_head * config.num_heads
        self.config = config
        self.context_size = config.context_size
        self.num_heads = config.num_heads
        self.dim_head = config.dim_head
        self.scale = self.dim_head**-0.5
        self.pre_norm = nn.LayerNorm(config.hidden_dim)
        self.to_q = nn.Linear(config.hidden_dim, inner_dim, bias=False)
        self.to_kv = nn.Linear(config.hidden_dim, inner_dim * 2, bias=False)
        self.to_out = nn.Linear(inner_dim, config.hidden_dim)
        self.rel_pos_emb = nn.Embedding(2 * config.max_pos_emb + 1, self.dim_head)
        self.dropout = nn.Dropout(config.dropout)

    def forward(
        self, hidden_states: torch.Tensor, attention_dists: torch.Tensor, key_mask: torch.Tensor
    ) -> torch.Tensor:
        """``(B, T, D)`` → ``(B, T, D)``; ``key_mask`` ``(B, T)`` is True on valid frames."""
        hidden_states = self.pre_norm(hidden_states)
        bsz, num_frames, _ = hidden_states.shape
        num_blocks = -(num_frames // -self.context_size)
        pad = num_blocks * self.context_size - num_frames
        # The reference zero-pads the normalised frames to whole blocks before projecting them
        # (docs/reference_behaviour.md §3.1.3 step 1). to_q and to_kv have no bias, so a zero frame projects to
        # zero: padding the projections instead gives the same tensors without multiplying the padding.
        query = F.pad(self.to_q(hidden_states), (0, 0, 0, pad))
        key, value = F.pad(self.to_kv(hidden_states), (0, 0, 0, pad)).chunk(2, dim=-1)
        key_mask = F.pad(key_mask, (0, pad), value=False)

        flat = bsz * num_blocks
        # (B, nb * C, H * d) -> (B * nb, H, C, d)
        query = query.reshape(flat, self.context_size, self.num_heads, -1).transpose(1, 2)
        key = key.reshape(flat, self.context_size, self.num_heads, -1).transpose(1, 2)
        value = value.reshape(flat, self.context_size, self.num_heads, -1).transpose(1, 2)

        rel_pos = self.rel_pos_emb(attention_dists)  # (C, C, d)
        pos_attn = torch.einsum("bhcd,crd->bhcr", query, rel_pos) * self.scale  # (B * nb, H, C, C)

        # (B * nb, 1, 1, C): keys past the utterance's end never receive weight. Rows whose keys are all
        # masked (queries in pure padding) become uniform and are discarded by the caller.
        invalid_keys = ~key_mask.reshape(flat, 1, 1, self.context_size)
        if invalid_keys.any():
            pos_attn = pos_attn.masked_fill(invalid_keys, -torch.finfo(pos_attn.dtype).max)

        if self.config._attn_implementation == "eager":
            weights = (torch.matmul(query, key.transpose(-1, -2)) * self.scale + pos_attn).softmax(dim=-1)
            out = torch.matmul(weights, value)  # (B * nb, H, C, d)
        else:
            # sdpa's math kernel, as the reference runs it; flash and the other fused kernels take no additive
            # bias of this shape, so every other backend choice runs this path too.
            with torch.nn.attention.sdpa_kernel(torch.nn.attention.SDPBackend.MATH):
                out = F.scaled_dot_product_attention(query, key, value, attn_mask=pos_attn, scale=self.scale)
        out = out.transpose(1, 2).reshape(bsz, num_blocks * self.context_size, -1)  # (B, nb * C, H * d)
        return self.dropout(self.to_out(out[:, :num_frames]))


class GraniteSpeechNarConformerDepthWiseConv1d(nn.Module):
    """Depthwise Conv1d after explicit ``(k // 2, k // 2 - (k + 1) % 2)`` zero padding, no bias.

    :meth:`forward` takes the ``(B, C, T)`` layout of ``nn.Conv1d``; :meth:`forward_time_major` the
    ``(B, T, C)`` layout the rest of the block uses, without a transposed copy (see there).
    """

    def __init__(self, chan_in: int, chan_out: int, kernel_size: int):
        super().__init__()
        pad = kernel_size // 2
        self.padding = (pad, pad - (kernel_size + 1) % 2)
        self.conv = nn.Conv1d(chan_in, chan_out, kernel_size, groups=chan_in, bias=False)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.conv(F.pad(hidden_states, self.padding))

    def forward_time_major(self, hidden_states: torch.Tensor) -> torch.Tensor:
        """``(B, T, C)`` → ``(B, T, C)``, the same convolution.

        A ``(B, T, C)`` tensor *is* a ``(B, C, 1, T)`` image in channels-last memory order, so the
        convolution runs as a 2-D depthwise convolution on that view: no transposed copy in or out, and
        oneDNN's channels-last depthwise kernel does the work.
        """
        left, right = self.padding
        if left != right:  # even kernels pad asymmetrically: pad explicitly
            hidden_states = F.pad(hidden_states, (0, 0, left, right))
            left = 0
        image = hidden_states.transpose(1, 2).unsqueeze(2)  # (B, C, 1, T), channels-last strides
        out = F.conv2d(image, self.conv.weight.unsqueeze(2), padding=(0, left), groups=self.conv.groups)
        return out.squeeze(2).transpose(1, 2)  # (B, T, C)


def _pointwise(layer: nn.Module, hidden_states: torch.Tensor) -> torch.Tensor:
    """A kernel-size-1 ``Conv1d`` applied to ``(B, T, C)`` as the matrix multiply it is; a linear layer
    that replaced it (:func:`granite_nar.model.quantization.quantize_int8`) is simply called."""
    if isinstance(layer, nn.Conv1d):
        return F.linear(hidden_states, layer.weight.squeeze(-1), layer.bias)
    return layer(hidden_states)


class GraniteSpeechNarConformerConvModule(nn.Module):
    """LN → pointwise conv → GLU → depthwise conv → BatchNorm → SiLU → pointwise conv (docs/reference_behaviour.md §3.1.2).

    The parameters are those of the reference's ``Conv1d`` modules (checkpoint names and shapes), but the
    block runs in the ``(B, T, C)`` layout: a kernel-size-1 convolution is a matrix multiply with the
    squeezed weight, and the depthwise convolution reads the same memory as a channels-last image
    (:meth:`GraniteSpeechNarConformerDepthWiseConv1d.forward_time_major`). Same operations, no
    transposes; BatchNorm normalises the last dimension through its ``(N, C)`` form.
    """

    def __init__(self, config: GraniteSpeechNarEncoderConfig):
        super().__init__()
        inner_dim = config.hidden_dim * config.conv_expansion_factor
        self.norm = nn.LayerNorm(config.hidden_dim)
        self.up_conv = nn.Conv1d(config.hidden_dim, inner_dim * 2, 1)
        self.glu = nn.GLU(dim=1)
        self.depth_conv = GraniteSpeechNarConformerDepthWiseConv1d(
            inner_dim, inner_dim, config.conv_kernel_size
        )
        self.silu = nn.SiLU()
        self.batch_norm = nn.BatchNorm1d(inner_dim)
        self.down_conv = nn.Conv1d(inner_dim, config.hidden_dim, 1)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, hidden_states: torch.Tensor, frame_mask: torch.Tensor | None) -> torch.Tensor:
        """``(B, T, D)`` → ``(B, T, D)``; ``frame_mask`` ``(B, T)`` is True on valid frames (None: all)."""
        hidden_states = F.glu(
            _pointwise(self.up_conv, self.norm(hidden_states)), dim=-1
        )  # (B, T, D'): the channel halves of nn.GLU(dim=1)
        if frame_mask is not None:
            # Frames past the utterance's end must look like the reference's zero padding to the kernel.
            hidden_states = hidden_states * frame_mask[..., None].to(hidden_states.dtype)
        hidden_states = self.depth_conv.forward_time_major(hidden_states)
        bsz, num_frames, channels = hidden_states.shape
        hidden_states = self.batch_norm(hidden_states.reshape(bsz * num_frames, channels))
        hidden_states = self.silu(hidden_states).view(bsz, num_frames, channels)
        return self.dropout(_pointwise(self.down_conv, hidden_states))


class GraniteSpeechNarConformerBlock(GradientCheckpointingLayer):
    """Macaron conformer block: ½FF, attention, convolution, ½FF, LayerNorm."""

    def __init__(self, config: GraniteSpeechNarEncoderConfig):
        super().__init__()
        self.ff1 = GraniteSpeechNarConformerFeedForward(config)
        self.attn = GraniteSpeechNarConformerAttention(config)
        self.conv = GraniteSpeechNarConformerConvModule(config)
        self.ff2 = GraniteSpeechNarConformerFeedForward(config)
        self.post_norm = nn.LayerNorm(config.hidden_dim)

    def forward(
        self,
        hidden_states: torch.Tensor,
        attention_dists: torch.Tensor,
        frame_mask: torch.Tensor,
        conv_mask: torch.Tensor | None,
    ) -> torch.Tensor:
        # add(x, y, alpha=0.5) is x + 0.5 * y with the same rounding, in one pass instead of two.
        hidden_states = torch.add(hidden_states, self.ff1(hidden_states), alpha=0.5)
        hidden_states = self.attn(hidden_states, attention_dists, frame_mask) + hidden_states
        hidden_states = self.conv(hidden_states, conv_mask) + hidden_states
        hidden_states = torch.add(hidden_states, self.ff2(hidden_states), alpha=0.5)
        return self.post_norm(hidden_states)


class GraniteSpeechNarEncoderPreTrainedModel(PreTrainedModel):
    """Loading, saving and initialisation of the encoder on its own (like transformers' ``GraniteSpeechCTCEncoder``)."""

    config: GraniteSpeechNarEncoderConfig
    config_class = GraniteSpeechNarEncoderConfig
    base_model_prefix = "encoder"
    main_input_name = "input_features"
    input_modalities = "audio"
    supports_gradient_checkpointing = True
    _no_split_modules = ["GraniteSpeechNarConformerBlock"]
    # The block attention adds a relative-position bias: "sdpa" runs sdpa's math kernel on it (the
    # reference's computation), "eager" the same formula by hand; flash kernels take no such bias, so a
    # flash choice made for the editor leaves the encoder on the sdpa path.
    _supports_sdpa = True
    _supports_flash_attn = True
    _supports_attention_backend = True

    @classmethod
    def _can_set_attn_implementation(cls) -> bool:
        """The block attention reads ``config._attn_implementation`` at every call, so ``set_attn_implementation``
        takes effect at once (transformers' source heuristic cannot see that)."""
        return True

    @torch.no_grad()
    def _init_weights(self, module: nn.Module):
        super()._init_weights(module)
        if isinstance(module, GraniteSpeechNarEncoder):
            init.copy_(
                module.attention_dists,
                relative_distances(module.config.context_size, module.config.max_pos_emb),
            )


class GraniteSpeechNarEncoder(GraniteSpeechNarEncoderPreTrainedModel):
    """Conformer encoder with self-conditioned character CTC and posterior-weighted pooling.

    Input ``(B, T, input_dim)`` stacked log-mel frames (20 ms each) and a ``(B, T)`` mask; output
    the projector input (concatenated hidden states) and the pooled 80 ms windows for the BPE head.
    A model class of its own: ``from_pretrained`` / ``save_pretrained``, gradient checkpointing and the
    attention backend work on the encoder alone.
    """

    def __init__(self, config: GraniteSpeechNarEncoderConfig):
        super().__init__(config)
        self.register_buffer(
            "attention_dists", relative_distances(config.context_size, config.max_pos_emb), persistent=False
        )
        self.input_linear = nn.Linear(config.input_dim, config.hidden_dim)
        self.layers = nn.ModuleList(
            [GraniteSpeechNarConformerBlock(config) for _ in range(config.num_layers)]
        )
        self.out = nn.Linear(config.hidden_dim, config.output_dim)
        self.out_mid = nn.Linear(config.output_dim, config.hidden_dim)
        self.pred_dropout = nn.Dropout(config.pred_dropout)
        self.post_init()

    def forward(
        self,
        input_features: torch.Tensor,
        input_features_mask: torch.Tensor | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        attention_mask: torch.Tensor | None = None,
        output_attentions: bool | None = None,
    ) -> GraniteSpeechNarEncoderOutput | tuple:
        """Args:
        input_features: ``(B, T, input_dim)``.
        input_features_mask: ``(B, T)`` bool, True on valid frames; ``None`` means all valid.
            ``attention_mask`` is accepted as its conventional name.
        output_hidden_states, return_dict: default to the config's values.
        """
        config = self.config
        input_features_mask = _feature_mask(input_features_mask, attention_mask)
        if output_attentions:
            raise ValueError(
                "output_attentions is not supported: the block attention's weights are never materialised "
                "per layer for output (it runs in one fused call per block)."
            )
        if output_hidden_states is None:
            output_hidden_states = config.output_hidden_states
        return_dict = config.return_dict if return_dict is None else return_dict
        bsz, num_frames, _ = input_features.shape
        if input_features_mask is None:
            input_features_mask = torch.ones(bsz, num_frames, dtype=torch.bool, device=input_features.device)
        frame_mask = input_features_mask.bool()
        # Inference batches run as one flat row when that saves frames (config.batch_layout); training runs
        # the padded batch, whose BatchNorm statistics are those of the batch as given.
        layout = None if self.training else _FlatLayout.plan(frame_mask, config)
        block_mask = frame_mask if layout is None else layout.row_mask
        # Only batches with padding need the conv zeroing; a full mask keeps the reference's exact ops.
        conv_mask = None if bool(block_mask.all()) else block_mask
        if layout is not None:
            input_features = layout.pack(input_features)

        hidden_states = self.input_linear(input_features.to(self.compute_dtype))
        all_hidden = [hidden_states]
        exported = {0: hidden_states} if 0 in config.cat_hidden_layers else {}
        blank_prob = None
        char_logits = None
        for idx, layer in enumerate(self.layers, start=1):
            # A GradientCheckpointingLayer: checkpointed with gradient_checkpointing_kwargs when enabled.
            hidden_states = layer(hidden_states, self.attention_dists, block_mask, conv_mask)
            if idx == config.self_conditioning_layer:
                if not config.export_after_self_conditioning and idx in config.cat_hidden_layers:
                    exported[idx] = hidden_states
                # Self-conditioning (docs/reference_behaviour.md §3.1.4): softmax in float32, fed back into the residual stream.
                char_logits = self.out(self.pred_dropout(hidden_states))
                probs = char_logits.to(_at_least_fp32(char_logits.dtype)).softmax(dim=-1)
                blank_prob = probs[..., 0]  # (B, T), char-CTC blank is index 0
                hidden_states = hidden_states + self.out_mid(probs.to(hidden_states.dtype))
            if idx in config.cat_hidden_layers and idx not in exported:
                exported[idx] = hidden_states
            if output_hidden_states:
                all_hidden.append(hidden_states)

        projector_input = torch.cat([*(exported[i] for i in config.cat_hidden_layers), hidden_states], dim=-1)
        if layout is not None:
            hidden_states, projector_input, char_logits = map(
                layout.unpack, (hidden_states, projector_input, char_logits)
            )
            blank_prob = layout.unpack(blank_prob)
            all_hidden = [layout.unpack(h) for h in all_hidden] if output_hidden_states else all_hidden
        pooled, pooled_lengths = self.pool(hidden_states, blank_prob, frame_mask)
        out = GraniteSpeechNarEncoderOutput(
            last_hidden_state=hidden_states,
            projector_input=projector_input,
            pooled_hidden_states=pooled,
            pooled_lengths=pooled_lengths,
            char_logits=char_logits,
            hidden_states=tuple(all_hidden) if output_hidden_states else None,
        )
        return out if return_dict else out.to_tuple()

    @property
    def compute_dtype(self) -> torch.dtype:
        """The dtype the blocks compute in (a LayerNorm's; linear layers may be int8-quantized)."""
        return self.layers[0].post_norm.weight.dtype if len(self.layers) else self.input_linear.weight.dtype

    def pool(
        self, hidden_states: torch.Tensor, blank_prob: torch.Tensor, frame_mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Posterior-weighted pooling of the last layer into ``pooling_window``-frame windows (docs/reference_behaviour.md §3.1.6).

        ``w_t = (1 - p_blank_t) / (Σ_window (1 - p_blank) + 1e-8)``, in float32. Frames past an
        utterance's end get weight 0, like the reference's zero padding.
        Returns ``(B, ceil(T / w), D)`` in the model dtype and the ``(B,)`` valid window counts.
        """
        window = self.config.pooling_window
        bsz, num_frames, dim = hidden_states.shape
        compute = _at_least_fp32(hidden_states.dtype)
        valid = frame_mask.to(compute)
        importance = (1.0 - blank_prob.to(compute)) * valid  # (B, T)
        states = hidden_states.to(compute) * valid[..., None]
        pad = -num_frames % window
        importance = F.pad(importance, (0, pad)).view(bsz, -1, window)  # (B, nw, w)
        states = F.pad(states, (0, 0, 0, pad)).view(bsz, -1, window, dim)  # (B, nw, w, D)
        weights = importance / (importance.sum(dim=-1, keepdim=True) + 1e-8)
        pooled = (weights[..., None] * states).sum(dim=2).to(hidden_states.dtype)  # (B, nw, D)
        pooled_lengths = num_bpe_windows(frame_mask.sum(dim=1), window)
        return self.pred_dropout(pooled), pooled_lengths
