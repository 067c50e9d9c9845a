"""transformers' common feature-extraction tests (``SequenceFeatureExtractionTestMixin``: saving and loading,
``pad`` and truncation of feature sequences, batch features) on :class:`GraniteSpeechNarFeatureExtractor`.

The mixin comes from the source distribution of the installed transformers version
(``tests/transformers_common.py``); without it this module is skipped with the reason.
"""

import unittest

import numpy as np
import pytest
import transformers_common

from granite_nar import GraniteSpeechNarFeatureExtractor

_package, _reason = transformers_common.load()
if _package is None:
    pytest.skip(_reason, allow_module_level=True)

from transformers_common_tests.test_sequence_feature_extraction_common import (  # noqa: E402
    SequenceFeatureExtractionTestMixin,
)


class FeatureExtractorTester:
    """Batches of feature sequences of increasing length, as transformers' speech feature-extractor testers make."""

    def __init__(self, parent, batch_size=7, min_seq_length=40, max_seq_length=200, feature_size=80):
        self.parent = parent
        self.batch_size = batch_size
        self.min_seq_length = min_seq_length
        self.max_seq_length = max_seq_length
        self.seq_length_diff = (max_seq_length - min_seq_length) // (batch_size - 1)
        self.feature_size = feature_size
        self.padding_value = 0.0
        self.sampling_rate = 16000

    def prepare_feat_extract_dict(self):
        return {
            "feature_size": self.feature_size,
            "sampling_rate": self.sampling_rate,
            "padding_value": self.padding_value,
        }

    def prepare_inputs_for_common(self, equal_length=False, numpify=False):
        rng = np.random.default_rng(0)
        if equal_length:
            lengths = [self.max_seq_length] * self.batch_size
        else:
            lengths = range(self.min_seq_length, self.max_seq_length, self.seq_length_diff)
        inputs = [rng.random((n, self.feature_size)).tolist() for n in lengths]
        return [np.asarray(x) for x in inputs] if numpify else inputs


class GraniteSpeechNarFeatureExtractionTest(SequenceFeatureExtractionTestMixin, unittest.TestCase):
    feature_extraction_class = GraniteSpeechNarFeatureExtractor

    def setUp(self):
        self.feat_extract_tester = FeatureExtractorTester(self)
