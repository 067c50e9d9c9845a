"""Opt-in dynamic int8 quantization for CPU inference (docs/performance.md, "int8 on CPU").

Every linear layer of the model — the encoder's projections and feed-forwards, the conformer
convolution module's pointwise convolutions, the projector, the editor and the output heads — becomes
PyTorch's dynamically quantized ``Linear``: weights stored in int8 with one scale per output channel,
activations quantized per call, and the products computed by fbgemm's int8 kernels, which use the
VNNI / AMX instructions where the CPU has them. Everything else (normalisation, attention softmax,
the depthwise convolution, embeddings) stays in float32.

It is never the default: it changes the numbers (see the measured agreement in docs/performance.md),
it runs on CPU only, and a quantized model cannot be saved — quantize after loading instead.
"""

from __future__ import annotations

import warnings

import torch
from torch import nn

__all__ = ["quantize_int8", "is_quantized", "linear_parameters"]

_QUANTIZED_ATTR = "_granite_nar_quantization"


def is_quantized(model: nn.Module) -> bool:
    """Whether :func:`quantize_int8` has been applied to ``model``."""
    return getattr(model, _QUANTIZED_ATTR, None) is not None


def linear_parameters(layer: nn.Module) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``(weight, bias)`` of a linear layer as float tensors, quantized or not."""
    if isinstance(layer, nn.Linear):
        return layer.weight, layer.bias
    weight, bias = layer.weight(), layer.bias()  # dynamically quantized: packed int8 weight
    return weight.dequantize(), bias


def _pointwise_convs_as_linear(model: nn.Module) -> None:
    """Replace the conv modules' kernel-size-1 ``Conv1d`` layers by equal ``nn.Linear`` layers.

    The convolution module already computes them as matrix multiplies on the ``(B, T, C)`` layout; as
    ``nn.Linear`` modules they are quantized like every other linear layer.
    """
    from .modeling_encoder import GraniteSpeechNarConformerConvModule

    for module in model.modules():
        if not isinstance(module, GraniteSpeechNarConformerConvModule):
            continue
        for name in ("up_conv", "down_conv"):
            conv = getattr(module, name)
            if not isinstance(conv, nn.Conv1d):
                continue
            linear = nn.Linear(conv.in_channels, conv.out_channels, bias=conv.bias is not None)
            with torch.no_grad():
                linear.weight.copy_(conv.weight.squeeze(-1))
                if conv.bias is not None:
                    linear.bias.copy_(conv.bias)
            setattr(module, name, linear)


def quantize_int8(model: nn.Module) -> nn.Module:
    """Quantize ``model``'s linear layers to dynamic int8, in place, and return it.

    ``model`` is a :class:`~granite_nar.GraniteSpeechNarForCTC` (or any of its parts) on the CPU in
    float32, in eval mode; the result is for inference only.
    """
    if is_quantized(model):
        return model
    parameter = next(model.parameters(), None)
    if parameter is None:
        raise ValueError("quantize_int8: the model has no parameters.")
    if parameter.device.type != "cpu":
        raise ValueError(
            f"quantize_int8 runs on CPU only, but the model is on {parameter.device}; move it with "
            "model.to('cpu') first, or use bfloat16 on an accelerator."
        )
    if parameter.dtype != torch.float32:
        raise ValueError(
            f"quantize_int8 needs a float32 model (the int8 kernels take float32 activations), but it is "
            f"{parameter.dtype}; load it with dtype=torch.float32."
        )
    model.eval()
    _pointwise_convs_as_linear(model)
    qconfig = torch.ao.quantization.per_channel_dynamic_qconfig
    with warnings.catch_warnings():
        # PyTorch announces that its quantized tensor types move to the torchao project; they are what
        # its CPU int8 kernels (fbgemm) run on today, and torchao's eager CPU path is not faster.
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        warnings.filterwarnings("ignore", category=UserWarning, message=".*deprecated.*")
        torch.ao.quantization.quantize_dynamic(model, {nn.Linear: qconfig}, dtype=torch.qint8, inplace=True)
    setattr(model, _QUANTIZED_ATTR, "int8")
    return model
