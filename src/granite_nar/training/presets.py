"""Trainable-parameter presets: which parts of Granite Speech NAR a fine-tuning run updates.

======================  ======================================================================================
preset                  trainable parameters (everything else is frozen)
======================  ======================================================================================
``full``                all of them
``encoder``             the conformer encoder and its BPE CTC head (``model.encoder``, ``model.out_bpe``)
``projector``           the windowed Q-Former projector (``model.projector``)
``editor``              the whole editor (``model.language_model``: embeddings = tied output head, layers,
                        norm)
``editor_last_n``       the last ``N`` editor layers and the editor's final RMSNorm (which acts on their
                        output); the tied embedding / output head stays frozen
``editor_last_n_head``  ``editor_last_n`` and the output head ``lm_head``, which is tied to the editor's input
                        embedding (``model.language_model.embed_tokens``): one tensor, trained as both
``lora``                low-rank adapters (peft, ``train`` extra) on the linear layers of the encoder and/or
                        the editor (and optionally the projector); the base weights stay frozen
======================  ======================================================================================

The model authors recommend the LoRA preset on both encoder and editor for domain or language adaptation.

Frozen BatchNorm layers (in the encoder's convolution modules) are also kept in inference mode while
training: in training mode they would normalise with batch statistics and overwrite their running
statistics, which is a change to a frozen part of the model.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import torch
from torch import nn

__all__ = [
    "PRESETS",
    "TrainableSummary",
    "apply_preset",
    "count_parameters",
    "lora_target_modules",
    "lora_linear_layers",
    "trainable_parameter_names",
    "unwrap_model",
    "is_peft_model",
    "merged_state_dict",
    "freeze_batch_norm_statistics",
]

PRESETS = ("full", "encoder", "projector", "editor", "editor_last_n", "editor_last_n_head", "lora")

# Submodules of GraniteSpeechNarForCTC reported by count_parameters, in data-flow order.
_PARTS = {
    "encoder": "model.encoder",
    "out_bpe": "model.out_bpe",
    "projector": "model.projector",
    "editor": "model.language_model",
}

# Linear layers LoRA can adapt, per part (regular expressions on the full module name).
_LORA_PATTERNS = {
    "encoder": r"model\.encoder\.layers\.\d+\.(?:ff1\.up_proj|ff1\.down_proj|ff2\.up_proj|ff2\.down_proj|attn\.to_q|attn\.to_kv|attn\.to_out)",
    "projector": r"model\.projector\.(?:proj|qformer\.linear|qformer\.layers\.\d+\.(?:cross_attn\.[qkvo]_proj|mlp\.fc[12]))",
    "editor": r"model\.language_model\.layers\.\d+\.(?:self_attn\.[qkvo]_proj|mlp\.(?:gate|up|down)_proj)",
}


@dataclass
class TrainableSummary:
    """Trainable and total parameter counts, overall and per part (shared tensors counted once)."""

    preset: str
    trainable: int
    total: int
    parts: dict[str, tuple[int, int]]

    def __str__(self) -> str:
        lines = [
            f"preset {self.preset!r}: {self.trainable:,} trainable of {self.total:,} parameters "
            f"({100 * self.trainable / max(self.total, 1):.2f} %)"
        ]
        for name, (trainable, total) in self.parts.items():
            lines.append(f"  {name:10s} {trainable:>12,} / {total:,}")
        return "\n".join(lines)


def unwrap_model(model: nn.Module) -> nn.Module:
    """The GraniteSpeechNarForCTC inside a peft wrapper (LoRA layers are injected in place); else ``model``."""
    get_base = getattr(model, "get_base_model", None)
    return get_base() if callable(get_base) else model


def is_peft_model(model: nn.Module) -> bool:
    """Whether ``model`` is a peft wrapper (``PeftModel``), e.g. the ``lora`` preset's result."""
    return callable(getattr(model, "get_base_model", None)) and hasattr(model, "peft_config")


