"""Model testers and the helpers every test shares: the one place tests get tiny models and inputs from.

The pattern of transformers' model tests (``ParakeetEncoderModelTester`` / ``ParakeetForCTCModelTester``):
one tester per sub-model owns its tiny configuration and its inputs, and the full-model tester composes
them, building its :class:`~granite_nar.GraniteSpeechNarConfig` from the sub-testers' configs and its
inputs from the encoder tester's.

======================================  =================================================================
tester                                  configuration and inputs
======================================  =================================================================
GraniteSpeechNarEncoderModelTester      encoder config; ``(B, T, 160)`` features and a right-padding mask
GraniteSpeechNarProjectorModelTester    projector config; concatenated encoder states and their mask
GraniteSpeechNarEditorModelTester       text config; packed ``(1, ΣL, D)`` embeddings and their lengths
GraniteSpeechNarForCTCModelTester       the three above, composed; the encoder tester's inputs
======================================  =================================================================

With their defaults the testers give :func:`granite_nar.testing.tiny_config` field for field
(``tests/model/test_configuration.py`` checks), the tiny model the benchmarks, the demo model and the
synthetic checkpoints are built on.

Every tester's ``create_model`` builds the full tiny model (seeded, BatchNorm statistics randomised, eval mode)
and returns its part, so a sub-model has exactly the weights the full-model tests see at the same seed (the
projector, a plain ``nn.Module``, can only be initialised that way). The ``create_and_check_model`` helpers of
the encoder and the editor, model classes of their own, build them alone from the config they are given, as
transformers' testers do. The tests are plain pytest functions: ``parent`` is kept for the transformers
signature, and the ``create_and_check_*`` helpers use ``assert``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch

from granite_nar import GraniteSpeechNarConfig, GraniteSpeechNarForCTC
from granite_nar.lengths import num_audio_tokens, num_bpe_windows, num_projector_tokens, num_slots
from granite_nar.model.configuration_granite_speech_nar import (
    GraniteSpeechNarEncoderConfig,
    GraniteSpeechNarProjectorConfig,
    GraniteSpeechNarTextConfig,
)
from granite_nar.model.modeling_editor import GraniteSpeechNarEditor, PackedSequences
from granite_nar.model.modeling_encoder import GraniteSpeechNarEncoder

REPO = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).resolve().parent / "fixtures"
DEMO_WAV = REPO / "examples" / "audio" / "demo.wav"

VOCAB = 61
BLANK = VOCAB - 1  # like the released model, the blank is <|end_of_text|> near the end of the vocabulary
PAD = VOCAB - 2


def single(feats: torch.Tensor, mask: torch.Tensor, b: int) -> torch.Tensor:
    """Utterance ``b`` of a padded batch, alone: ``(1, T_b, dim)``."""
    return feats[b : b + 1, : int(mask[b].sum())]


def padding_mask(lengths: Sequence[int]) -> torch.Tensor:
    """``(B, max(lengths))`` right-padding mask, True on valid positions."""
    return torch.arange(max(lengths))[None, :] < torch.tensor(list(lengths))[:, None]


def _randomise_batch_norm(model: torch.nn.Module) -> None:
    """Non-trivial BatchNorm statistics and weights, so that eval-mode BatchNorm is really exercised."""
    g = torch.Generator().manual_seed(1234)
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm1d):
            module.running_mean.copy_(torch.randn(module.running_mean.shape, generator=g) * 0.1)
            module.running_var.copy_(torch.rand(module.running_var.shape, generator=g) + 0.5)
            module.weight.data.copy_(torch.rand(module.weight.shape, generator=g) + 0.5)


class GraniteSpeechNarEncoderModelTester:
    """The conformer encoder: a tiny :class:`GraniteSpeechNarEncoderConfig`, ``(B, T, 160)`` features and mask.

    2 blocks with 16-frame attention blocks; block 1 is both the self-conditioning layer and the exported
    one. The default batch mixes lengths on purpose: 12 is shorter than one projector window (15), 37 is not
    a multiple of the attention block, 70 spans 5 blocks and 5 frames make a single audio token.
    """

    def __init__(
        self,
        parent=None,
        seq_lengths: Sequence[int] = (37, 12, 70, 16, 5),
        num_layers: int = 2,
        hidden_dim: int = 32,
        feedforward_mult: int = 2,
        num_heads: int = 2,
        output_dim: int = 11,
        context_size: int = 16,
        max_pos_emb: int = 20,
        conv_kernel_size: int = 5,
        vocabulary_size: int = VOCAB,
        cat_hidden_layers: Sequence[int] = (1,),
        self_conditioning_layer: int = 1,
        dropout: float = 0.0,
        pred_dropout: float = 0.0,
        **config_kwargs,
    ):
        self.parent = parent
        self.seq_lengths = tuple(seq_lengths)
        self.batch_size = len(self.seq_lengths)
        self.seq_length = max(self.seq_lengths)
        self.num_layers = num_layers
        self.hidden_dim = hidden_dim
        self.feedforward_mult = feedforward_mult
        self.num_heads = num_heads
        self.output_dim = output_dim
        self.context_size = context_size
        self.max_pos_emb = max_pos_emb
        self.conv_kernel_size = conv_kernel_size
        self.vocabulary_size = vocabulary_size
        self.cat_hidden_layers = list(cat_hidden_layers)
        self.self_conditioning_layer = self_conditioning_layer
        self.dropout = dropout
        self.pred_dropout = pred_dropout
        self.config_kwargs = config_kwargs
        config = self.get_config()
        self.input_dim = config.input_dim
        self.pooling_window = config.pooling_window
        self.num_exported_layers = len(self.cat_hidden_layers) + 1  # the exported ones and the last block

    def get_config_dict(self) -> dict:
        """The encoder fields, as :func:`granite_nar.testing.tiny_config` writes them."""
        return dict(
            num_layers=self.num_layers,
            hidden_dim=self.hidden_dim,
            feedforward_mult=self.feedforward_mult,
            num_heads=self.num_heads,
            output_dim=self.output_dim,
            context_size=self.context_size,
            max_pos_emb=self.max_pos_emb,
            conv_kernel_size=self.conv_kernel_size,
            vocabulary_size=self.vocabulary_size,
            cat_hidden_layers=list(self.cat_hidden_layers),
            self_conditioning_layer=self.self_conditioning_layer,
            dropout=self.dropout,
            pred_dropout=self.pred_dropout,
            **self.config_kwargs,
        )

    def get_config(self) -> GraniteSpeechNarEncoderConfig:
        return GraniteSpeechNarEncoderConfig(**self.get_config_dict())

    def prepare_features(
        self, lengths: Sequence[int] | None = None, seed: int = 0, dtype: torch.dtype = torch.float32
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Padded ``(B, T_max, 160)`` features and their ``(B, T_max)`` mask; padding filled with noise on purpose."""
        lengths = list(self.seq_lengths if lengths is None else lengths)
        g = torch.Generator().manual_seed(seed)
        feats = torch.randn(len(lengths), max(lengths), self.input_dim, generator=g)
        return feats.to(dtype), padding_mask(lengths)

    def prepare_config_and_inputs(self, lengths: Sequence[int] | None = None, seed: int = 0):
        input_features, input_features_mask = self.prepare_features(lengths, seed)
        return self.get_config(), input_features, input_features_mask

    def prepare_config_and_inputs_for_common(self):
        config, input_features, input_features_mask = self.prepare_config_and_inputs()
        return config, {"input_features": input_features, "input_features_mask": input_features_mask}

    def create_model(self, seed: int = 0):
        """The encoder of the tiny full model built on this tester's config (eval mode, seeded)."""
        full = GraniteSpeechNarForCTCModelTester(self.parent, encoder_model_tester=self)
        return full.create_model(seed).model.encoder

    def create_and_check_model(self, config, input_features, input_features_mask):
        """The encoder built alone from ``config``: output shapes, pooled lengths, hidden states."""
        torch.manual_seed(0)
        encoder = GraniteSpeechNarEncoder._from_config(config)
        _randomise_batch_norm(encoder)
        encoder.eval()
        with torch.no_grad():
            out = encoder(input_features, input_features_mask, output_hidden_states=True)
        bsz, frames = input_features_mask.shape
        lengths = input_features_mask.sum(dim=1)
        assert out.last_hidden_state.shape == (bsz, frames, config.hidden_dim)
        assert out.projector_input.shape == (bsz, frames, config.hidden_dim * self.num_exported_layers)
        assert out.char_logits.shape == (bsz, frames, config.output_dim)
        windows = num_bpe_windows(frames, config.pooling_window)
        assert out.pooled_hidden_states.shape == (bsz, windows, config.hidden_dim)
        assert out.pooled_lengths.tolist() == num_bpe_windows(lengths, config.pooling_window).tolist()
        assert len(out.hidden_states) == config.num_layers + 1
        assert all(torch.isfinite(h).all() for h in (out.last_hidden_state, out.projector_input))


