"""A ``transformers`` pipeline for Granite Speech NAR.

transformers' own ``AutomaticSpeechRecognitionPipeline`` cannot drive this model: it treats every
``AutoModelForCTC`` model as a frame-level CTC model (one forward pass, ``argmax`` over per-frame logits),
whereas this one drafts with its encoder's CTC head and then edits with ``generate`` (docs/reference_behaviour.md §4), and its
forward pass returns packed slot logits of the whole batch: run through that pipeline it returns garbage
such as ``"<|end_of_text|> the<|end_of_text|> red ..."`` without any error. So this module provides its own
small :class:`~transformers.Pipeline` subclass::

    from transformers import pipeline
    import granite_nar  # noqa: F401  (registers the model classes; routes the task, see below)

    asr = pipeline("automatic-speech-recognition", model=folder)
    asr("speech.wav")  # {"text": "..."}

**Routing.** Importing ``granite_nar`` (which imports this module) wraps the task's entry in transformers'
pipeline registry: ``pipeline("automatic-speech-recognition", model=...)`` builds a
:class:`GraniteSpeechNarPipeline` when the model is a :class:`~granite_nar.GraniteSpeechNarForCTC`, and
exactly what it built before (the same class, the same arguments) for every other model. Passing
``pipeline_class=GraniteSpeechNarPipeline`` explicitly does the same without relying on the routing.
"""

from __future__ import annotations

import importlib
from numbers import Number
from typing import Any

import torch
from transformers import Pipeline

from ..audio.inputs import is_array_input, is_file_input, missing_rate_error, prepare_waveform
from ..audio.processing_granite_speech_nar import clean_transcript
from ..model.modeling_granite_speech_nar import GraniteSpeechNarForCTC

__all__ = ["GraniteSpeechNarPipeline", "route_speech_recognition_task"]

TASK = "automatic-speech-recognition"


