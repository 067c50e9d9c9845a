"""Test support: what the test suite, the benchmarks and the examples build on, never the runtime.

Nothing under ``granite_nar`` outside this subpackage imports it (``tests/test_layout.py`` checks).

* :func:`tiny_config` (here): the one tiny configuration for tests, demo models, synthetic checkpoints
  and smoke benchmarks;
* :mod:`.reference`: slow, obviously-correct per-utterance oracles for the fast paths;
* :mod:`.synthetic_checkpoint`: checkpoints in the original remote-code layout, any size;
* :mod:`.synthetic_speech`: the espeak-ng speech corpus the bundled tiny model was trained on;
* :mod:`.demo`: a tiny model with random weights and a real tokenizer.

The tiny configuration: a 2-block encoder (16-frame attention blocks), a 1-layer Q-Former and a
2-layer editor. Every code path of the full model is on (self-conditioning, layer export, pooling,
windowing, GQA, packing), at about 0.1 M parameters.
"""

from __future__ import annotations

from ..model.configuration_granite_speech_nar import GraniteSpeechNarConfig

__all__ = ["tiny_config"]


def tiny_config(
    vocab_size: int = 61,
    blank_token_id: int | None = None,
    pad_token_id: int | None = None,
    encoder: dict | None = None,
    projector: dict | None = None,
    text: dict | None = None,
    **overrides,
) -> GraniteSpeechNarConfig:
    """A tiny :class:`GraniteSpeechNarConfig`.

    Like the released model, the blank (``<|end_of_text|>``) and the pad id sit at the end of the
    vocabulary unless given: ``blank = vocab_size - 1``, ``pad = vocab_size - 2``. ``encoder``,
    ``projector`` and ``text`` update the sub-config fields; other keyword arguments go to the top level.
    """
    blank = vocab_size - 1 if blank_token_id is None else blank_token_id
    pad = vocab_size - 2 if pad_token_id is None else pad_token_id
    encoder_fields = dict(
        num_layers=2,
        hidden_dim=32,
        feedforward_mult=2,
        num_heads=2,
        output_dim=11,
        context_size=16,
        max_pos_emb=20,
        conv_kernel_size=5,
        vocabulary_size=vocab_size,
        cat_hidden_layers=[1],
        self_conditioning_layer=1,
        dropout=0.0,
        pred_dropout=0.0,
    )
    projector_fields = dict(hidden_size=24, intermediate_size=48, num_attention_heads=4, num_hidden_layers=1)
    text_fields = dict(
        vocab_size=vocab_size,
        hidden_size=24,
        intermediate_size=40,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        pad_token_id=pad,
        bos_token_id=blank,
        eos_token_id=blank,
    )
    encoder_fields.update(encoder or {})
    projector_fields.update(projector or {})
    text_fields.update(text or {})
    return GraniteSpeechNarConfig(
        encoder_config=encoder_fields,
        projector_config=projector_fields,
        text_config=text_fields,
        blank_token_id=blank,
        **overrides,
    )
