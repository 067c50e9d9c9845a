"""The tokenizer shared by the tests of ``granite_nar.training``."""

import pytest
from testers import BLANK, PAD, VOCAB

from granite_nar.testing.synthetic_speech import generate_sentences, grammar_vocabulary, train_tokenizer


@pytest.fixture(scope="package")
def tokenizer(tmp_path_factory):
    """A BPE tokenizer with the tiny model's vocabulary: pad = VOCAB-2, end of text (blank) = VOCAB-1."""
    from transformers import AutoTokenizer

    out = tmp_path_factory.mktemp("tok")
    train_tokenizer(generate_sentences(300, seed=0) + grammar_vocabulary(), out, vocab_size=VOCAB)
    tok = AutoTokenizer.from_pretrained(str(out))
    assert (len(tok), tok.pad_token_id, tok.eos_token_id) == (VOCAB, PAD, BLANK)
    return tok