class GraniteSpeechNarPipeline(Pipeline):
    """Speech recognition with :class:`~granite_nar.GraniteSpeechNarForCTC` through ``transformers.pipeline``.

    Inputs: a path to an audio file (wav, flac, ogg, mp3; m4a / mp4 / aac with ffmpeg; read with soundfile,
    resampled with soxr, downmixed), the file's bytes, a dict ``{"array" | "raw": waveform,
    "sampling_rate": rate}`` as ``datasets`` yields, or a bare 1-D (or ``(channels, samples)``) waveform
    together with the call parameter ``sampling_rate=``; or a list of those. A bare waveform without a
    rate is refused, naming ``audio[index]``. ``batch_size=`` batches them (utterances do not influence
    each other in a batch, docs/reference_behaviour.md §11.3).

    Call parameters: ``num_editing_steps`` (default 1), ``return_drafts`` (adds the CTC draft as
    ``"draft"``), ``sampling_rate`` (rate of bare waveforms), ``allow_truncated`` (transcribe the part
    of a truncated file that is present, with a :class:`~granite_nar.audio.TruncatedAudioWarning`, instead
    of refusing it), ``return_timestamps`` (``True``: segment times, ``"word"``: word times, as
    ``"chunks"`` of ``{"text", "timestamp": (start, end)}`` like transformers' speech pipeline) and
    ``max_segment_seconds`` (30). Output: ``{"text": str}`` per input.

    Recordings longer than ``max_segment_seconds`` (files, dicts and arrays; the length is read from the
    header or the array) and calls with ``return_timestamps`` go through :func:`granite_nar.transcribe`,
    which cuts long recordings into segments at pauses (docs/long_form.md); the text of a short input is
    the same either way.
    """

    _load_processor = False
    _load_image_processor = False
    _load_video_processor = False
    _load_feature_extractor = True
    _load_tokenizer = True

    def __call__(self, inputs: Any = None, *args, **kwargs):
        timestamps = kwargs.pop("return_timestamps", None)
        max_segment = kwargs.pop("max_segment_seconds", None)
        if timestamps not in (None, False, True, "word"):
            raise ValueError(f"return_timestamps must be True, 'word' or None, got {timestamps!r}")
        if max_segment is not None and not max_segment > 0:
            raise ValueError(f"max_segment_seconds must be > 0, got {max_segment!r}")
        own = {k: v for k, v in kwargs.items() if k not in ("batch_size", "num_workers")}
        self._sanitize_parameters(**own)  # an unknown parameter is reported first
        if kwargs.get("sampling_rate") is None:
            _refuse_bare_arrays(inputs, self.feature_extractor.sampling_rate)
        limit = 30.0 if max_segment is None else float(max_segment)
        if timestamps or _any_longer(inputs, limit, kwargs.get("sampling_rate")):
            return self._long_form(inputs, timestamps, limit, **kwargs)
        return super().__call__(inputs, *args, **kwargs)

    def _long_form(self, inputs: Any, timestamps, max_segment: float, **kwargs) -> dict | list[dict]:
        """Transcribe through :func:`granite_nar.transcribe` (segments, times) and shape the output as
        transformers' speech pipeline does."""
        from ..audio.processing_granite_speech_nar import GraniteSpeechNarProcessor
        from .transcribe import transcribe

        values, batch = _as_batch(inputs)
        processor = GraniteSpeechNarProcessor(self.feature_extractor, self.tokenizer)
        results = transcribe(
            values,
            model=self.model,
            processor=processor,
            batch_size=kwargs.get("batch_size") or 8,
            num_editing_steps=kwargs.get("num_editing_steps", 1),
            return_drafts=True,
            sampling_rate=kwargs.get("sampling_rate"),
            allow_truncated=bool(kwargs.get("allow_truncated", False)),
            word_timestamps=timestamps == "word",
            max_segment_seconds=max_segment,
        )
        outputs = []
        for result in results:
            output: dict[str, Any] = {"text": result.text}
            if kwargs.get("return_drafts"):
                output["draft"] = result.draft
            if timestamps == "word":
                output["chunks"] = [{"text": w.word, "timestamp": (w.start, w.end)} for w in result.words]
            elif timestamps:
                output["chunks"] = [
                    {"text": s.text, "timestamp": (s.start, s.end)} for s in result.segments if s.text
                ]
            outputs.append(output)
        return outputs if batch else outputs[0]

    def _sanitize_parameters(
        self, num_editing_steps=None, return_drafts=None, sampling_rate=None, allow_truncated=None, **kwargs
    ):
        if kwargs:
            raise TypeError(
                f"{type(self).__name__} does not take {sorted(kwargs)}; it takes num_editing_steps, "
                "return_drafts, sampling_rate, allow_truncated, return_timestamps and max_segment_seconds "
                "(no generation config: editing is not autoregressive)"
            )
        preprocess = {}
        if sampling_rate is not None:
            preprocess["sampling_rate"] = int(sampling_rate)
        if allow_truncated is not None:
            preprocess["allow_truncated"] = bool(allow_truncated)
        forward = {}
        if num_editing_steps is not None:
            if num_editing_steps < 0:
                raise ValueError(f"num_editing_steps must be >= 0, got {num_editing_steps}")
            forward["num_editing_steps"] = num_editing_steps
        postprocess = {} if return_drafts is None else {"return_drafts": bool(return_drafts)}
        return preprocess, forward, postprocess

    def preprocess(
        self, inputs: Any, sampling_rate: int | None = None, allow_truncated: bool = False
    ) -> dict[str, torch.Tensor]:
        rate = self.feature_extractor.sampling_rate
        wave = prepare_waveform(
            inputs, sampling_rate=sampling_rate, target_rate=rate, allow_truncated=allow_truncated
        )
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
            return clean_transcript(self.tokenizer.decode(ids[ids >= 0].tolist(), skip_special_tokens=True))

        result = {"text": decode(model_outputs["sequences"])}
        if return_drafts:
            result["draft"] = decode(model_outputs["drafts"])
        return result


