"""Frame arithmetic of Granite Speech NAR, written once (docs/reference_behaviour.md §2.2, §2.3).

    16 kHz audio
      └─ 10 ms hop (160 samples) ──► log-mel frames (100 Hz)
           └─ ×2 frame stacking ──► encoder frames, 20 ms (50 Hz)        N // 320
                ├─ ÷4 posterior-weighted pooling ──► BPE windows, 80 ms   ceil(T / 4)
                └─ ÷5 windowed Q-Former ──► audio tokens, 100 ms          T // 5
    draft of n tokens ──► insertion slots                                 max(2n + 1, 8)

The feature extractor, the encoder, the NAR and AR models, the processor, the training collator and
the tests call these helpers rather than re-typing the arithmetic. The pooling window, the
downsampling rate and the minimum slot count are configuration fields, so they are arguments here;
only the front end's fixed sample arithmetic is a constant.
"""

from __future__ import annotations

import torch

__all__ = [
    "SAMPLING_RATE",
    "HOP_LENGTH",
    "FRAME_STACKING",
    "SAMPLES_PER_ENCODER_FRAME",
    "ENCODER_FRAME_SECONDS",
    "num_encoder_frames",
    "num_bpe_windows",
    "num_audio_tokens",
    "num_projector_tokens",
    "num_slots",
    "min_samples_for_audio_token",
    "lengths_to_mask",
    "lengths_from_mask",
]

SAMPLING_RATE = 16_000
HOP_LENGTH = 160  # samples per mel frame: 10 ms at 16 kHz
FRAME_STACKING = 2  # two mel frames per encoder frame
SAMPLES_PER_ENCODER_FRAME = HOP_LENGTH * FRAME_STACKING  # 320 samples = 20 ms
ENCODER_FRAME_SECONDS = SAMPLES_PER_ENCODER_FRAME / SAMPLING_RATE  # 0.02 s


def num_encoder_frames(num_samples):
    """Encoder frames for a waveform of ``num_samples`` samples: ``N // 320`` (the released code's rule).

    Works on Python ints and integer tensors alike.
    """
    return num_samples // SAMPLES_PER_ENCODER_FRAME


def num_bpe_windows(num_frames, pooling_window: int):
    """BPE-CTC windows for ``num_frames`` encoder frames: ``ceil(T / pooling_window)``."""
    return -(num_frames // -pooling_window)


def num_audio_tokens(num_frames, downsample_rate: int):
    """Audio embeddings the editor sees for ``num_frames`` encoder frames: ``T // downsample_rate``."""
    return num_frames // downsample_rate


def num_projector_tokens(padded_frames: int, window_size: int, downsample_rate: int) -> int:
    """Tokens the projector emits for a padded batch of ``padded_frames`` frames: ``ceil(T / 15) * 3``."""
    return -(padded_frames // -window_size) * (window_size // downsample_rate)


def num_slots(num_tokens, min_length: int):
    """Insertion slots for a draft of ``num_tokens`` tokens: ``max(2n + 1, min_length)``."""
    if isinstance(num_tokens, torch.Tensor):
        return torch.clamp(2 * num_tokens + 1, min=min_length)
    return max(2 * num_tokens + 1, min_length)


def min_samples_for_audio_token(downsample_rate: int) -> int:
    """Shortest waveform that yields at least one audio token: 5 frames × 320 samples = 100 ms."""
    return downsample_rate * SAMPLES_PER_ENCODER_FRAME


def lengths_to_mask(lengths: torch.Tensor, max_length: int) -> torch.Tensor:
    """``(B,)`` lengths → ``(B, max_length)`` bool right-padding mask, True on valid positions."""
    return torch.arange(max_length, device=lengths.device)[None, :] < lengths[:, None]


def lengths_from_mask(mask: torch.Tensor | None, batch: int, max_length: int, device=None) -> torch.Tensor:
    """``(B, T)`` right-padding mask → ``(B,)`` lengths; ``None`` means every position is valid.

    Raises ``ValueError`` for a mask of the wrong shape or one that is not True-then-False in every row
    (a mask with holes would silently be read as a shorter utterance).
    """
    if mask is None:
        return torch.full((batch,), max_length, dtype=torch.long, device=device)
    if mask.shape != (batch, max_length):
        raise ValueError(
            f"input_features_mask has shape {tuple(mask.shape)}, expected ({batch}, {max_length})."
        )
    lengths = mask.long().sum(dim=1)
    if not torch.equal(mask.bool(), lengths_to_mask(lengths, max_length)):
        raise ValueError("input_features_mask must be a right-padding mask (True then False in every row).")
    return lengths
