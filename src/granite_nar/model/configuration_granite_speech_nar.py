"""Configurations of Granite Speech NAR.

Every default equals the released ``ibm-granite/granite-speech-4.1-2b-nar`` checkpoint (docs/reference_behaviour.md §1). Field
names follow the native transformers layout (docs/reference_behaviour.md §6.4, §11.1); the original remote-code names are
mapped in :mod:`granite_nar.checkpoints.original_layout`.

Three fields record where the released weights and the newest transformers port disagree; their
defaults reproduce the code that produced the published numbers (docs/reference_behaviour.md §11.2):

* ``GraniteSpeechNarEncoderConfig.export_after_self_conditioning`` (layer 8 exported after the
  self-conditioning residual, docs/reference_behaviour.md §3.1.5),
* ``GraniteSpeechNarConfig.min_edit_sequence_length`` (at least 8 insertion slots, docs/reference_behaviour.md §4),
* the ``N // 320`` frame rule, a constant of the feature extractor (docs/reference_behaviour.md §2.2).

A config read from a dict or a folder (``from_dict``, ``from_pretrained``, the Auto classes) is checked
against its class: a ``model_type`` other than the class's own (at the top or in a sub-config) is refused
with a ``ValueError`` naming the file, both types and what to do; a field neither the class nor
transformers' own bookkeeping knows gives one :class:`UnknownConfigFieldWarning` naming every such field.
Unknown fields warn rather than fail so that a config written by a newer ``granite_nar`` (with a field
this version lacks) still loads; as in transformers they are kept as attributes and otherwise unused.
"""

from __future__ import annotations

import contextvars
import dataclasses
import functools
import os
import warnings
from pathlib import Path

from huggingface_hub.dataclasses import strict
from transformers import GraniteConfig
from transformers.configuration_utils import PreTrainedConfig

from ..checkpoints.original_layout import convert_config_dict, is_original_config

__all__ = [
    "GraniteSpeechNarEncoderConfig",
    "GraniteSpeechNarProjectorConfig",
    "GraniteSpeechNarTextConfig",
    "GraniteSpeechNarConfig",
    "UnknownConfigFieldWarning",
    "check_config_dict",
]


class UnknownConfigFieldWarning(UserWarning):
    """A config field this version of ``granite_nar`` does not know: kept as an attribute, otherwise unused."""


# Keys transformers itself reads or writes in a config.json besides a config's dataclass fields
# (bookkeeping, backward-compatible aliases, fine-tuning and quantization settings).
TRANSFORMERS_CONFIG_KEYS = frozenset(
    {
        "model_type",
        "transformers_version",
        "architectures",
        "dtype",
        "torch_dtype",
        "_name_or_path",
        "name_or_path",
        "_commit_hash",
        "output_attentions",
        "output_hidden_states",
        "return_dict",
        "attn_implementation",
        "experts_implementation",
        "_attn_implementation_internal",
        "_experts_implementation_internal",
        "_attn_implementation_autoset",
        "num_labels",
        "id2label",
        "label2id",
        "problem_type",
        "chunk_size_feed_forward",
        "is_encoder_decoder",
        "per_layer_config",
        "tie_last_hidden_states",
        "tie_word_embeddings",
        "auto_map",
        "custom_pipelines",
        "quantization_config",
        "_pre_quantization_dtype",
        "use_cache",
        "rope_scaling",
        "rope_theta",
        "pad_token_id",
        "bos_token_id",
        "eos_token_id",
        "sep_token_id",
        "decoder_start_token_id",
        "tokenizer_class",
        "task_specific_params",
        "finetuning_task",
    }
)
# Keys granite_nar itself writes besides the fields: the random-weights marker of the demo models
# (granite_nar.testing.demo, read by the granite-nar command line).
GRANITE_NAR_CONFIG_KEYS = frozenset({"granite_nar_random_demo"})

# What a config is being read from (set by from_pretrained, read by from_dict), for the messages.
_SOURCE: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "granite_nar_config_source", default=None
)