def _any_longer(inputs: Any, seconds: float, sampling_rate: int | None) -> bool:
    """Whether any input is longer than ``seconds``, read from file headers and array lengths (bytes and
    unreadable inputs count as short: the usual path then reports them)."""
    from ..audio.io import audio_info

    for value in _as_batch(inputs)[0]:
        try:
            if is_file_input(value):
                info = audio_info(value)
                length = info.frames / info.sampling_rate
            elif isinstance(value, dict):
                array = value.get("array", value.get("raw"))
                length = len(array) / float(value["sampling_rate"]) if array is not None else 0.0
            elif sampling_rate and hasattr(value, "shape") and len(value.shape) >= 1:
                length = value.shape[-1] / float(sampling_rate)
            else:
                continue
        except Exception:  # reported by the usual path, with its own message
            continue
        if length > seconds:
            return True
    return False


def _as_batch(inputs: Any) -> tuple[list, bool]:
    """The inputs as a list, and whether they were a batch (a flat list of numbers is one waveform)."""
    if isinstance(inputs, (list, tuple)) and not all(isinstance(x, Number) for x in inputs):
        return list(inputs), True
    return [inputs], False


def _refuse_bare_arrays(inputs: Any, target_rate: int) -> None:
    """Refuse a bare waveform (or a list holding one) before any work, naming ``audio[index]``."""
    for index, value in enumerate(_as_batch(inputs)[0]):
        if is_array_input(value):
            raise missing_rate_error(index, target_rate)


def _pad_ids(rows: list[torch.Tensor]) -> torch.Tensor:
    """Variable-length 1-D id tensors → ``(B, max(1, L_max))`` int64, padded with -1."""
    width = max([1] + [len(r) for r in rows])
    out = torch.full((len(rows), width), -1, dtype=torch.long)
    for b, row in enumerate(rows):
        out[b, : len(row)] = row.cpu()
    return out


def _resolve(impl: Any) -> type:
    """A registry ``impl`` (a class or a ``"module.Class"`` string) → the class."""
    if isinstance(impl, str):
        module, name = impl.rsplit(".", 1)
        return getattr(importlib.import_module(module), name)
    return impl


def route_speech_recognition_task() -> None:
    """Make ``pipeline("automatic-speech-recognition", model=<a GraniteSpeechNarForCTC>)`` build a
    :class:`GraniteSpeechNarPipeline`, and leave the task as it was for every other model.

    The task's registry entry gets a subclass of its previous class whose constructor hands a
    Granite Speech NAR model to :class:`GraniteSpeechNarPipeline` and any other model to the previous class
    (so that one is what other models get, exactly as before). Idempotent; run on import of this module.
    """
    from transformers.pipelines import SUPPORTED_TASKS  # the registry's own dict

    entry = SUPPORTED_TASKS.get(TASK)
    if entry is None or getattr(_resolve(entry["impl"]), "_granite_nar_router", False):
        return
    previous = _resolve(entry["impl"])

    def __new__(cls, *args, **kwargs):
        model = kwargs.get("model", args[0] if args else None)
        if isinstance(model, GraniteSpeechNarForCTC):
            return GraniteSpeechNarPipeline(*args, **kwargs)
        return previous(*args, **kwargs)  # not an instance of cls, so __init__ is not run twice

    router = type(
        previous.__name__,
        (previous,),
        {
            "__new__": __new__,
            "__module__": __name__,
            "__doc__": f"{previous.__name__}, or GraniteSpeechNarPipeline for a GraniteSpeechNarForCTC model.",
            "_granite_nar_router": True,
        },
    )
    SUPPORTED_TASKS[TASK] = {**entry, "impl": router}


route_speech_recognition_task()
