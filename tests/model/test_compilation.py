"""Opt-in ``torch.compile`` of the repeated blocks: the same tokens as eager, the same module tree.

One test compiles for real (inductor, about a minute on two CPU cores): the four held-out tiny-synth
fixtures in one batch, compiled vs eager, token for token.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from granite_nar import GraniteSpeechNarForCTC, load_model, transcribe
from granite_nar.model.compilation import compile_blocks

REPO = Path(__file__).resolve().parents[2]
MODEL = REPO / "examples" / "models" / "tiny-synth"
FILES = sorted(str(p) for p in (REPO / "tests" / "fixtures" / "tiny_synth").glob("*.wav"))


def test_compiled_blocks_give_the_eager_tokens():
    eager = GraniteSpeechNarForCTC.from_pretrained(MODEL, dtype=torch.float32).eval()
    expected = transcribe(FILES, model=eager, processor=MODEL, return_token_scores=True)
    model, processor = load_model(MODEL, device="cpu", compile=True)
    assert list(model.state_dict()) == list(eager.state_dict())  # checkpoints are unchanged
    compiled = transcribe(FILES, model=model, processor=processor, return_token_scores=True)
    for a, b in zip(expected, compiled, strict=True):
        assert a.segments[0].tokens == b.segments[0].tokens
        assert a.text == b.text


def test_compile_blocks_needs_a_model_with_blocks():
    with pytest.raises(ValueError, match="has no conformer blocks or editor layers"):
        compile_blocks(nn.Linear(2, 2))
