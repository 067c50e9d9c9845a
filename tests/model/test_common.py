"""transformers' own common tests (``ModelTesterMixin``, ``ConfigTester``) run on the encoder, the base model
and ``GraniteSpeechNarForCTC``, through the model testers of ``tests/testers.py``.

The mixins come from the source distribution of the installed transformers version
(``tests/transformers_common.py``); without it this module is skipped with the reason. A common test is
skipped only where non-autoregressive or packed-batch semantics make it inapplicable; every skip says why,
and docs/architecture.md lists them.
"""

import unittest

import pytest
import torch
import transformers_common
from testers import (
    GraniteSpeechNarEncoderModelTester,
    GraniteSpeechNarForCTCModelTester,
)

from granite_nar import GraniteSpeechNarConfig, GraniteSpeechNarForCTC, GraniteSpeechNarModel
from granite_nar.model.configuration_granite_speech_nar import GraniteSpeechNarEncoderConfig
from granite_nar.model.modeling_encoder import GraniteSpeechNarEncoder

_package, _reason = transformers_common.load()
if _package is None:
    pytest.skip(_reason, allow_module_level=True)

from transformers_common_tests.test_configuration_common import ConfigTester  # noqa: E402
from transformers_common_tests.test_modeling_common import ModelTesterMixin  # noqa: E402

# Why a common test does not apply, by test name; each class below skips exactly these.
NO_ATTENTION_OUTPUTS = (
    "attention weights are never materialised: the encoder runs one fused call per 200-frame block and the "
    "editor attends over packed utterances (flash varlen or one sdpa call per utterance); "
    "output_attentions=True is refused with a clear error"
)
NO_INPUT_EMBEDS = "the model reads audio features; there are no token inputs_embeds to substitute"
NO_TOKEN_EMBEDDINGS = "the encoder has no token embeddings to resize or tie"
PACKED = (
    "the editor packs all utterances of a batch into one (1, ΣL, D) row, so per-example outputs are "
    "not (B, ...) slices of a padded batch"
)


class EncoderTester(GraniteSpeechNarEncoderModelTester):
    """The encoder tester with the attribute names transformers' common tests read."""

    is_training = True

    def __init__(self, parent=None, **kwargs):
        super().__init__(parent, seq_lengths=(37, 12, 40), **kwargs)
        self.hidden_size = self.hidden_dim
        self.num_hidden_layers = self.num_layers
        self.num_attention_heads = self.num_heads


class ForCTCTester(GraniteSpeechNarForCTCModelTester):
    """The full-model tester with the attribute names transformers' common tests read.

    The common inputs add ``input_ids``: drafts to edit, a ``(B, 5)`` tensor of ids (the vocabulary-resizing
    tests rewrite them). The blank sits at id 1 so that shrinking the vocabulary keeps it, and every loss
    is switched on so that every parameter, the BPE head included, receives a gradient in training tests.
    """

    is_training = True
    base_model_class = GraniteSpeechNarModel

    def __init__(self, parent=None, **kwargs):
        super().__init__(
            parent,
            encoder_kwargs={"seq_lengths": (37, 12, 40)},
            blank_token_id=1,
            pad_token_id=2,
            ce_loss_lambda=0.5,
            encoder_ctc_loss_lambda=0.5,
            **kwargs,
        )
        editor = self.editor_model_tester
        self.hidden_size = editor.hidden_size
        self.num_hidden_layers = editor.num_hidden_layers
        self.num_attention_heads = editor.num_attention_heads

    def prepare_config_and_inputs_for_common(self):
        config, inputs = super().prepare_config_and_inputs_for_common()
        g = torch.Generator().manual_seed(0)
        drafts = torch.randint(3, self.vocab_size, (self.batch_size, 5), generator=g)
        return config, {**inputs, "input_ids": drafts}


def _skip(reason: str):
    def test(self):
        self.skipTest(reason)

    return test


def _skip_training(reason: str):
    return {
        name: _skip(reason)
        for name in (
            "test_training",
            "test_training_gradient_checkpointing",
            "test_training_gradient_checkpointing_use_reentrant_true",
            "test_training_gradient_checkpointing_use_reentrant_false",
        )
    }


