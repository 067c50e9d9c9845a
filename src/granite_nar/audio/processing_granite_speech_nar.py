"""Processor of Granite Speech NAR: the feature extractor and the tokenizer behind one object (docs/reference_behaviour.md §7.2).

audio ──► GraniteSpeechNarFeatureExtractor ──► input_features (B, T, 160), input_features_mask (B, T)
text  ──► tokenizer, no special tokens ──────► labels (B, S_max), label_lengths (B,)   (training)
ids   ◄── tokenizer.decode, special tokens skipped, whitespace collapsed ◄── GraniteSpeechNarForCTC.generate
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import BatchFeature
from transformers.processing_utils import ProcessorMixin
from transformers.utils import TensorType

from .feature_extraction_granite_speech_nar import missing_rate_warning

__all__ = [
    "GraniteSpeechNarProcessor",
    "LABEL_PADDING_VALUE",
    "clean_transcript",
    "encode_labels",
    "pad_label_ids",
]

# Label padding: the loss reads ``label_lengths``; a negative filler also marks the padding for code that
# only looks at ``labels`` (the model's forward, transformers collators), as -100 does everywhere else.
LABEL_PADDING_VALUE = -100


class GraniteSpeechNarProcessor(ProcessorMixin):
    r"""Feature extractor and tokenizer of Granite Speech NAR.

    ``processor(audio, sampling_rate=16000)`` gives the model's inputs; with ``text=`` it also gives the CTC
    training targets. ``processor.batch_decode(model.generate(**inputs))`` gives the transcripts.

    Args:
        feature_extractor: a :class:`~granite_nar.GraniteSpeechNarFeatureExtractor`.
        tokenizer: the model's tokenizer (any ``transformers`` tokenizer).
        blank_token: the token the model uses as the CTC blank; it may never appear in a label.
            Default: the tokenizer's ``eos_token`` (``<|end_of_text|>``), as in the released model, whose
            config has ``blank_token_id == eos_token_id``.
    """

    def __init__(self, feature_extractor, tokenizer, blank_token: str | None = None):
        self.blank_token = blank_token
        super().__init__(feature_extractor, tokenizer)

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *args, **kwargs):
        """Load the feature extractor and the tokenizer; a local folder missing either's files is refused
        naming the files and what to do (transformers' own messages point at the Hub or at a converter
        library instead)."""
        folder = Path(os.fspath(pretrained_model_name_or_path))
        if folder.is_dir():
            _check_processor_folder(folder)
        return super().from_pretrained(pretrained_model_name_or_path, *args, **kwargs)

    @property
    def blank_token_id(self) -> int | None:
        """Id of the CTC blank in the tokenizer's vocabulary (``None`` if the tokenizer has no such token)."""
        token = self.blank_token if self.blank_token is not None else self.tokenizer.eos_token
        if token is None:
            return None
        return self.tokenizer.convert_tokens_to_ids(token)

    @property
    def model_input_names(self) -> list[str]:
        return list(self.feature_extractor.model_input_names) + ["labels", "label_lengths"]

    def __call__(
        self,
        audio: Any = None,
        text: str | Sequence[str] | None = None,
        sampling_rate: int | None = None,
        return_tensors: str | TensorType | None = "pt",
        device: str | torch.device | None = None,
        dtype: torch.dtype = torch.float32,
        label_padding_value: int = LABEL_PADDING_VALUE,
    ) -> BatchFeature:
        """Model inputs for ``audio`` and, when ``text`` is given, CTC targets.

        Args:
            audio: one 16 kHz mono waveform (1-D numpy array, torch tensor or list of floats; float samples
                or int16 PCM) or a list of them. Files must be read first (:func:`granite_nar.audio.load_audio`).
            text: one transcript or a list of them, one per waveform (or text alone, to build labels only).
            sampling_rate: the audio's rate; checked against the feature extractor's (nothing is resampled).
                Without it the audio is assumed to be at the feature extractor's rate (16000 Hz) and a
                ``UserWarning`` says so.
            return_tensors: ``"pt"`` (default) or ``"np"``.
            device, dtype: where and in which precision the features are computed (see the feature extractor).
            label_padding_value: filler of ``labels`` past each ``label_lengths`` entry (default -100).

        Returns:
            :class:`~transformers.BatchFeature` with ``input_features`` ``(B, T, 160)`` and
            ``input_features_mask`` ``(B, T)`` bool for audio (``T = max_b N_b // 320``,
            :func:`granite_nar.lengths.num_encoder_frames`), and for text ``labels`` ``(B, S_max)`` int64,
            right-padded, and ``label_lengths`` ``(B,)`` int64. Labels hold the tokenizer's ids without any
            special token added (no BOS/EOS: CTC targets are the transcript alone).

        Raises:
            InvalidAudioError: an unusable waveform (empty, under 320 samples, NaN/inf, not 1-D …), named by index.
            ValueError: neither audio nor text; a different number of texts and waveforms; a wrong sampling rate;
                a transcript whose tokens include the CTC blank.
            TypeError: ``text`` is not a string or a list of strings.
        """
        if audio is None and text is None:
            raise ValueError("pass audio, text or both")
        if return_tensors is None:
            return_tensors = TensorType.PYTORCH
        return_tensors = TensorType(return_tensors)
        data: dict[str, Any] = {}
        if audio is not None:
            if sampling_rate is None:
                rate = self.feature_extractor.sampling_rate
                warnings.warn(missing_rate_warning(type(self).__name__, rate), UserWarning, stacklevel=2)
                sampling_rate = rate  # warned once, here
            features = self.feature_extractor(
                audio, sampling_rate=sampling_rate, return_tensors="pt", device=device, dtype=dtype
            )
            data.update(features)
        if text is not None:
            texts = _as_text_list(text)
            if audio is not None and len(texts) != data["input_features"].shape[0]:
                raise ValueError(
                    f"got {data['input_features'].shape[0]} waveform(s) but {len(texts)} transcript(s); "
                    "pass one transcript per waveform"
                )
            labels, lengths = encode_labels(self.tokenizer, texts, self.blank_token_id, label_padding_value)
            data["labels"], data["label_lengths"] = labels, lengths
        if return_tensors == TensorType.NUMPY:
            data = {key: value.cpu().numpy() for key, value in data.items()}
        return BatchFeature(data=data, tensor_type=return_tensors)

    def batch_decode(self, sequences: Any, skip_special_tokens: bool = True, **kwargs) -> list[str]:
        """Transcripts of a batch of token-id sequences (e.g. the list :meth:`generate` returns).

        Accepts a list of 1-D tensors / arrays / lists of ids (lengths may differ) or a 2-D tensor.
        Special tokens (pad, blank/eos) are skipped by default, and the text is cleaned with
        :func:`clean_transcript` (one space between words, none at the ends).
        """
        rows = [_ids_list(row) for row in sequences]
        texts = self.tokenizer.batch_decode(rows, skip_special_tokens=skip_special_tokens, **kwargs)
        return [clean_transcript(text) for text in texts]

    def decode(self, token_ids: Any, skip_special_tokens: bool = True, **kwargs) -> str:
        """Transcript of one token-id sequence; special tokens skipped by default, whitespace cleaned."""
        text = self.tokenizer.decode(_ids_list(token_ids), skip_special_tokens=skip_special_tokens, **kwargs)
        return clean_transcript(text)


