"""``granite_nar.quantize_int8``: opt-in dynamic int8 linear layers on the CPU.

The int8 model is not the float model (that is the point), so these tests check what must hold: the
layer swap before quantization is exact, every linear layer is quantized, the trained tiny model still
transcribes the held-out fixtures about as well, word timestamps and the CLI work, and the model refuses
what it cannot do with a message that says what to do instead.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.ao.nn.quantized.dynamic import Linear as DynamicQuantizedLinear

from granite_nar import GraniteSpeechNarForCTC, load_model, quantize_int8, transcribe
from granite_nar.model.quantization import _pointwise_convs_as_linear, is_quantized
from granite_nar.training import char_error_rate

REPO = Path(__file__).resolve().parents[2]
MODEL = REPO / "examples" / "models" / "tiny-synth"
FIXTURES = REPO / "tests" / "fixtures" / "tiny_synth"
EXPECTED = json.loads((FIXTURES / "expected.json").read_text())
FILES = [str(FIXTURES / item["audio"]) for item in EXPECTED]


@pytest.fixture(scope="module")
def float_model():
    return GraniteSpeechNarForCTC.from_pretrained(MODEL, dtype=torch.float32).eval()


@pytest.fixture(scope="module")
def int8_model():
    return quantize_int8(GraniteSpeechNarForCTC.from_pretrained(MODEL, dtype=torch.float32))


def test_pointwise_convolutions_as_linear_layers_are_exact(float_model):
    encoder = GraniteSpeechNarForCTC.from_pretrained(MODEL, dtype=torch.float32).eval().model.encoder
    feats = torch.randn(2, 90, encoder.config.input_dim, generator=torch.Generator().manual_seed(0))
    mask = torch.arange(90)[None, :] < torch.tensor([[90], [61]])
    with torch.no_grad():
        before = encoder(feats, mask).projector_input
        _pointwise_convs_as_linear(encoder)
        after = encoder(feats, mask).projector_input
    assert isinstance(encoder.layers[0].conv.up_conv, nn.Linear)
    assert torch.equal(before, after)


def test_every_linear_layer_is_quantized(float_model, int8_model):
    linear = sum(isinstance(m, nn.Linear) for m in float_model.modules())
    pointwise = 2 * len(float_model.model.encoder.layers)
    quantized = [m for m in int8_model.modules() if isinstance(m, DynamicQuantizedLinear)]
    assert len(quantized) == linear + pointwise
    assert not any(type(m) is nn.Linear for m in int8_model.modules())
    assert is_quantized(int8_model) and not is_quantized(float_model)
    assert quantize_int8(int8_model) is int8_model  # quantizing twice is a no-op


def test_int8_transcribes_the_held_out_fixtures(float_model, int8_model):
    references = [item["reference"] for item in EXPECTED]
    float_texts = transcribe(FILES, model=float_model, processor=MODEL, num_editing_steps=2)
    assert float_texts == [item["edit2"] for item in EXPECTED]
    results = transcribe(FILES, model=int8_model, processor=MODEL, num_editing_steps=2, word_timestamps=True)
    float_cer = float(char_error_rate(references, float_texts))
    assert float(char_error_rate(references, [r.text for r in results])) <= float_cer + 0.02
    for result in results:  # word timestamps read the quantized BPE head's weights
        words = result.segments[0].words
        assert [w.word.strip() for w in words] == result.text.split()
        assert all(0 <= w.start <= w.end <= result.duration_sec + 1e-6 for w in words)


def test_int8_slot_logits_stay_close_to_float32(float_model, int8_model):
    feats = torch.randn(1, 150, 160, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        audio = float_model.model.encode_audio(feats)
        drafts = audio.draft_ids
        logits = {}
        for name, model in (("float32", float_model), ("int8", int8_model)):
            audio = model.model.encode_audio(feats)
            out = model.model.edit(audio.audio_embeds, audio.audio_lengths, drafts)
            logits[name] = model.slot_logits(out.last_hidden_state)[0]
    error = (logits["int8"] - logits["float32"]).norm() / logits["float32"].norm()
    assert 0 < error < 0.1


def test_int8_refusals(tmp_path, int8_model):
    with pytest.raises(ValueError, match="needs a float32 model .* dtype=torch.float32"):
        quantize_int8(GraniteSpeechNarForCTC.from_pretrained(MODEL, dtype=torch.bfloat16))
    with pytest.raises(ValueError, match="quantize='int8' runs a float32 model"):
        load_model(MODEL, dtype="bfloat16", quantize="int8")
    with pytest.raises(ValueError, match="quantize must be None or 'int8'"):
        load_model(MODEL, quantize="int4")
    with pytest.raises(ValueError, match="cannot save an int8-quantized model .*quantize_int8 after loading"):
        int8_model.save_pretrained(tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_cli_quantize(tmp_path, capsys):
    from granite_nar.cli import main

    assert main(["transcribe", FILES[1], "--model", str(MODEL), "--quantize", "int8", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert EXPECTED[1]["reference"] in out
