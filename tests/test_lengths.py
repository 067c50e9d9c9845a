"""``granite_nar.lengths``: the frame arithmetic, on Python ints and integer tensors alike, and the masks.

The models, the processor and the collator are checked against these helpers elsewhere (e.g.
``tests/model/test_modeling_granite_speech_nar.py::test_lengths_follow_frame_arithmetic``); here the helpers
themselves are checked against the numbers written out by hand.
"""

import pytest
import torch

from granite_nar.lengths import (
    ENCODER_FRAME_SECONDS,
    SAMPLES_PER_ENCODER_FRAME,
    lengths_from_mask,
    lengths_to_mask,
    min_samples_for_audio_token,
    num_audio_tokens,
    num_bpe_windows,
    num_encoder_frames,
    num_projector_tokens,
    num_slots,
)


def test_constants():
    assert SAMPLES_PER_ENCODER_FRAME == 320 and ENCODER_FRAME_SECONDS == 0.02


@pytest.mark.parametrize(
    ("samples", "frames", "windows", "tokens"),
    [(0, 0, 0, 0), (319, 0, 0, 0), (320, 1, 1, 0), (1599, 4, 1, 0), (1600, 5, 2, 1), (16000, 50, 13, 10)],
)
def test_frame_arithmetic_by_hand(samples, frames, windows, tokens):
    assert num_encoder_frames(samples) == frames  # N // 320
    assert num_bpe_windows(frames, 4) == windows  # ceil(T / 4)
    assert num_audio_tokens(frames, 5) == tokens  # T // 5


def test_ints_and_tensors_agree():
    samples = [0, 319, 320, 1599, 1600, 16000, 16321]
    frames = num_encoder_frames(torch.tensor(samples))
    assert frames.tolist() == [num_encoder_frames(n) for n in samples]
    assert num_bpe_windows(frames, 4).tolist() == [num_bpe_windows(t, 4) for t in frames.tolist()]
    assert num_audio_tokens(frames, 5).tolist() == [num_audio_tokens(t, 5) for t in frames.tolist()]
    drafts = torch.tensor([0, 1, 3, 4, 10])
    assert num_slots(drafts, 8).tolist() == [num_slots(n, 8) for n in drafts.tolist()] == [8, 8, 8, 9, 21]


def test_projector_tokens_and_the_shortest_audio():
    # ceil(T / 15) windows of 3 queries each, for the padded batch.
    assert [num_projector_tokens(t, 15, 5) for t in (1, 15, 16, 23, 30, 31)] == [3, 3, 6, 6, 6, 9]
    shortest = min_samples_for_audio_token(5)
    assert shortest == 1600
    assert num_audio_tokens(num_encoder_frames(shortest), 5) == 1
    assert num_audio_tokens(num_encoder_frames(shortest - 1), 5) == 0


def test_masks_round_trip():
    lengths = torch.tensor([3, 1, 4])
    mask = lengths_to_mask(lengths, 5)
    assert mask.tolist() == [
        [True, True, True, False, False],
        [True, False, False, False, False],
        [True, True, True, True, False],
    ]
    assert lengths_from_mask(mask, 3, 5).tolist() == [3, 1, 4]
    assert lengths_from_mask(None, 2, 7).tolist() == [7, 7]


def test_bad_masks_are_refused():
    mask = lengths_to_mask(torch.tensor([3, 2]), 4)
    with pytest.raises(ValueError, match=r"input_features_mask has shape \(2, 4\), expected \(2, 5\)"):
        lengths_from_mask(mask, 2, 5)
    holes = mask.clone()
    holes[0, 1] = False
    with pytest.raises(ValueError, match="right-padding mask"):
        lengths_from_mask(holes, 2, 4)
