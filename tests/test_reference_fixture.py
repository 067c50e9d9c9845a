"""First proof of fidelity: the reference implementation's golden outputs for a tiny original-layout checkpoint."""

import json

import pytest
import torch
from safetensors.torch import load_file
from testers import FIXTURES

from granite_nar import GraniteSpeechNarForCTC

REF = FIXTURES / "reference_tiny"
EXPECTED = json.loads((REF / "expected.json").read_text())
CASES = load_file(REF / "cases.safetensors")
NUM_CASES = len(EXPECTED["lengths"])


@pytest.fixture(scope="module")
def model():
    return GraniteSpeechNarForCTC.from_pretrained(REF / "original")


def _ids(tensors):
    return [t.tolist() for t in tensors]


@pytest.mark.parametrize("i", range(NUM_CASES))
def test_each_case_alone(model, i):
    feats = CASES[f"features.{i}"][None]
    assert feats.shape[1] == EXPECTED["lengths"][i]
    one = model.generate(feats, num_editing_steps=1, return_dict_in_generate=True)
    two = model.generate(feats, num_editing_steps=2, return_dict_in_generate=True)
    assert one.draft_ids[0].tolist() == EXPECTED["draft_ids"][i]
    assert one.sequences[0].tolist() == EXPECTED["edited_ids"][i]
    assert two.sequences[0].tolist() == EXPECTED["edited_ids_2_steps"][i]
    torch.testing.assert_close(one.logits[0], CASES[f"logits.{i}"], atol=1e-5, rtol=0)


def test_all_cases_in_one_padded_batch(model):
    feats = [CASES[f"features.{i}"] for i in range(NUM_CASES)]
    batch = torch.nn.utils.rnn.pad_sequence(
        feats, batch_first=True, padding_value=0.37
    )  # padding is not silence
    mask = torch.arange(batch.shape[1])[None] < torch.tensor([f.shape[0] for f in feats])[:, None]
    one = model.generate(batch, mask, num_editing_steps=1, return_dict_in_generate=True)
    two = model.generate(batch, mask, num_editing_steps=2, return_dict_in_generate=True)
    assert _ids(one.draft_ids) == EXPECTED["draft_ids"]
    assert _ids(one.sequences) == EXPECTED["edited_ids"]
    assert _ids(two.sequences) == EXPECTED["edited_ids_2_steps"]
    for i in range(NUM_CASES):
        torch.testing.assert_close(one.logits[i], CASES[f"logits.{i}"], atol=1e-5, rtol=0)