NO_LOSS = "a model without a loss: training is tested on GraniteSpeechNarForCTC, which holds the three losses"


class GraniteSpeechNarEncoderModelTest(ModelTesterMixin, unittest.TestCase):
    all_model_classes = (GraniteSpeechNarEncoder,)
    test_resize_embeddings = False
    has_attentions = False
    test_torch_exportable = False

    def setUp(self):
        self.model_tester = EncoderTester(self)
        self.config_tester = ConfigTester(
            self,
            config_class=GraniteSpeechNarEncoderConfig,
            has_text_modality=False,
            common_properties=["hidden_dim", "num_layers", "num_heads"],
        )

    def test_config(self):
        self.config_tester.run_common_tests()

    def test_model(self):
        config, feats, mask = self.model_tester.prepare_config_and_inputs()
        self.model_tester.create_and_check_model(config, feats, mask)

    test_inputs_embeds = _skip(NO_INPUT_EMBEDS)
    test_model_get_set_embeddings = _skip(NO_TOKEN_EMBEDDINGS)
    test_attention_outputs = _skip(NO_ATTENTION_OUTPUTS)
    test_retain_grad_hidden_states_attentions = _skip(NO_ATTENTION_OUTPUTS)
    locals().update(_skip_training(NO_LOSS))


class _NarCommonTests(ModelTesterMixin):
    has_attentions = False
    test_torch_exportable = False
    _is_composite = True

    def setUp(self):
        self.model_tester = ForCTCTester(self)
        self.config_tester = ConfigTester(self, config_class=GraniteSpeechNarConfig, has_text_modality=False)

    def _prepare_for_class(self, inputs_dict, model_class, return_labels=False):
        inputs_dict = super()._prepare_for_class(inputs_dict, model_class, return_labels=return_labels)
        if return_labels and model_class is GraniteSpeechNarForCTC:
            batch = inputs_dict["input_features"].shape[0]
            inputs_dict["labels"] = torch.tensor([[3, 4, 5]] * batch)
            inputs_dict["label_lengths"] = torch.tensor([3] * batch)
        return inputs_dict

    def test_config(self):
        self.config_tester.run_common_tests()

    def test_hidden_states_output(self):
        """The editor's hidden states: ``num_hidden_layers + 1`` packed ``(1, ΣL, hidden)`` rows, where
        ``L_b`` is utterance ``b``'s audio tokens plus its slots (the common test expects ``(B, T, D)``)."""
        config, inputs = self.model_tester.prepare_config_and_inputs_for_common()
        for model_class in self.all_model_classes:
            model = model_class(config).eval()
            with torch.no_grad():
                out = model(**inputs, output_hidden_states=True)
            audio_tokens = inputs["input_features_mask"].sum(1) // config.projector_config.downsample_rate
            packed = int(audio_tokens.sum() + out.seq_lengths.sum())
            self.assertEqual(len(out.hidden_states), config.text_config.num_hidden_layers + 1)
            for state in out.hidden_states:
                self.assertEqual(tuple(state.shape), (1, packed, config.text_config.hidden_size))
            config.output_hidden_states = True  # the config's value is the default
            with torch.no_grad():
                self.assertEqual(len(model(**inputs).hidden_states), config.text_config.num_hidden_layers + 1)
            config.output_hidden_states = False

    test_inputs_embeds = _skip(NO_INPUT_EMBEDS)
    test_attention_outputs = _skip(NO_ATTENTION_OUTPUTS)
    test_retain_grad_hidden_states_attentions = _skip(NO_ATTENTION_OUTPUTS)


class GraniteSpeechNarModelTest(_NarCommonTests, unittest.TestCase):
    all_model_classes = (GraniteSpeechNarModel,)
    locals().update(_skip_training(NO_LOSS))


class GraniteSpeechNarForCTCModelTest(_NarCommonTests, unittest.TestCase):
    all_model_classes = (GraniteSpeechNarForCTC,)

    def test_model(self):
        config, feats, mask = self.model_tester.prepare_config_and_inputs()
        self.model_tester.create_and_check_model(config, feats, mask)