def clean_transcript(text: str) -> str:
    """Runs of whitespace collapsed to one space, none at the ends.

    A lone word-boundary piece (``▁``) that the model emits between words, or at the start or end, decodes
    to an extra space; a transcript never means one.
    """
    return " ".join(text.split())


# Files a tokenizer can be loaded from (one of these sets must be present).
_TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer.model",
    "vocab.json",
    "spiece.model",
    "sentencepiece.bpe.model",
)


def _check_processor_folder(folder: Path) -> None:
    """Refuse a local processor folder without feature-extractor settings or tokenizer files."""
    if not any((folder / name).is_file() for name in ("processor_config.json", "preprocessor_config.json")):
        raise FileNotFoundError(
            f"{folder}: no processor_config.json or preprocessor_config.json, so the feature-extractor settings "
            "are missing. Copy the processor files of the checkpoint this folder came from, or write them with "
            "processor.save_pretrained(folder) (the released model uses GraniteSpeechNarFeatureExtractor()'s "
            "defaults)."
        )
    if not any((folder / name).is_file() for name in _TOKENIZER_FILES):
        raise FileNotFoundError(
            f"{folder}: no tokenizer files (none of {', '.join(_TOKENIZER_FILES)}), so the tokenizer cannot be "
            "loaded. Copy the tokenizer files (tokenizer.json and tokenizer_config.json) of the checkpoint this "
            "folder came from, or write them with processor.save_pretrained(folder)."
        )


def encode_labels(
    tokenizer, texts: Sequence[str], blank_token_id: int | None, padding_value: int = LABEL_PADDING_VALUE
) -> tuple[torch.Tensor, torch.Tensor]:
    """CTC targets of transcripts: token ids without special tokens, right-padded.

    The one tokenisation path for labels (the processor and the training collator both call it).
    Returns ``labels`` ``(B, S_max)`` int64 and ``label_lengths`` ``(B,)`` int64; a transcript whose
    tokens include the CTC blank is refused, since CTC cannot emit its blank as a label.
    """
    ids = tokenizer(list(texts), add_special_tokens=False)["input_ids"]
    for index, row in enumerate(ids):
        if blank_token_id is not None and blank_token_id in row:
            token = tokenizer.convert_ids_to_tokens(blank_token_id)
            raise ValueError(
                f"text[{index}] encodes to the CTC blank id {blank_token_id} ({token!r}) in {texts[index]!r}; "
                "transcripts must not contain it"
            )
    return pad_label_ids(ids, padding_value)


def pad_label_ids(rows: Sequence[Sequence[int]], padding_value: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Id lists → ``(B, S_max)`` int64 right-padded with ``padding_value``, and ``(B,)`` lengths."""
    lengths = torch.tensor([len(row) for row in rows], dtype=torch.long)  # (B,)
    labels = torch.full((len(rows), int(lengths.max())), padding_value, dtype=torch.long)  # (B, S_max)
    for b, row in enumerate(rows):
        labels[b, : len(row)] = torch.tensor(row, dtype=torch.long)
    return labels, lengths


def _as_text_list(text: Any) -> list[str]:
    if isinstance(text, str):
        return [text]
    if isinstance(text, Sequence) and all(isinstance(t, str) for t in text):
        if len(text) == 0:
            raise ValueError("text is an empty list")
        return list(text)
    raise TypeError(f"text must be a string or a list of strings, got {type(text).__name__}")


def _ids_list(ids: Any) -> list[int]:
    if isinstance(ids, torch.Tensor):
        if ids.ndim != 1:
            raise ValueError(f"expected a 1-D sequence of token ids, got shape {tuple(ids.shape)}")
        return ids.tolist()
    if isinstance(ids, np.ndarray):
        return ids.astype(np.int64).ravel().tolist()
    return [int(i) for i in ids]
