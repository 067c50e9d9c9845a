"""The demo model and speech shared by the tests of ``granite_nar.transcription``: a tiny model with random
weights and a real tokenizer, written once, and the demo sentence cut into pieces."""

import pytest
from testers import DEMO_WAV

from granite_nar import load_audio, load_model
from granite_nar.testing.demo import make_random_demo_model


@pytest.fixture(scope="package")
def model_dir(tmp_path_factory):
    return make_random_demo_model(tmp_path_factory.mktemp("demo"), num_sentences=300, vocab_size=160)


@pytest.fixture(scope="package")
def loaded(model_dir):
    return load_model(model_dir, device="cpu")


@pytest.fixture(scope="package")
def speech():
    """The demo sentence cut into pieces of different lengths (real speech, so drafts are not empty)."""
    wave = load_audio(DEMO_WAV)
    return [wave[start : start + n] for start, n in [(0, 40000), (3000, 9000), (20000, 16001), (500, 4800)]]


def _reference(loaded, wave, steps=1):
    """The transcript and draft of one waveform through processor and generate directly."""
    model, processor = loaded
    inputs = processor(wave, sampling_rate=16000)
    out = model.generate(**inputs, num_editing_steps=steps, return_dict_in_generate=True)
    return processor.decode(out.sequences[0]), processor.decode(out.draft_ids[0])


@pytest.fixture
def reference():
    """``reference(loaded, wave, steps=1)``: the transcript and draft of one waveform through processor and
    generate directly."""
    return _reference
