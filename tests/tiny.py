"""Tiny configurations and inputs shared by the tests (no network, no real weights)."""

from __future__ import annotations

from pathlib import Path

import torch

from granite_nar import GraniteSpeechNarForCTC
from granite_nar.testing import tiny_config

FIXTURES = Path(__file__).parent / "fixtures"
VOCAB = 61
BLANK = VOCAB - 1  # like the released model, the blank is <|end_of_text|> near the end of the vocabulary
PAD = VOCAB - 2


def tiny_model(seed: int = 0, attn_implementation: str = "sdpa", **overrides) -> GraniteSpeechNarForCTC:
    torch.manual_seed(seed)
    model = GraniteSpeechNarForCTC._from_config(
        tiny_config(**overrides), attn_implementation=attn_implementation
    )
    _randomise_buffers(model)
    return model.eval()


def _randomise_buffers(model: torch.nn.Module) -> None:
    """Non-trivial BatchNorm statistics and weights, so that eval-mode BatchNorm is really exercised."""
    g = torch.Generator().manual_seed(1234)
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm1d):
            module.running_mean.copy_(torch.randn(module.running_mean.shape, generator=g) * 0.1)
            module.running_var.copy_(torch.rand(module.running_var.shape, generator=g) + 0.5)
            module.weight.data.copy_(torch.rand(module.weight.shape, generator=g) + 0.5)


def random_features(lengths: list[int], seed: int = 0, dim: int = 160) -> tuple[torch.Tensor, torch.Tensor]:
    """Padded ``(B, T_max, dim)`` features and their ``(B, T_max)`` mask; padding filled with noise on purpose."""
    g = torch.Generator().manual_seed(seed)
    t_max = max(lengths)
    feats = torch.randn(len(lengths), t_max, dim, generator=g)
    mask = torch.arange(t_max)[None, :] < torch.tensor(lengths)[:, None]
    return feats, mask


def single(feats: torch.Tensor, mask: torch.Tensor, b: int) -> torch.Tensor:
    """Utterance ``b`` of a padded batch, alone: ``(1, T_b, dim)``."""
    return feats[b : b + 1, : int(mask[b].sum())]
