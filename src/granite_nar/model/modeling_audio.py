"""The audio side shared by the NAR model and its autoregressive counterpart.

Both decoders read audio the same way::

    input_features (B, T, 160) + mask ── check_input_features ── frame lengths T_b
        └─ encoder (modeling_encoder) ── projector input (B, T, 4096)
             └─ project_audio: projector ── / embedding_multiplier ── first T_b // 5 tokens ── (B, A_max, D)

and share one pre-trained base class (weight initialisation, the non-persistent buffers).
"""

from __future__ import annotations

import torch
from torch import nn
from transformers import PreTrainedModel
from transformers import initialization as init
from transformers.models.granite.modeling_granite import GraniteRotaryEmbedding

from ..lengths import lengths_from_mask, lengths_to_mask, num_audio_tokens
from .configuration_granite_speech_nar import GraniteSpeechNarConfig
from .modeling_encoder import GraniteSpeechNarEncoder, relative_distances
from .modeling_projector import GraniteSpeechNarProjector, GraniteSpeechNarQFormer
from .quantization import is_quantized

__all__ = ["GraniteSpeechAudioPreTrainedModel", "check_input_features", "project_audio"]


class GraniteSpeechAudioPreTrainedModel(PreTrainedModel):
    """Weight initialisation and buffer handling of every model built on the Granite Speech audio side."""

    config: GraniteSpeechNarConfig
    config_class = GraniteSpeechNarConfig
    main_input_name = "input_features"
    input_modalities = ("audio", "text")
    supports_gradient_checkpointing = True
    _supports_sdpa = True
    _supports_flash_attn = True
    _supports_attention_backend = True

    @torch.no_grad()
    def _init_weights(self, module: nn.Module):
        super()._init_weights(module)
        # The encoder is a PreTrainedModel of its own: transformers initialises it (and its relative-distance
        # buffer) with GraniteSpeechNarEncoderPreTrainedModel._init_weights.
        std = self.config.initializer_range
        if isinstance(module, GraniteSpeechNarQFormer):
            init.normal_(module.queries, mean=0.0, std=std)
            init.normal_(module.pos_emb, mean=0.0, std=std)

    def save_pretrained(self, save_directory, *args, **kwargs):
        """``PreTrainedModel.save_pretrained``, refused for an int8-quantized model (its packed int8 weights
        have no checkpoint format here): save the float model and quantize after loading."""
        if is_quantized(self):
            raise ValueError(
                f"cannot save an int8-quantized model to {save_directory!s}: quantization is applied at load "
                "time. Save the float32 model instead and call granite_nar.quantize_int8 after loading it."
            )
        return super().save_pretrained(save_directory, *args, **kwargs)

    def materialize_buffers(self, device: torch.device | str = "cpu") -> None:
        """Recompute the non-persistent buffers (relative distances, RoPE frequencies) on ``device``.

        Needed after building on the ``meta`` device and assigning a state dict, which holds no buffers.
        """
        for module in self.modules():
            if isinstance(module, GraniteSpeechNarEncoder):
                cfg = module.config
                module.attention_dists = relative_distances(cfg.context_size, cfg.max_pos_emb, device=device)
            elif isinstance(module, GraniteRotaryEmbedding):
                inv_freq, module.attention_scaling = module.compute_default_rope_parameters(module.config)
                module.inv_freq = inv_freq.to(device)
                module.original_inv_freq = inv_freq.clone().to(device)


def check_input_features(
    config: GraniteSpeechNarConfig, input_features: torch.Tensor, input_features_mask: torch.Tensor | None
) -> torch.Tensor:
    """Check ``(B, T, input_dim)`` features and their right-padding mask; return ``(B,)`` frame counts."""
    if input_features.dim() != 3 or input_features.shape[-1] != config.encoder_config.input_dim:
        raise ValueError(
            f"input_features must be (batch, frames, {config.encoder_config.input_dim}), "
            f"got {tuple(input_features.shape)}."
        )
    bsz, frames, _ = input_features.shape
    frame_lengths = lengths_from_mask(input_features_mask, bsz, frames, input_features.device)
    if bool((frame_lengths == 0).any()):
        empty = (frame_lengths == 0).nonzero().flatten().tolist()
        raise ValueError(f"utterances {empty} have no valid encoder frame (audio shorter than 20 ms).")
    return frame_lengths


def project_audio(
    projector: GraniteSpeechNarProjector,
    config: GraniteSpeechNarConfig,
    projector_input: torch.Tensor,
    frame_lengths: torch.Tensor,
    dtype: torch.dtype,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Projector → ``/ embedding_multiplier`` → the first ``T_b // 5`` tokens: ``(B, A_max, D)``, ``(B,)``."""
    frame_mask = lengths_to_mask(frame_lengths, projector_input.shape[1])
    audio_embeds = projector(projector_input, frame_mask)  # (B, ceil(T/15)*3, D)
    if config.scale_projected_embeddings:
        audio_embeds = audio_embeds / config.text_config.embedding_multiplier
    audio_lengths = num_audio_tokens(frame_lengths, config.projector_config.downsample_rate)
    return audio_embeds[:, : int(audio_lengths.max())].to(dtype), audio_lengths