def merged_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """The state dict of the plain model that merging ``model``'s LoRA adapters would give, on the CPU.

    The keys are the plain :class:`~granite_nar.GraniteSpeechNarForCTC` names (``….weight``, not
    ``….base_layer.weight``), each adapted weight is ``W + B A · scaling`` of the active adapters, and
    ``model`` itself is not changed (unlike ``merge_and_unload``), so training can go on. Only one layer's
    merged weight is on the accelerator at a time. For a model without adapters, its own state dict.
    """
    base = unwrap_model(model)
    copies: dict[tuple, torch.Tensor] = {}

    def to_cpu(tensor: torch.Tensor) -> torch.Tensor:
        # Tied tensors (the editor's embedding and output head) stay one tensor on the CPU.
        key = (tensor.data_ptr(), tensor.device, tensor.shape, tensor.stride())
        if key not in copies:
            copies[key] = tensor.detach().cpu()
        return copies[key]

    if not is_peft_model(model):
        return {name: to_cpu(tensor) for name, tensor in base.state_dict().items()}
    from peft.tuners.lora import LoraLayer

    lora_layers = {name: module for name, module in base.named_modules() if isinstance(module, LoraLayer)}
    if any(any(module.use_dora.values()) for module in lora_layers.values()):
        raise NotImplementedError("merged_state_dict does not support DoRA adapters; use merge_and_unload.")
    merged: dict[str, torch.Tensor] = {}
    for name, tensor in base.state_dict().items():
        if any(part.startswith("lora_") for part in name.split(".")):
            continue  # the adapters' own tensors (lora_A, lora_B …), which merging removes
        owner, _, leaf = name.rpartition(".")
        if owner.endswith(".base_layer") and owner.removesuffix(".base_layer") in lora_layers:
            owner = owner.removesuffix(".base_layer")
            module = lora_layers[owner]
            if leaf == "weight":
                with torch.no_grad():
                    delta = sum(
                        module.get_delta_weight(adapter).to(tensor.dtype)
                        for adapter in module.active_adapters
                        if adapter in module.lora_A
                    )
                    # A new tensor, never shared: straight to the CPU (not through the cache of to_cpu,
                    # whose keys are the addresses of tensors the model keeps alive).
                    merged[f"{owner}.{leaf}"] = (tensor + delta).cpu()
                    continue
        merged[f"{owner}.{leaf}" if owner else leaf] = to_cpu(tensor)
    return merged


def count_parameters(model: nn.Module, preset: str = "") -> TrainableSummary:
    """Count trainable / total parameters overall and per part (encoder, out_bpe, projector, editor, other).

    LoRA adapter weights count towards the part they adapt.
    """
    base = unwrap_model(model)
    seen: set[int] = set()
    parts = {name: [0, 0] for name in (*_PARTS, "other")}
    for name, param in base.named_parameters(remove_duplicate=False):
        if id(param) in seen:
            continue
        seen.add(id(param))
        part = next((key for key, prefix in _PARTS.items() if name.startswith(prefix + ".")), "other")
        parts[part][1] += param.numel()
        if param.requires_grad:
            parts[part][0] += param.numel()
    if parts["other"] == [0, 0]:
        del parts["other"]
    trainable = sum(t for t, _ in parts.values())
    total = sum(n for _, n in parts.values())
    return TrainableSummary(preset, trainable, total, {k: (t, n) for k, (t, n) in parts.items()})


def lora_target_modules(targets: tuple[str, ...] | list[str]) -> str:
    """The peft ``target_modules`` regular expression for the given parts (``encoder``, ``projector``, ``editor``)."""
    unknown = set(targets) - set(_LORA_PATTERNS)
    if unknown or not targets:
        raise ValueError(
            f"LoRA targets must be a non-empty subset of {sorted(_LORA_PATTERNS)}, got {targets}."
        )
    return "|".join(f"(?:{_LORA_PATTERNS[t]})" for t in targets)


