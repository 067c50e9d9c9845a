"""Opt-in ``torch.compile`` of the repeated blocks (docs/performance.md, "torch.compile").

Each conformer block of the encoder and each decoder layer of the editor is compiled in place with
``nn.Module.compile(dynamic=True)``: the blocks of a stack share their code, so one compiled graph
serves all of them, and dynamic shapes keep new utterance lengths from recompiling after the first
few. The module tree, parameter names and checkpoints are unchanged. The first call pays the compile
time (tens of seconds on a CPU); what it gains depends on the hardware — little where matrix
multiplies dominate, as they do on a CPU — so it is never the default.
"""

from __future__ import annotations

from torch import nn

__all__ = ["compile_blocks"]


def compile_blocks(model: nn.Module, **compile_kwargs) -> nn.Module:
    """Compile ``model``'s conformer blocks and editor layers in place and return it.

    ``model`` is a :class:`~granite_nar.GraniteSpeechNarForCTC`; ``compile_kwargs`` go to
    ``torch.compile`` (default ``dynamic=True``).
    """
    from .modeling_encoder import GraniteSpeechNarConformerBlock

    compile_kwargs.setdefault("dynamic", True)
    blocks = [m for m in model.modules() if isinstance(m, GraniteSpeechNarConformerBlock)]
    language_model = getattr(getattr(model, "model", None), "language_model", None)
    blocks += list(getattr(language_model, "layers", []))
    if not blocks:
        raise ValueError(f"compile_blocks: {type(model).__name__} has no conformer blocks or editor layers.")
    for block in blocks:
        block.compile(**compile_kwargs)
    return model