@functools.cache
def _known_fields(cls) -> frozenset[str]:
    names = {f.name for f in dataclasses.fields(cls)} | set(cls.attribute_map)
    try:  # generation parameters in old configs: transformers pops them (they belong in generation_config.json)
        from transformers import GenerationConfig

        names |= set(GenerationConfig._get_default_generation_params())
    except (ImportError, AttributeError):  # pragma: no cover - another transformers version
        pass
    return frozenset(names | TRANSFORMERS_CONFIG_KEYS | GRANITE_NAR_CONFIG_KEYS)


def _describe_source(ref: str | os.PathLike | None) -> str:
    if not ref:
        return "config dict"
    path = Path(ref)
    if path.is_dir():
        return str(path / "config.json")
    if path.is_file():
        return str(path)
    return f"config.json of {os.fspath(ref)}"


def check_config_dict(cls, config_dict: dict, source: str | os.PathLike | None = None) -> None:
    """Check a native config dict against ``cls`` before it is built (``from_dict`` calls this).

    Raises ``ValueError`` for a ``model_type`` other than ``cls.model_type`` (or, in a sub-config, other than
    the sub-config class's), naming ``source``, both types and what to do. Warns once
    (:class:`UnknownConfigFieldWarning`) naming every field, sub-config fields included
    (``encoder_config.foo``), that neither the class nor transformers' bookkeeping knows.
    """
    where = _describe_source(source)
    unknown = _check_fields(cls, config_dict, where, prefix="")
    if unknown:
        fields = ", ".join(repr(name) for name in unknown)
        s, them, attributes = ("s", "them", "attributes") if len(unknown) > 1 else ("", "it", "an attribute")
        warnings.warn(
            f"{where}: unknown config field{s} {fields} for {cls.model_type!r}: this version of granite_nar "
            f"does not know {them} (kept as {attributes}, otherwise ignored). If a newer granite_nar wrote "
            "this config, upgrade granite_nar (git pull, then pip install -e . in the clone); otherwise fix the spelling or "
            f"remove {them} from the file.",
            UnknownConfigFieldWarning,
            stacklevel=4,
        )


def _check_fields(cls, config_dict: dict, where: str, prefix: str) -> list[str]:
    model_type = config_dict.get("model_type")
    if model_type is not None and model_type != cls.model_type:
        if prefix:
            raise ValueError(
                f"{where}: {prefix}model_type is {model_type!r}, expected {cls.model_type!r} "
                f"({cls.__name__}). Fix or remove {prefix}model_type in the file, or save the config again "
                "with granite_nar."
            )
        raise ValueError(
            f"{where}: model_type is {model_type!r}, expected {cls.model_type!r}: this config describes "
            f"another model, not a {cls.__name__}. Load it with the class made for {model_type!r} (e.g. "
            "transformers.AutoConfig / AutoModel), or point at a Granite Speech NAR checkpoint."
        )
    known = _known_fields(cls)
    unknown = [prefix + key for key in config_dict if key not in known]
    for key, sub_cls in getattr(cls, "_component_configs", {}).items():
        if isinstance(config_dict.get(key), dict):
            unknown += _check_fields(sub_cls, config_dict[key], where, prefix=f"{prefix}{key}.")
    return unknown


class _CheckedLoading:
    """``from_dict`` / ``from_pretrained`` that check the dict first (:func:`check_config_dict`)."""

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *args, **kwargs):
        token = _SOURCE.set(os.fspath(pretrained_model_name_or_path))
        try:
            return super().from_pretrained(pretrained_model_name_or_path, *args, **kwargs)
        finally:
            _SOURCE.reset(token)

    @classmethod
    def from_dict(cls, config_dict: dict, **kwargs):
        check_config_dict(cls, config_dict, kwargs.get("name_or_path") or _SOURCE.get())
        return super().from_dict(config_dict, **kwargs)


