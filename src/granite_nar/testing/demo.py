"""A tiny Granite Speech NAR with RANDOM weights, to run the whole pipeline offline in seconds.

The model has the real architecture at toy size (2 conformer layers, a 1-layer Q-Former, a 2-layer
editor) and a real tokenizer trained on the synthetic grammar (:mod:`granite_nar.testing.synthetic_speech`), so
files → features → encoder → CTC draft → editing → text all run. Its weights are random:
**its transcripts are meaningless strings of grammar words.** It exists to show and test the plumbing
(CLI, batching, error handling); for a model that has learnt something, train one on the synthetic
corpus or convert the released checkpoint.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import torch

from ..audio.feature_extraction_granite_speech_nar import GraniteSpeechNarFeatureExtractor
from ..audio.processing_granite_speech_nar import GraniteSpeechNarProcessor
from ..model.modeling_granite_speech_nar import GraniteSpeechNarForCTC
from . import tiny_config

__all__ = ["DEMO_MARKER", "is_random_demo_model", "make_random_demo_model"]

# Written into the saved config.json, so tools can tell a user that the weights are random.
DEMO_MARKER = "granite_nar_random_demo"
_README = """\
# Random demo model (granite_nar)

Written by `granite-nar demo-model` / `granite_nar.testing.demo.make_random_demo_model`.

The weights are RANDOM. The model runs the whole Granite Speech NAR pipeline, but its transcripts are
meaningless. Use it to try the command line and the Python API offline, not to recognise speech.
"""


def make_random_demo_model(
    out_dir: str | os.PathLike,
    tokenizer_dir: str | os.PathLike | None = None,
    seed: int = 0,
    num_sentences: int = 2000,
    vocab_size: int = 320,
) -> Path:
    """Build and save a tiny random :class:`GraniteSpeechNarForCTC` with its processor; return ``out_dir``.

    The tokenizer is loaded from ``tokenizer_dir`` if given, else trained offline with
    :func:`granite_nar.testing.synthetic_speech.train_tokenizer` on ``num_sentences`` sentences of the synthetic
    grammar plus its word list (needs ``sentencepiece``). The CTC blank is the tokenizer's
    ``<|end_of_text|>`` (its eos token), as in the released model. The same ``seed`` gives the same weights.

    ``out_dir`` then loads with ``GraniteSpeechNarForCTC.from_pretrained`` and
    ``GraniteSpeechNarProcessor.from_pretrained`` (or the Auto classes), and with ``granite-nar transcribe
    --model out_dir``. **The weights are random: the transcripts are meaningless.**
    """
    from transformers import AutoTokenizer

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if tokenizer_dir is None:
        from .synthetic_speech import generate_sentences, grammar_vocabulary, train_tokenizer

        texts = generate_sentences(num_sentences, seed) + grammar_vocabulary()
        with tempfile.TemporaryDirectory() as build:  # train_tokenizer also writes spm.model; not needed here
            tokenizer = train_tokenizer(texts, build, vocab_size)
    else:
        tokenizer = AutoTokenizer.from_pretrained(os.fspath(tokenizer_dir))
    if tokenizer.eos_token_id is None or tokenizer.pad_token_id is None:
        raise ValueError("the tokenizer needs an eos token (the CTC blank) and a pad token")

    config = tiny_config(
        len(tokenizer), blank_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id
    )
    setattr(config, DEMO_MARKER, True)
    torch.manual_seed(seed)
    model = GraniteSpeechNarForCTC(config).eval()
    model.save_pretrained(out)
    processor = GraniteSpeechNarProcessor(GraniteSpeechNarFeatureExtractor(), tokenizer)
    processor.save_pretrained(out)
    (out / "README.md").write_text(_README, encoding="utf-8")
    return out


def is_random_demo_model(model_or_path) -> bool:
    """Whether a model object or a local folder is a random demo model from :func:`make_random_demo_model`."""
    if isinstance(model_or_path, (str, os.PathLike)):
        config = Path(model_or_path) / "config.json"
        if not config.is_file():
            return False
        try:
            return bool(json.loads(config.read_text(encoding="utf-8")).get(DEMO_MARKER, False))
        except (OSError, ValueError):
            return False
    config = getattr(model_or_path, "config", None)
    return bool(getattr(config, DEMO_MARKER, False))
