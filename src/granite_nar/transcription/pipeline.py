"""A ``transformers`` pipeline for Granite Speech NAR.

transformers' own ``AutomaticSpeechRecognitionPipeline`` cannot drive this model: it treats every
``AutoModelForCTC`` model as a frame-level CTC model (one forward pass, ``argmax`` over per-frame logits),
whereas this one drafts with its encoder's CTC head and then edits with ``generate`` (docs/reference_behaviour.md §4), and its
forward pass returns packed slot logits of the whole batch. It also reads files with ffmpeg, resamples
with torchaudio and calls feature extractors with arguments this one does not take. So this module
provides its own small :class:`~transformers.Pipeline` subclass, which the standard factory uses when
asked to::

    from transformers import pipeline
    from granite_nar.transcription.pipeline import GraniteSpeechNarPipeline

    asr = pipeline("automatic-speech-recognition", model=folder, pipeline_class=GraniteSpeechNarPipeline)
    asr("speech.wav")  # {"text": "..."}

It is not registered for the task name, since that would change ``pipeline("automatic-speech-recognition")``
for every other model in the process.
"""

from __future__ import annotations

from typing import Any

import torch
from transformers import Pipeline

from ..audio.inputs import prepare_waveform

__all__ = ["GraniteSpeechNarPipeline"]


class GraniteSpeechNarPipeline(Pipeline):
    """Speech recognition with :class:`~granite_nar.GraniteSpeechNarForCTC` through ``transformers.pipeline``.

    Inputs: a path to an audio file (wav, flac, ogg; read with soundfile, resampled with soxr, downmixed),
    the file's bytes, a 1-D (or ``(channels, samples)``) waveform at 16 kHz, or a dict ``{"array" | "raw":
    waveform, "sampling_rate": rate}`` as ``datasets`` yields; or a list of those. ``batch_size=`` batches
    them (utterances do not influence each other in a batch, docs/reference_behaviour.md §11.3).

    Call parameters: ``num_editing_steps`` (default 1) and ``return_drafts`` (adds the CTC draft as
    ``"draft"``). Output: ``{"text": str}`` per input.
    """

    _load_processor = False
    _load_image_processor = False
    _load_video_processor = False
    _load_feature_extractor = True
    _load_tokenizer = True

    def _sanitize_parameters(self, num_editing_steps=None, return_drafts=None, **kwargs):
        if kwargs:
            raise TypeError(
                f"{type(self).__name__} does not take {sorted(kwargs)}; it takes num_editing_steps and "
                "return_drafts (no timestamps, chunking or generation config: editing is not autoregressive)"
            )
        forward = {}
        if num_editing_steps is not None:
            if num_editing_steps < 0:
                raise ValueError(f"num_editing_steps must be >= 0, got {num_editing_steps}")
            forward["num_editing_steps"] = num_editing_steps
        postprocess = {} if return_drafts is None else {"return_drafts": bool(return_drafts)}
        return {}, forward, postprocess

    def preprocess(self, inputs: Any) -> dict[str, torch.Tensor]:
        rate = self.feature_extractor.sampling_rate
        wave = prepare_waveform(inputs, target_rate=rate)
        features = self.feature_extractor(wave, sampling_rate=rate)
        return {
            key: features[key] for key in ("input_features", "input_features_mask")
        }  # (1, T, 160), (1, T)

    def _forward(self, model_inputs: dict[str, torch.Tensor], num_editing_steps: int = 1) -> dict[str, Any]:
        features = model_inputs["input_features"].to(self.model.dtype)  # (B, T, 160), padded by the collator
        out = self.model.generate(
            features,
            model_inputs["input_features_mask"].bool(),
            num_editing_steps=num_editing_steps,
            return_dict_in_generate=True,
        )
        # Padded (B, L) id tensors, so that the pipeline's un-batching hands each input a (1, L) row.
        return {"sequences": _pad_ids(out.sequences), "drafts": _pad_ids(out.draft_ids)}

    def postprocess(
        self, model_outputs: dict[str, torch.Tensor], return_drafts: bool = False
    ) -> dict[str, str]:
        def decode(row: torch.Tensor) -> str:
            ids = row[0]
            return self.tokenizer.decode(ids[ids >= 0].tolist(), skip_special_tokens=True)

        result = {"text": decode(model_outputs["sequences"])}
        if return_drafts:
            result["draft"] = decode(model_outputs["drafts"])
        return result


def _pad_ids(rows: list[torch.Tensor]) -> torch.Tensor:
    """Variable-length 1-D id tensors → ``(B, max(1, L_max))`` int64, padded with -1."""
    width = max([1] + [len(r) for r in rows])
    out = torch.full((len(rows), width), -1, dtype=torch.long)
    for b, row in enumerate(rows):
        out[b, : len(row)] = row.cpu()
    return out