@strict
class GraniteSpeechNarEncoderConfig(_CheckedLoading, PreTrainedConfig):
    r"""Conformer CTC encoder with a self-conditioned character CTC head and a pooled BPE CTC head.

    Args:
        input_dim: width of one input frame (two stacked 80-bin log-mel frames).
        num_layers: conformer blocks.
        hidden_dim: model width.
        feedforward_mult: feed-forward inner width is ``hidden_dim * feedforward_mult``.
        num_heads, dim_head: block attention heads and their width (``dim_head`` defaults to
            ``hidden_dim // num_heads``).
        output_dim: character CTC classes of the mid-layer head (index 0 is its blank).
        context_size: attention block length in frames (200 frames = 4 s); frames attend only inside
            their own block.
        max_pos_emb: the Shaw relative-position table has ``2 * max_pos_emb + 1`` rows.
        dropout: dropout inside the conformer blocks (training only).
        pred_dropout: dropout before the CTC heads (training only).
        conv_kernel_size, conv_expansion_factor: depthwise convolution kernel and GLU width factor.
        self_conditioning_layer: 1-based block after which the character CTC posteriors are fed back.
        export_after_self_conditioning: record the self-conditioning layer's hidden state *after* the
            ``out_mid`` residual is added (the released weights, docs/reference_behaviour.md §3.1.5). ``False`` reproduces the
            newest transformers port, which records it before.
        vocabulary_size: BPE CTC classes, the language model's vocabulary (blank included).
        pooling_window: encoder frames per BPE window (posterior-weighted pooling, 80 ms).
        cat_hidden_layers: hidden states handed to the projector besides the last layer, as indices into
            ``(input_linear output, block 1, ..., block N)``.
        batch_layout: how an inference batch of several utterances runs through the conformer blocks.
            ``"flat"`` lays the utterances end to end in one row, each starting on a ``context_size``
            block boundary with at least ``conv_kernel_size // 2`` masked frames before the next, so no
            attention block or convolution window crosses utterances and no work is spent on padding to
            the longest; ``"padded"`` runs the ``(B, T_max)`` batch as given; ``"auto"`` (default) takes
            the flat row when it has fewer frames than the padded batch. Both give the same valid
            frames (docs/performance.md); training runs padded (BatchNorm batch statistics).
    """

    model_type = "granite_speech_nar_encoder"
    attribute_map = {
        "hidden_size": "hidden_dim",
        "num_hidden_layers": "num_layers",
        "num_attention_heads": "num_heads",
    }

    input_dim: int = 160
    num_layers: int = 16
    hidden_dim: int = 1024
    feedforward_mult: int = 4
    num_heads: int = 8
    dim_head: int | None = None
    output_dim: int = 348
    context_size: int = 200
    max_pos_emb: int = 512
    dropout: float | int = 0.1
    pred_dropout: float | int = 0.25
    conv_kernel_size: int = 15
    conv_expansion_factor: int = 2
    self_conditioning_layer: int | None = None
    export_after_self_conditioning: bool = True
    vocabulary_size: int = 100352
    pooling_window: int = 4
    cat_hidden_layers: list[int] | None = None
    initializer_range: float = 0.02
    batch_layout: str = "auto"

    def __post_init__(self, **kwargs):
        if self.dim_head is None:
            self.dim_head = self.hidden_dim // self.num_heads
        if self.self_conditioning_layer is None:
            self.self_conditioning_layer = self.num_layers // 2
        if self.cat_hidden_layers is None:
            self.cat_hidden_layers = [4, 8, 12] if self.num_layers == 16 else [self.num_layers // 4]
        self.cat_hidden_layers = list(self.cat_hidden_layers)
        super().__post_init__(**kwargs)
        self._check()

    def _check(self):
        if not 0 < self.context_size <= self.max_pos_emb:
            raise ValueError(
                f"context_size ({self.context_size}) must be in 1..max_pos_emb ({self.max_pos_emb})."
            )
        if not 1 <= self.self_conditioning_layer <= self.num_layers:
            raise ValueError(
                f"self_conditioning_layer ({self.self_conditioning_layer}) must be in 1..num_layers "
                f"({self.num_layers})."
            )
        for idx in self.cat_hidden_layers:
            if not 0 <= idx <= self.num_layers:
                raise ValueError(
                    f"cat_hidden_layers entry {idx} is outside 0..num_layers ({self.num_layers})."
                )
        if self.pooling_window < 1:
            raise ValueError(f"pooling_window must be >= 1, got {self.pooling_window}.")
        if self.batch_layout not in ("auto", "flat", "padded"):
            raise ValueError(f"batch_layout must be 'auto', 'flat' or 'padded', got {self.batch_layout!r}.")

    @property
    def num_exported_layers(self) -> int:
        """Hidden states concatenated for the projector: the ``cat_hidden_layers`` plus the last layer."""
        return len(self.cat_hidden_layers) + 1


@strict
class GraniteSpeechNarProjectorConfig(_CheckedLoading, PreTrainedConfig):
    r"""Windowed Q-Former projector: 15-frame windows, 3 learned queries each (docs/reference_behaviour.md §3.2).

    Args:
        hidden_size: Q-Former width (also its output width).
        intermediate_size: Q-Former MLP inner width.
        num_hidden_layers: Q-Former layers (cross-attention + MLP, no query self-attention).
        num_attention_heads, num_key_value_heads: cross-attention heads.
        window_size: encoder frames per window (300 ms).
        downsample_rate: encoder frames per output token (100 ms); ``window_size // downsample_rate``
            queries per window.
        attention_bias: biases in the cross-attention projections.
        layer_norm_eps: epsilon of every projector LayerNorm.
        hidden_act: Q-Former MLP activation.
        encoder_hidden_size: width of the concatenated encoder hidden states; filled in by
            :class:`GraniteSpeechNarConfig` from the encoder config when left ``None``.
    """

    model_type = "granite_speech_nar_projector"

    hidden_size: int = 2048
    intermediate_size: int = 4096
    num_hidden_layers: int = 2
    num_attention_heads: int = 32
    num_key_value_heads: int | None = None
    window_size: int = 15
    downsample_rate: int = 5
    attention_bias: bool = True
    layer_norm_eps: float = 1e-6
    hidden_act: str = "silu"
    encoder_hidden_size: int | None = None
    initializer_range: float = 0.02

    def __post_init__(self, **kwargs):
        if self.num_key_value_heads is None:
            self.num_key_value_heads = self.num_attention_heads
        super().__post_init__(**kwargs)
        if self.window_size % self.downsample_rate:
            raise ValueError(
                f"window_size ({self.window_size}) must be a multiple of downsample_rate "
                f"({self.downsample_rate})."
            )
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(
                f"hidden_size ({self.hidden_size}) must be a multiple of num_attention_heads "
                f"({self.num_attention_heads})."
            )
        if self.num_key_value_heads != self.num_attention_heads:
            raise ValueError(
                f"the Q-Former uses plain multi-head attention: num_key_value_heads "
                f"({self.num_key_value_heads}) must equal num_attention_heads ({self.num_attention_heads})."
            )

    @property
    def num_queries(self) -> int:
        return self.window_size // self.downsample_rate


@strict
class GraniteSpeechNarTextConfig(_CheckedLoading, GraniteConfig):
    r"""The Granite-4.0-1B-shaped language model, run as a bidirectional editor (docs/reference_behaviour.md §1.3, §3.3).

    Same fields as :class:`transformers.GraniteConfig`; the defaults are the released editor's.
    """

    model_type = "granite_speech_nar_text"

    vocab_size: int = 100352
    hidden_size: int = 2048
    intermediate_size: int = 4096
    num_hidden_layers: int = 40
    num_attention_heads: int = 16
    num_key_value_heads: int | None = 4
    hidden_act: str = "silu"
    max_position_embeddings: int = 4096
    rms_norm_eps: float = 1e-5
    pad_token_id: int | None = 100256
    bos_token_id: int | None = 100257
    eos_token_id: int | list[int] | None = 100257
    tie_word_embeddings: bool = True
    embedding_multiplier: float | int = 12.0
    logits_scaling: float | int = 8.0
    residual_multiplier: float | int = 0.22
    attention_multiplier: float | int = 0.0078125

    def __post_init__(self, **kwargs):
        if self.rope_parameters is None:
            self.rope_parameters = {"rope_type": "default", "rope_theta": 10000.0}
        super().__post_init__(**kwargs)


@strict
class GraniteSpeechNarConfig(_CheckedLoading, PreTrainedConfig):
    r"""Granite Speech NAR: encoder + BPE CTC head + projector + bidirectional editor.

    Args:
        encoder_config, projector_config, text_config: sub-configurations (dicts or config objects).
        blank_token_id: CTC blank of both the encoder BPE head and the editor (``<|end_of_text|>``).
        min_edit_sequence_length: the editor always gets at least this many insertion slots
            (remote code: 8; the newest transformers port: no minimum). docs/reference_behaviour.md §4.
        scale_projected_embeddings: divide the projector output by the text model's
            ``embedding_multiplier`` so that audio rows enter the residual stream unscaled (docs/reference_behaviour.md §3.2).
        ce_loss_lambda: weight of the copy (cross-entropy-to-input) regulariser (docs/reference_behaviour.md §5.2).
        encoder_ctc_loss_lambda: weight of the encoder BPE CTC loss (docs/reference_behaviour.md §5.3).
    """

    model_type = "granite_speech_nar"
    # attn_implementation reaches every sub-config: the editor, the encoder's block attention and the
    # Q-Former's cross-attention each choose their backend from it.
    sub_configs = {
        "encoder_config": GraniteSpeechNarEncoderConfig,
        "projector_config": GraniteSpeechNarProjectorConfig,
        "text_config": GraniteSpeechNarTextConfig,
    }
    _component_configs = {
        "encoder_config": GraniteSpeechNarEncoderConfig,
        "projector_config": GraniteSpeechNarProjectorConfig,
        "text_config": GraniteSpeechNarTextConfig,
    }

    encoder_config: dict | PreTrainedConfig | None = None
    projector_config: dict | PreTrainedConfig | None = None
    text_config: dict | PreTrainedConfig | None = None
    blank_token_id: int = 100257
    min_edit_sequence_length: int = 8
    scale_projected_embeddings: bool = True
    ce_loss_lambda: float | int = 0.0
    encoder_ctc_loss_lambda: float | int = 0.0
    tie_word_embeddings: bool = True
    initializer_range: float = 0.02

    def __post_init__(self, **kwargs):
        for key, cls in self._component_configs.items():
            value = getattr(self, key)
            if value is None:
                value = cls()
            elif isinstance(value, dict):
                sub_type = value.get("model_type", cls.model_type)
                if sub_type != cls.model_type:
                    raise ValueError(
                        f"{key}.model_type is {sub_type!r}, expected {cls.model_type!r} ({cls.__name__}); "
                        f"fix or remove {key}.model_type."
                    )
                value = cls(**{k: v for k, v in value.items() if k != "model_type"})
            elif not isinstance(value, cls):
                raise TypeError(f"{key} must be a dict or a {cls.__name__}, got {type(value).__name__}.")
            setattr(self, key, value)
        enc, proj, text = self.encoder_config, self.projector_config, self.text_config
        expected_width = enc.hidden_dim * enc.num_exported_layers
        if proj.encoder_hidden_size is None:
            proj.encoder_hidden_size = expected_width
        super().__post_init__(**kwargs)
        if proj.encoder_hidden_size != expected_width:
            raise ValueError(
                f"projector_config.encoder_hidden_size ({proj.encoder_hidden_size}) must equal "
                f"encoder hidden_dim ({enc.hidden_dim}) * (len(cat_hidden_layers) + 1) = {expected_width}."
            )
        if proj.hidden_size != text.hidden_size:
            raise ValueError(
                f"projector_config.hidden_size ({proj.hidden_size}) must equal text_config.hidden_size "
                f"({text.hidden_size}): the projector output is fed to the editor as embeddings."
            )
        if enc.vocabulary_size != text.vocab_size:
            raise ValueError(
                f"encoder_config.vocabulary_size ({enc.vocabulary_size}) must equal text_config.vocab_size "
                f"({text.vocab_size}): the BPE CTC draft is edited with the same vocabulary."
            )
        if not 0 <= self.blank_token_id < text.vocab_size:
            raise ValueError(
                f"blank_token_id ({self.blank_token_id}) must lie inside the vocabulary "
                f"(text_config.vocab_size = {text.vocab_size})."
            )
        if self.min_edit_sequence_length < 1:
            raise ValueError(f"min_edit_sequence_length must be >= 1, got {self.min_edit_sequence_length}.")

    def get_text_config(self, *args, **kwargs):
        return self.text_config

    @classmethod
    def from_dict(cls, config_dict: dict, **kwargs):
        """Also reads the original remote-code ``config.json`` layout, mapping its fields (docs/reference_behaviour.md §6.3).

        A native dict is checked first (:func:`check_config_dict`): a wrong ``model_type`` is refused, unknown
        fields warn. The original layout is mapped strictly (an unknown field raises).
        """
        if is_original_config(config_dict):
            config_dict = convert_config_dict(config_dict)
        return super().from_dict(config_dict, **kwargs)