def freeze_batch_norm_statistics(model: nn.Module) -> None:
    """Put every BatchNorm whose affine parameters are frozen into inference mode at each forward."""

    def _eval_hook(module: nn.Module, args):
        module.train(False)

    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm) and not any(
            p.requires_grad for p in module.parameters()
        ):
            if not getattr(module, "_granite_nar_frozen", False):
                module.register_forward_pre_hook(_eval_hook)
                module._granite_nar_frozen = True


def apply_preset(
    model: nn.Module,
    preset: str,
    *,
    num_layers: int | None = None,
    lora_targets: tuple[str, ...] | list[str] = ("encoder", "editor"),
    lora_rank: int = 8,
    lora_alpha: int = 16,
    lora_dropout: float = 0.0,
    verbose: bool = True,
) -> tuple[nn.Module, TrainableSummary]:
    """Freeze ``model`` (a :class:`~granite_nar.GraniteSpeechNarForCTC`) according to ``preset``.

    Args:
        preset: one of :data:`PRESETS`.
        num_layers: ``N`` of ``editor_last_n`` and ``editor_last_n_head``.
        lora_targets, lora_rank, lora_alpha, lora_dropout: the ``lora`` preset's adapters.
        verbose: print the trainable-parameter summary.

    Returns ``(model, summary)``; ``model`` is a peft ``PeftModel`` for ``lora`` (the same object otherwise).
    """
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose one of {PRESETS}.")
    base = unwrap_model(model)
    for param in base.parameters():
        param.requires_grad_(preset == "full")

    if preset == "encoder":
        _unfreeze(base.model.encoder, base.model.out_bpe)
    elif preset == "projector":
        _unfreeze(base.model.projector)
    elif preset == "editor":
        _unfreeze(base.model.language_model)
    elif preset in ("editor_last_n", "editor_last_n_head"):
        layers = base.model.language_model.layers
        if num_layers is None or not 1 <= num_layers <= len(layers):
            raise ValueError(f"{preset} needs num_layers in 1..{len(layers)}, got {num_layers}.")
        _unfreeze(*layers[len(layers) - num_layers :], base.model.language_model.norm)
        if preset == "editor_last_n_head":
            # The output head; with tied word embeddings (the released model) its weight is the editor's
            # input embedding, so that one tensor is trained for both uses.
            _unfreeze(base.get_output_embeddings())
    elif preset == "lora":
        try:
            from peft import LoraConfig, get_peft_model
        except ImportError as err:
            raise ImportError(
                "the lora preset needs peft: install the train extra from the clone, pip install -e '.[train]'"
            ) from err
        config = LoraConfig(
            r=lora_rank,
            lora_alpha=lora_alpha,
            lora_dropout=lora_dropout,
            target_modules=lora_target_modules(tuple(lora_targets)),
            bias="none",
        )
        model = get_peft_model(base, config)
    freeze_batch_norm_statistics(base)
    summary = count_parameters(
        model, f"{preset}={num_layers}" if preset.startswith("editor_last_n") else preset
    )
    if verbose:
        print(summary)
    return model, summary


def _unfreeze(*modules: nn.Module) -> None:
    for module in modules:
        for param in module.parameters():
            param.requires_grad_(True)


def trainable_parameter_names(model: nn.Module) -> list[str]:
    """Names of the parameters that will be updated (for tests and logs)."""
    return [name for name, p in unwrap_model(model).named_parameters() if p.requires_grad]


def lora_linear_layers(model: nn.Module, targets: tuple[str, ...] | list[str]) -> list[str]:
    """Names of the ``nn.Linear`` layers the ``lora`` preset adapts for ``targets`` (before wrapping)."""
    pattern = re.compile(lora_target_modules(tuple(targets)))
    return [
        name
        for name, module in unwrap_model(model).named_modules()
        if isinstance(module, nn.Linear) and pattern.fullmatch(name)
    ]