class GraniteSpeechNarProjectorModelTester:
    """The windowed Q-Former projector: a tiny :class:`GraniteSpeechNarProjectorConfig` and its inputs,
    the concatenated encoder hidden states ``(B, T, encoder_hidden_size)`` with their frame mask.

    ``encoder_hidden_dim`` and ``num_exported_layers`` are the encoder's width and the number of hidden states
    it hands over (``len(cat_hidden_layers) + 1``); the composed tester takes them from its encoder tester.
    """

    def __init__(
        self,
        parent=None,
        seq_lengths: Sequence[int] = (23, 9),
        encoder_hidden_dim: int = 32,
        num_exported_layers: int = 2,
        hidden_size: int = 24,
        intermediate_size: int = 48,
        num_attention_heads: int = 4,
        num_hidden_layers: int = 1,
        **config_kwargs,
    ):
        self.parent = parent
        self.seq_lengths = tuple(seq_lengths)
        self.batch_size = len(self.seq_lengths)
        self.seq_length = max(self.seq_lengths)
        self.encoder_hidden_dim = encoder_hidden_dim
        self.num_exported_layers = num_exported_layers
        self.hidden_size = hidden_size
        self.intermediate_size = intermediate_size
        self.num_attention_heads = num_attention_heads
        self.num_hidden_layers = num_hidden_layers
        self.config_kwargs = config_kwargs
        self.encoder_hidden_size = self.get_config().encoder_hidden_size

    def get_config_dict(self) -> dict:
        """The projector fields, as :func:`granite_nar.testing.tiny_config` writes them."""
        return dict(
            hidden_size=self.hidden_size,
            intermediate_size=self.intermediate_size,
            num_attention_heads=self.num_attention_heads,
            num_hidden_layers=self.num_hidden_layers,
            **self.config_kwargs,
        )

    def get_config(self) -> GraniteSpeechNarProjectorConfig:
        """The projector config, its ``encoder_hidden_size`` filled in as :class:`GraniteSpeechNarConfig` does."""
        fields = {"encoder_hidden_size": self.encoder_hidden_dim * self.num_exported_layers}
        return GraniteSpeechNarProjectorConfig(**{**fields, **self.get_config_dict()})

    def prepare_encoder_states(
        self, lengths: Sequence[int] | None = None, seed: int = 0, dtype: torch.dtype = torch.float32
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Padded ``(B, T_max, encoder_hidden_size)`` encoder states and their ``(B, T_max)`` frame mask."""
        lengths = list(self.seq_lengths if lengths is None else lengths)
        g = torch.Generator().manual_seed(seed)
        states = torch.randn(len(lengths), max(lengths), self.encoder_hidden_size, generator=g, dtype=dtype)
        return states, padding_mask(lengths)

    def prepare_config_and_inputs(
        self, lengths: Sequence[int] | None = None, seed: int = 0, dtype: torch.dtype = torch.float32
    ):
        encoder_states, frame_mask = self.prepare_encoder_states(lengths, seed, dtype)
        return self.get_config(), encoder_states, frame_mask

    def prepare_config_and_inputs_for_common(self):
        config, encoder_states, frame_mask = self.prepare_config_and_inputs()
        return config, {"encoder_states": encoder_states, "frame_mask": frame_mask}

    def create_model(self, seed: int = 0):
        """The projector of the tiny full model built on this tester's config (eval mode, seeded)."""
        full = GraniteSpeechNarForCTCModelTester(self.parent, projector_model_tester=self)
        return full.create_model(seed).model.projector

    def create_and_check_model(self, config, encoder_states, frame_mask):
        """The projector of the tiny full model: output shape, and each utterance's tokens as when alone."""
        projector = self.create_model()
        assert projector.config.to_dict() == config.to_dict()
        with torch.no_grad():
            out = projector(encoder_states, frame_mask)
        frames = encoder_states.shape[1]
        tokens = num_projector_tokens(frames, config.window_size, config.downsample_rate)
        assert out.shape == (encoder_states.shape[0], tokens, config.hidden_size)
        # Each utterance's audio tokens are the ones it gets alone: padding never reaches them.
        with torch.no_grad():
            for b, n in enumerate(frame_mask.sum(dim=1).tolist()):
                alone = projector(encoder_states[b : b + 1, :n])[0]
                used = num_audio_tokens(n, config.downsample_rate)
                torch.testing.assert_close(out[b, :used], alone[:used], atol=1e-6, rtol=1e-6)


class GraniteSpeechNarEditorModelTester:
    """The bidirectional editor: a tiny :class:`GraniteSpeechNarTextConfig` and packed inputs, one
    ``(1, ΣL, hidden_size)`` row of embeddings with the :class:`PackedSequences` of its utterances.

    2 layers, 4 query heads over 2 key/value heads (GQA). Like the released model, the blank
    (``<|end_of_text|>``, also BOS and EOS) and the pad id sit at the end of the vocabulary unless given.
    """

    def __init__(
        self,
        parent=None,
        seq_lengths: Sequence[int] = (11, 3, 20),
        vocab_size: int = VOCAB,
        hidden_size: int = 24,
        intermediate_size: int = 40,
        num_hidden_layers: int = 2,
        num_attention_heads: int = 4,
        num_key_value_heads: int = 2,
        pad_token_id: int | None = None,
        bos_token_id: int | None = None,
        eos_token_id: int | None = None,
        **config_kwargs,
    ):
        self.parent = parent
        self.seq_lengths = tuple(seq_lengths)
        self.batch_size = len(self.seq_lengths)
        self.vocab_size = vocab_size
        self.hidden_size = hidden_size
        self.intermediate_size = intermediate_size
        self.num_hidden_layers = num_hidden_layers
        self.num_attention_heads = num_attention_heads
        self.num_key_value_heads = num_key_value_heads
        self.pad_token_id = vocab_size - 2 if pad_token_id is None else pad_token_id
        self.bos_token_id = vocab_size - 1 if bos_token_id is None else bos_token_id
        self.eos_token_id = vocab_size - 1 if eos_token_id is None else eos_token_id
        self.config_kwargs = config_kwargs

    def get_config_dict(self) -> dict:
        """The text fields, as :func:`granite_nar.testing.tiny_config` writes them."""
        return dict(
            vocab_size=self.vocab_size,
            hidden_size=self.hidden_size,
            intermediate_size=self.intermediate_size,
            num_hidden_layers=self.num_hidden_layers,
            num_attention_heads=self.num_attention_heads,
            num_key_value_heads=self.num_key_value_heads,
            pad_token_id=self.pad_token_id,
            bos_token_id=self.bos_token_id,
            eos_token_id=self.eos_token_id,
            **self.config_kwargs,
        )

    def get_config(self) -> GraniteSpeechNarTextConfig:
        return GraniteSpeechNarTextConfig(**self.get_config_dict())

    def prepare_packed_embeddings(
        self, lengths: Sequence[int] | None = None, seed: int = 0
    ) -> tuple[torch.Tensor, PackedSequences]:
        """One packed ``(1, ΣL, hidden_size)`` row of embeddings and the bookkeeping of its utterances."""
        lengths = list(self.seq_lengths if lengths is None else lengths)
        g = torch.Generator().manual_seed(seed)
        inputs_embeds = torch.randn(1, sum(lengths), self.hidden_size, generator=g)
        return inputs_embeds, PackedSequences.from_lengths(lengths)

    def prepare_config_and_inputs(self, lengths: Sequence[int] | None = None, seed: int = 0):
        inputs_embeds, packed = self.prepare_packed_embeddings(lengths, seed)
        return self.get_config(), inputs_embeds, packed

    def prepare_config_and_inputs_for_common(self):
        config, inputs_embeds, packed = self.prepare_config_and_inputs()
        return config, {"inputs_embeds": inputs_embeds, "packed": packed}

    def create_model(self, seed: int = 0, attn_implementation: str = "sdpa"):
        """The editor of the tiny full model built on this tester's config (eval mode, seeded)."""
        full = GraniteSpeechNarForCTCModelTester(self.parent, editor_model_tester=self)
        return full.create_model(seed, attn_implementation=attn_implementation).model.language_model

    def create_and_check_model(self, config, inputs_embeds, packed):
        """The editor built alone from ``config``: output shapes, and packed utterances isolated from each other."""
        torch.manual_seed(0)
        editor = GraniteSpeechNarEditor._from_config(config).eval()
        with torch.no_grad():
            out = editor(inputs_embeds, packed, output_hidden_states=True)
        assert out.last_hidden_state.shape == (1, sum(packed.lengths), config.hidden_size)
        assert len(out.hidden_states) == config.num_hidden_layers + 1
        # Packed utterances attend only to themselves: each row block equals the utterance run alone.
        with torch.no_grad():
            for start, n in zip(packed.cu_seqlens[:-1].tolist(), packed.lengths, strict=True):
                alone = editor(inputs_embeds[:, start : start + n]).last_hidden_state
                torch.testing.assert_close(
                    out.last_hidden_state[:, start : start + n], alone, atol=1e-6, rtol=1e-6
                )


class GraniteSpeechNarForCTCModelTester:
    """The full model: the three sub-testers composed into a tiny :class:`GraniteSpeechNarConfig`.

    ``encoder_kwargs``, ``projector_kwargs`` and ``text_kwargs`` go to the sub-testers (they update the
    sub-config fields, like ``tiny_config(encoder=..., projector=..., text=...)``); other keyword arguments are
    top-level config fields. The vocabulary is shared: the encoder's BPE head and the editor get
    ``vocab_size``, and the blank and pad ids sit at its end unless given. The inputs are the encoder tester's.
    """

    def __init__(
        self,
        parent=None,
        encoder_kwargs: dict | None = None,
        projector_kwargs: dict | None = None,
        text_kwargs: dict | None = None,
        vocab_size: int = VOCAB,
        blank_token_id: int | None = None,
        pad_token_id: int | None = None,
        encoder_model_tester: GraniteSpeechNarEncoderModelTester | None = None,
        projector_model_tester: GraniteSpeechNarProjectorModelTester | None = None,
        editor_model_tester: GraniteSpeechNarEditorModelTester | None = None,
        **config_kwargs,
    ):
        self.parent = parent
        self.vocab_size = vocab_size
        self.blank_token_id = vocab_size - 1 if blank_token_id is None else blank_token_id
        self.pad_token_id = vocab_size - 2 if pad_token_id is None else pad_token_id
        self.encoder_model_tester = encoder_model_tester or GraniteSpeechNarEncoderModelTester(
            parent, **{"vocabulary_size": vocab_size, **(encoder_kwargs or {})}
        )
        encoder = self.encoder_model_tester
        self.projector_model_tester = projector_model_tester or GraniteSpeechNarProjectorModelTester(
            parent,
            encoder_hidden_dim=encoder.hidden_dim,
            num_exported_layers=encoder.num_exported_layers,
            **(projector_kwargs or {}),
        )
        text = {
            "vocab_size": vocab_size,
            "pad_token_id": self.pad_token_id,
            "bos_token_id": self.blank_token_id,
            "eos_token_id": self.blank_token_id,
        }
        self.editor_model_tester = editor_model_tester or GraniteSpeechNarEditorModelTester(
            parent, **{**text, **(text_kwargs or {})}
        )
        self.config_kwargs = config_kwargs
        self.seq_lengths = encoder.seq_lengths
        self.batch_size = encoder.batch_size
        self.seq_length = encoder.seq_length

    def get_config(self) -> GraniteSpeechNarConfig:
        return GraniteSpeechNarConfig(
            encoder_config=self.encoder_model_tester.get_config(),
            projector_config=self.projector_model_tester.get_config(),
            text_config=self.editor_model_tester.get_config(),
            blank_token_id=self.blank_token_id,
            **self.config_kwargs,
        )

    def prepare_features(
        self, lengths: Sequence[int] | None = None, seed: int = 0, dtype: torch.dtype = torch.float32
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The encoder tester's ``(B, T_max, 160)`` features and right-padding mask."""
        return self.encoder_model_tester.prepare_features(lengths, seed, dtype)

    def prepare_config_and_inputs(self, lengths: Sequence[int] | None = None, seed: int = 0):
        _, input_features, input_features_mask = self.encoder_model_tester.prepare_config_and_inputs(
            lengths, seed
        )
        return self.get_config(), input_features, input_features_mask

    def prepare_config_and_inputs_for_common(self):
        config, input_features, input_features_mask = self.prepare_config_and_inputs()
        return config, {"input_features": input_features, "input_features_mask": input_features_mask}

    def create_model(
        self, seed: int = 0, attn_implementation: str = "sdpa", config: GraniteSpeechNarConfig | None = None
    ) -> GraniteSpeechNarForCTC:
        """A tiny :class:`GraniteSpeechNarForCTC` in eval mode: seeded weights, randomised BatchNorm statistics."""
        config = self.get_config() if config is None else config
        torch.manual_seed(seed)
        model = GraniteSpeechNarForCTC._from_config(config, attn_implementation=attn_implementation)
        _randomise_batch_norm(model)
        return model.eval()

    def create_and_check_model(self, config, input_features, input_features_mask):
        """One editing pass of the model built on ``config``: drafts, slot lengths, logits, no loss."""
        model = self.create_model(config=config)
        with torch.no_grad():
            out = model(input_features, input_features_mask)
        assert len(out.draft_ids) == input_features.shape[0]
        drafts = torch.tensor([len(d) for d in out.draft_ids])
        assert out.seq_lengths.tolist() == num_slots(drafts, config.min_edit_sequence_length).tolist()
        assert out.logits.shape == (1, int(out.seq_lengths.sum()), config.text_config.vocab_size)
        assert out.inserted_ctc_token_ids.shape == (int(out.seq_lengths.sum()),)
        assert out.loss is None

    def create_and_check_generate(self, config, input_features, input_features_mask):
        """Two editing steps: one transcript per utterance, ids inside the vocabulary and never the blank."""
        model = self.create_model(config=config)
        out = model.generate(
            input_features, input_features_mask, num_editing_steps=2, return_dict_in_generate=True
        )
        assert len(out.sequences) == len(out.draft_ids) == input_features.shape[0]
        assert len(out.step_sequences) == 2
        assert [s.tolist() for s in out.step_sequences[-1]] == [s.tolist() for s in out.sequences]
        vocab = config.text_config.vocab_size
        for ids in (*out.draft_ids, *out.sequences):
            assert ids.dtype == torch.long and ids.dim() == 1
            assert bool(((ids >= 0) & (ids < vocab)).all()) and config.blank_token_id not in ids.tolist()
        for logits, n in zip(out.logits, out.seq_lengths.tolist(), strict=True):
            assert logits.shape == (n, vocab)
