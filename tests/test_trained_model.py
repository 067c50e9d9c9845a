"""The shipped tiny model (examples/models/tiny-synth) transcribes held-out synthetic speech as recorded.

The four WAVs in tests/fixtures/tiny_synth come from the test split of the synthetic corpus, which the
model never saw; expected.json holds their reference transcripts and the model's draft, edit-1 and
edit-2 outputs recorded by ``examples/evaluate_tiny_synth.py --export-fixtures``. Greedy decoding in
float32 is deterministic, so the outputs must match exactly, alone and in one batch.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from granite_nar import GraniteSpeechNarForCTC, GraniteSpeechNarProcessor, load_audio
from granite_nar.training import char_error_rate

REPO = Path(__file__).resolve().parent.parent
MODEL = REPO / "examples" / "models" / "tiny-synth"
FIXTURES = Path(__file__).parent / "fixtures" / "tiny_synth"
EXPECTED = json.loads((FIXTURES / "expected.json").read_text())


@pytest.fixture(scope="module")
def model_and_processor():
    model = GraniteSpeechNarForCTC.from_pretrained(MODEL, dtype=torch.float32).eval()
    return model, GraniteSpeechNarProcessor.from_pretrained(MODEL)


def _transcribe(model, processor, names):
    waves = [load_audio(FIXTURES / name) for name in names]
    inputs = processor(waves, sampling_rate=16000)
    out = model.generate(
        inputs["input_features"],
        inputs["input_features_mask"],
        num_editing_steps=2,
        return_dict_in_generate=True,
    )
    decode = processor.tokenizer.batch_decode
    steps = [out.draft_ids, *out.step_sequences]
    return [decode([s.tolist() for s in seqs], skip_special_tokens=True) for seqs in steps]


def test_checkpoint_is_small_and_complete():
    files = {p.name for p in MODEL.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "processor_config.json"} <= files
    assert sum(p.stat().st_size for p in MODEL.iterdir()) < 10_000_000


@pytest.mark.parametrize("item", EXPECTED, ids=[e["audio"] for e in EXPECTED])
def test_transcripts_match_the_recording(model_and_processor, item):
    model, processor = model_and_processor
    (draft,), (edit1,), (edit2,) = _transcribe(model, processor, [item["audio"]])
    assert (draft, edit1, edit2) == (item["draft"], item["edit1"], item["edit2"])
    cers = [char_error_rate(item["reference"], hyp).rate for hyp in (draft, edit1, edit2)]
    assert cers == pytest.approx([item["draft_cer"], item["edit1_cer"], item["edit2_cer"]], abs=1e-6)
    assert cers[1] <= cers[0] and cers[2] <= cers[1]  # editing never hurts on these files


def test_batch_gives_the_same_transcripts(model_and_processor):
    model, processor = model_and_processor
    draft, edit1, edit2 = _transcribe(model, processor, [e["audio"] for e in EXPECTED])
    assert draft == [e["draft"] for e in EXPECTED]
    assert edit1 == [e["edit1"] for e in EXPECTED]
    assert edit2 == [e["edit2"] for e in EXPECTED]


def test_the_editor_corrects_a_draft():
    refs = [e["reference"] for e in EXPECTED]
    draft = char_error_rate(refs, [e["draft"] for e in EXPECTED]).rate
    edited = char_error_rate(refs, [e["edit1"] for e in EXPECTED]).rate
    assert any(e["edit1_cer"] < e["draft_cer"] for e in EXPECTED)
    assert edited < draft
