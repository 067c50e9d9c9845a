"""Frame arithmetic of Granite Speech NAR, written once (SPEC §2.2, §2.3).

    16 kHz audio
      └─ 10 ms hop (160 samples) ──► log-mel frames (100 Hz)
           └─ ×2 frame stacking ──► encoder frames, 20 ms (50 Hz)        N // 320
                ├─ ÷4 posterior-weighted pooling ──► BPE windows, 80 ms   ceil(T / 4)
                └─ ÷5 windowed Q-Former ──► audio tokens, 100 ms          T // 5

Every length used by the feature extractor, the model, the processor and the tests comes from
the helpers below, so the three can never disagree.
"""

from __future__ import annotations

import torch

SAMPLING_RATE = 16_000
HOP_LENGTH = 160  # samples per mel frame: 10 ms at 16 kHz
FRAME_STACKING = 2  # two mel frames per encoder frame
SAMPLES_PER_ENCODER_FRAME = HOP_LENGTH * FRAME_STACKING  # 320 samples = 20 ms
BPE_POOLING_WINDOW = 4  # encoder frames per BPE-CTC window: 80 ms
AUDIO_TOKEN_DOWNSAMPLE = 5  # encoder frames per audio token: 100 ms
MIN_EDIT_SEQUENCE_LENGTH = 8


def num_encoder_frames(num_samples):
    """Encoder frames for a waveform of ``num_samples`` samples: ``N // 320`` (remote-code rule, SPEC §2.2).

    Works on Python ints and integer tensors alike.
    """
    return num_samples // SAMPLES_PER_ENCODER_FRAME


def num_bpe_windows(num_frames, pooling_window: int = BPE_POOLING_WINDOW):
    """BPE-CTC windows for ``num_frames`` encoder frames: ``ceil(T / 4)`` (SPEC §2.3)."""
    return -(num_frames // -pooling_window)


def num_audio_tokens(num_frames, downsample_rate: int = AUDIO_TOKEN_DOWNSAMPLE):
    """Audio embeddings the editor sees for ``num_frames`` encoder frames: ``T // 5`` (SPEC §2.3)."""
    return num_frames // downsample_rate


def num_projector_tokens(padded_frames: int, window_size: int = 15, downsample_rate: int = 5) -> int:
    """Tokens the projector emits for a padded batch of ``padded_frames`` frames: ``ceil(T / 15) * 3``."""
    return -(padded_frames // -window_size) * (window_size // downsample_rate)


def num_slots(num_tokens, min_length: int = MIN_EDIT_SEQUENCE_LENGTH):
    """Insertion slots for a draft of ``num_tokens`` tokens: ``max(2n + 1, min_length)`` (SPEC §4)."""
    if isinstance(num_tokens, torch.Tensor):
        return torch.clamp(2 * num_tokens + 1, min=min_length)
    return max(2 * num_tokens + 1, min_length)


def min_samples_for_audio_token() -> int:
    """Shortest waveform that yields at least one audio token: 5 frames × 320 samples = 100 ms."""
    return AUDIO_TOKEN_DOWNSAMPLE * SAMPLES_PER_ENCODER_FRAME
