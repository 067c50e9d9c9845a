"""``granite_nar.transcription.pipeline``: the transformers ``automatic-speech-recognition`` pipeline class gives
the same text as ``generate``, for every kind of input.

The demo model, the speech and ``reference`` (processor + generate directly) come from ``conftest.py``."""

import pytest
import soundfile as sf
from transformers import pipeline

from granite_nar.transcription.pipeline import GraniteSpeechNarPipeline


def test_transformers_pipeline(model_dir, loaded, speech, tmp_path, reference):
    asr = pipeline(
        "automatic-speech-recognition",
        model=str(model_dir),
        pipeline_class=GraniteSpeechNarPipeline,
        device="cpu",
    )
    assert isinstance(asr.model, type(loaded[0]))
    path = tmp_path / "a.wav"
    sf.write(path, speech[0], 16000, subtype="FLOAT")
    expected = [reference(loaded, w)[0] for w in speech]
    assert asr(str(path)) == {"text": expected[0]}
    outputs = asr(
        [str(path), speech[1], {"array": speech[2], "sampling_rate": 16000}, speech[3]], batch_size=2
    )
    assert [o["text"] for o in outputs] == expected
    with_draft = asr(speech[1], return_drafts=True, num_editing_steps=0)
    assert with_draft["text"] == with_draft["draft"] == reference(loaded, speech[1], steps=0)[1]
    assert asr(path.read_bytes())["text"] == expected[0]
    with pytest.raises(TypeError, match="return_timestamps"):
        asr(speech[0], return_timestamps=True)
