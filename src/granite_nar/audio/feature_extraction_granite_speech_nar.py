"""Audio front end of Granite Speech NAR: waveform → stacked log-mel frames (docs/reference_behaviour.md §2).

    16 kHz mono waveform, N samples
      └─ power mel spectrogram, 25 ms Hann window, 10 ms hop ──► 1 + N // 160 frames × 80 bins
           └─ keep the first 2 * (N // 320) frames (cut *before* the log and the maximum, docs/reference_behaviour.md §2.1)
                └─ log10, per-utterance dynamic-range clamp to 8 decades, / 4 + 1
                     └─ stack pairs of frames ──► N // 320 encoder frames × 160 values

The mel spectrogram equals ``torchaudio.transforms.MelSpectrogram(sample_rate=16000, n_fft=512,
win_length=400, hop_length=160, n_mels=80)`` with its defaults, written in plain torch (docs/reference_behaviour.md §11.6:
no torchaudio). Every utterance is computed on its own and only then padded, so its features never
depend on the rest of the batch (docs/reference_behaviour.md §11.3).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from transformers.feature_extraction_sequence_utils import SequenceFeatureExtractor
from transformers.feature_extraction_utils import BatchFeature
from transformers.utils import TensorType

from ..checkpoints.original_layout import native_feature_extractor_kwargs
from ..lengths import SAMPLES_PER_ENCODER_FRAME, SAMPLING_RATE, lengths_to_mask, num_encoder_frames
from .waveform import InvalidAudioError, validate_waveform

__all__ = [
    "GraniteSpeechNarFeatureExtractor",
    "htk_mel_filter_bank",
    "missing_rate_warning",
]

LOG_FLOOR = 1e-10  # power floor before log10 (docs/reference_behaviour.md §2.1)
DYNAMIC_RANGE_DECADES = 8.0  # log10 values more than 8 below the utterance maximum are raised to it


def htk_mel_filter_bank(
    num_frequency_bins: int,
    num_mel_filters: int,
    sampling_rate: int,
    min_frequency: float = 0.0,
    max_frequency: float | None = None,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Triangular HTK-scale mel filters without area normalisation, as torchaudio's ``melscale_fbanks``.

    Same arithmetic as ``torchaudio.functional.melscale_fbanks(..., norm=None, mel_scale="htk")``:
    bin centres ``linspace(0, sr // 2, n_freqs)``, filter edges equally spaced on
    ``mel = 2595 * log10(1 + f / 700)``, each filter the minimum of its rising and falling slopes.

    Returns:
        ``(num_frequency_bins, num_mel_filters)`` tensor; ``power_spectrum.T @ filters`` gives mel power.
    """
    if max_frequency is None:
        max_frequency = float(sampling_rate // 2)
    bin_frequencies = torch.linspace(0, sampling_rate // 2, num_frequency_bins, dtype=dtype)
    mel_min = 2595.0 * math.log10(1.0 + min_frequency / 700.0)
    mel_max = 2595.0 * math.log10(1.0 + max_frequency / 700.0)
    mel_points = torch.linspace(mel_min, mel_max, num_mel_filters + 2, dtype=dtype)
    edge_frequencies = 700.0 * (10.0 ** (mel_points / 2595.0) - 1.0)  # (n_mels + 2,)

    edge_gaps = edge_frequencies[1:] - edge_frequencies[:-1]  # (n_mels + 1,)
    slopes = edge_frequencies.unsqueeze(0) - bin_frequencies.unsqueeze(1)  # (n_freqs, n_mels + 2)
    falling = -slopes[:, :-2] / edge_gaps[:-1]  # (n_freqs, n_mels)
    rising = slopes[:, 2:] / edge_gaps[1:]  # (n_freqs, n_mels)
    return torch.clamp_min(torch.minimum(falling, rising), 0.0)


class GraniteSpeechNarFeatureExtractor(SequenceFeatureExtractor):
    r"""Stacked log-mel features of Granite Speech NAR (docs/reference_behaviour.md §2).

    For a 16 kHz waveform of ``N`` samples it returns ``N // 320`` encoder frames of 160 values (two
    80-bin log-mel frames, the even one first). The frame rule is the released remote code's
    (docs/reference_behaviour.md §2.2) and comes from :func:`granite_nar.lengths.num_encoder_frames`.

    Each utterance is computed alone (its own reflect padding at its own end, its own maximum) and
    then right-padded with ``padding_value``, so an utterance's features are the same alone and in
    any batch (docs/reference_behaviour.md §11.3).

    Args:
        feature_size: mel bins per 10 ms frame, 80 by default (``n_mels`` in the original config,
            docs/reference_behaviour.md §1.5, §6.4; ``n_mels`` is accepted and mapped to this field).
        sampling_rate: sample rate the model expects; other rates are refused, not resampled.
        n_fft: FFT size; the window is zero-padded to it, centred.
        win_length: periodic Hann window length in samples (25 ms).
        hop_length: hop between mel frames in samples (10 ms).
        frame_stacking: mel frames per encoder frame.
        padding_value: value of the features past an utterance's end in a padded batch.
    """

    model_input_names = ["input_features", "input_features_mask"]

    def __init__(
        self,
        feature_size: int | None = None,
        sampling_rate: int = SAMPLING_RATE,
        n_fft: int = 512,
        win_length: int = 400,
        hop_length: int = 160,
        frame_stacking: int = 2,
        padding_value: float = 0.0,
        **kwargs,
    ):
        # The original preprocessor_config.json names the bin count ``n_mels`` and points at remote code
        # with ``auto_map`` (docs/reference_behaviour.md §1.5, §11.6); original_layout maps it to native fields.
        if "n_mels" in kwargs or "auto_map" in kwargs:
            given = {"feature_size": feature_size} if feature_size is not None else {}
            native = native_feature_extractor_kwargs({**kwargs, **given})
            feature_size = native.pop("feature_size", None)
            kwargs = {k: v for k, v in kwargs.items() if k in native}
        feature_size = 80 if feature_size is None else feature_size
        if hop_length * frame_stacking != SAMPLES_PER_ENCODER_FRAME:
            raise ValueError(
                f"hop_length={hop_length} × frame_stacking={frame_stacking} must equal "
                f"{SAMPLES_PER_ENCODER_FRAME} samples, the encoder frame the model's length bookkeeping uses"
            )
        if win_length > n_fft:
            raise ValueError(f"win_length={win_length} must not exceed n_fft={n_fft}")
        if n_fft // 2 >= SAMPLES_PER_ENCODER_FRAME:
            # The reflect padding of n_fft // 2 needs more samples than the shortest accepted input.
            raise ValueError(
                f"n_fft={n_fft} is too large: n_fft // 2 must be below {SAMPLES_PER_ENCODER_FRAME}"
            )
        super().__init__(
            feature_size=feature_size, sampling_rate=sampling_rate, padding_value=padding_value, **kwargs
        )
        self.n_fft = n_fft
        self.win_length = win_length
        self.hop_length = hop_length
        self.frame_stacking = frame_stacking
        # Filters and window per (dtype, device), built on first use; not part of the saved config.
        self._tables: dict[tuple[torch.dtype, str], tuple[torch.Tensor, torch.Tensor]] = {}

    def to_dict(self) -> dict[str, Any]:
        """Serializable config (the cached filter bank and window are left out)."""
        output = super().to_dict()
        output.pop("_tables", None)
        return output

    def _window_and_filters(
        self, dtype: torch.dtype, device: torch.device
    ) -> tuple[torch.Tensor, torch.Tensor]:
        key = (dtype, str(device))
        if key not in self._tables:
            window = torch.hann_window(self.win_length, periodic=True, dtype=dtype)
            filters = htk_mel_filter_bank(
                self.n_fft // 2 + 1, self.feature_size, self.sampling_rate, dtype=dtype
            )
            self._tables[key] = (window.to(device), filters.to(device))
        return self._tables[key]

    def extract(self, wave: torch.Tensor, chunk_seconds: float | None = None) -> torch.Tensor:
        """Features of one validated waveform, of any length.

        Mel frame ``k`` is centred on sample ``k * hop``: the 400-sample Hann window, zero-padded to
        ``n_fft``, reads samples ``[k * hop - n_fft // 2, k * hop + n_fft // 2]`` of the signal reflect-padded
        by ``n_fft // 2`` at both ends, as ``torch.stft(center=True)`` and torchaudio's Spectrogram do.
        Only the first ``2 * (N // 320)`` frames are computed (cut *before* the log and the maximum,
        docs/reference_behaviour.md §2.1).

        Args:
            wave: ``(N,)`` float tensor (see :func:`validate_waveform`), ``N >= 320``; the computation
                runs in its dtype and on its device.
            chunk_seconds: compute the spectrum this much audio at a time (the same frames as one call)
                and keep only the 80-bin log-mel: the whole spectrum of an hour (257 bins × 360 000
                frames, complex) would take 0.7 GB. ``None``: in one piece. The dynamic-range clamp uses
                the maximum of the whole recording either way.

        Returns:
            ``(N // 320, frame_stacking * feature_size)`` tensor.
        """
        window, filters = self._window_and_filters(wave.dtype, wave.device)
        num_frames = num_encoder_frames(wave.shape[0])
        num_mel_frames = self.frame_stacking * num_frames
        chunk = num_mel_frames
        if chunk_seconds is not None:
            chunk = max(1, int(chunk_seconds * self.sampling_rate) // self.hop_length)
        half = self.n_fft // 2
        log_mel = torch.empty(num_mel_frames, self.feature_size, dtype=wave.dtype, device=wave.device)
        with torch.no_grad():
            for first in range(0, num_mel_frames, chunk):
                last = min(first + chunk, num_mel_frames)
                lo, hi = first * self.hop_length - half, (last - 1) * self.hop_length + half + 1
                piece = wave[max(lo, 0) : min(hi, wave.shape[0])]
                edges = (max(-lo, 0), max(hi - wave.shape[0], 0))
                if any(edges):  # the recording's own ends
                    piece = F.pad(piece[None, None], edges, mode="reflect")[0, 0]
                spectrum = torch.stft(
                    piece,
                    n_fft=self.n_fft,
                    hop_length=self.hop_length,
                    win_length=self.win_length,
                    window=window,
                    center=False,
                    normalized=False,
                    onesided=True,
                    return_complex=True,
                )  # (n_fft // 2 + 1, last - first)
                power = spectrum.abs().pow(2.0)
                log_mel[first:last] = (power.T @ filters).clamp_min(LOG_FLOOR).log10()  # (F, 80)
            peak = log_mel.max()
            log_mel = torch.maximum(log_mel, peak - DYNAMIC_RANGE_DECADES) / 4.0 + 1.0
            # Frame k of the encoder is [mel_2k ; mel_2k+1] (even frame's bins first).
            return log_mel.reshape(num_frames, self.frame_stacking * self.feature_size)  # (T, 160)

    def __call__(
        self,
        raw_speech: Any,
        sampling_rate: int | None = None,
        return_tensors: str | TensorType | None = "pt",
        device: str | torch.device | None = None,
        dtype: torch.dtype = torch.float32,
        padding: bool | str = True,
        max_length: int | None = None,
        truncation: bool = False,
        pad_to_multiple_of: int | None = None,
        return_attention_mask: bool | None = None,
    ) -> BatchFeature:
        """Features and frame mask for one waveform or a batch of waveforms.

        The standard feature-extractor arguments keep their transformers meaning, with lengths counted in
        encoder frames (20 ms, 320 samples), the unit of the returned features:

        * ``padding``: ``True`` / ``"longest"`` (default) pads to the longest utterance; ``"max_length"`` pads to
          ``max_length`` frames; ``False`` / ``"do_not_pad"`` is allowed only when no padding is needed (one
          utterance, or equal lengths), since a batch tensor cannot hold ragged rows.
        * ``truncation=True`` with ``max_length``: each waveform is cut to ``max_length * 320`` samples
          *before* its features are computed, so a truncated utterance gets exactly the features of the
          shorter clip (the per-utterance normalisation sees only what is kept).
        * ``pad_to_multiple_of``: the frame dimension is padded up to a multiple of it.
        * ``return_attention_mask``: ``False`` leaves out ``input_features_mask`` (the model then takes
          every frame as valid); ``True`` or ``None`` returns it.

        Args:
            raw_speech: one waveform (1-D numpy array, torch tensor or list of floats; float samples or
                int16 PCM) or a list/tuple of them. 2-D arrays are refused: downmix to mono first and
                pass a batch as a list.
            sampling_rate: rate of ``raw_speech``; it must equal ``self.sampling_rate`` (resample before
                calling; nothing is resampled here). Without it the audio is assumed to be at
                ``self.sampling_rate`` and a ``UserWarning`` says so, as transformers' feature extractors do.
            return_tensors: ``"pt"`` (default; ``None`` means the same) or ``"np"``.
            device: where to compute (default: CPU). ``"pt"`` outputs stay on it.
            dtype: computation and output dtype, ``torch.float32`` (default) or ``torch.float64``.

        Returns:
            :class:`~transformers.BatchFeature` with

            * ``input_features``: ``(B, T, 160)``, ``T = max_b N_b // 320``; rows past an utterance's
              length hold ``padding_value``;
            * ``input_features_mask``: ``(B, T)`` bool, ``mask[b, t] = t < N_b // 320``.

        Raises:
            InvalidAudioError: a waveform is unusable; the message names it by its batch index.
            ValueError: wrong ``sampling_rate``, ``dtype`` or ``return_tensors``.
        """
        if sampling_rate is None:
            warnings.warn(
                missing_rate_warning(type(self).__name__, self.sampling_rate), UserWarning, stacklevel=2
            )
        elif sampling_rate != self.sampling_rate:
            raise ValueError(
                f"audio sampled at {sampling_rate} Hz, but {self.__class__.__name__} expects "
                f"{self.sampling_rate} Hz; resample first (e.g. granite_nar.audio, or soxr)"
            )
        if return_tensors is None:
            return_tensors = TensorType.PYTORCH
        try:
            return_tensors = TensorType(return_tensors)
        except ValueError:
            raise ValueError(f"return_tensors must be 'pt' or 'np', got {return_tensors!r}") from None
        if return_tensors not in (TensorType.PYTORCH, TensorType.NUMPY):
            raise ValueError(f"return_tensors must be 'pt' or 'np', got {return_tensors.value!r}")
        device = torch.device("cpu") if device is None else torch.device(device)

        padding = _check_padding(padding, max_length, truncation, pad_to_multiple_of)
        waves = [w.to(device) for w in _validate_batch(raw_speech, dtype)]
        if truncation:
            waves = [w[: max_length * SAMPLES_PER_ENCODER_FRAME] for w in waves]
        # One utterance at a time: measured as fast as batching equal lengths on CPU, and trivially
        # batch-invariant (benchmarks/bench_feature_extraction.py).
        features = [self.extract(wave) for wave in waves]  # B × (T_b, 160)
        lengths = torch.tensor([f.shape[0] for f in features], device=device)  # (B,)
        max_frames = int(lengths.max())
        if padding == "max_length":
            if max_frames > max_length:
                raise ValueError(
                    f"an utterance has {max_frames} frames, more than max_length={max_length}; pass "
                    "truncation=True to cut it, or a larger max_length"
                )
            max_frames = max_length
        elif padding == "do_not_pad" and len(set(lengths.tolist())) > 1:
            raise ValueError(
                f"padding=False cannot batch utterances of different lengths ({sorted(set(lengths.tolist()))} "
                "frames); use padding=True (the mask marks the padding) or pass them one at a time"
            )
        if pad_to_multiple_of:
            max_frames = -(max_frames // -pad_to_multiple_of) * pad_to_multiple_of
        batch = torch.full(
            (len(features), max_frames, self.frame_stacking * self.feature_size),
            float(self.padding_value),
            dtype=dtype,
            device=device,
        )  # (B, T, 160)
        for b, feats in enumerate(features):
            batch[b, : feats.shape[0]] = feats
        mask = lengths_to_mask(lengths, max_frames)  # (B, T)

        data = {"input_features": batch, "input_features_mask": mask}
        if return_attention_mask is False:
            del data["input_features_mask"]
        if return_tensors == TensorType.NUMPY:
            data = {key: value.cpu().numpy() for key, value in data.items()}
        return BatchFeature(data=data, tensor_type=return_tensors)


def missing_rate_warning(caller: str, rate: int) -> str:
    """The warning for audio given to ``caller`` without ``sampling_rate``."""
    return (
        f"{caller} was called without sampling_rate, so the audio is assumed to be at {rate} Hz; pass "
        f"sampling_rate={rate} to confirm it, and resample audio at other rates to {rate} Hz first "
        "(granite_nar.audio.resample_waveform), or the transcript will be wrong"
    )


def _check_padding(
    padding: bool | str, max_length: int | None, truncation: bool, pad_to_multiple_of: int | None
) -> str:
    """The padding strategy as ``"longest"``, ``"max_length"`` or ``"do_not_pad"``; bad combinations raise."""
    strategies = {True: "longest", False: "do_not_pad", "longest": "longest", "max_length": "max_length"}
    strategies["do_not_pad"] = "do_not_pad"
    if not isinstance(padding, (bool, str)) or padding not in strategies:
        raise ValueError(
            f"padding must be True, False, 'longest', 'max_length' or 'do_not_pad', got {padding!r}"
        )
    padding = strategies[padding]
    if max_length is not None and (not isinstance(max_length, int) or max_length < 1):
        raise ValueError(
            f"max_length must be a positive number of encoder frames (20 ms each), got {max_length!r}"
        )
    if padding == "max_length" and max_length is None:
        raise ValueError("padding='max_length' needs max_length (in encoder frames, 20 ms each)")
    if truncation and max_length is None:
        raise ValueError("truncation=True needs max_length (in encoder frames, 20 ms each)")
    if pad_to_multiple_of is not None and (not isinstance(pad_to_multiple_of, int) or pad_to_multiple_of < 1):
        raise ValueError(f"pad_to_multiple_of must be a positive integer, got {pad_to_multiple_of!r}")
    if padding == "do_not_pad" and pad_to_multiple_of:
        raise ValueError("pad_to_multiple_of needs padding; it cannot be combined with padding=False")
    return padding


def _validate_batch(raw_speech: Any, dtype: torch.dtype) -> list[torch.Tensor]:
    """One waveform or a list of waveforms → list of validated 1-D tensors."""
    if isinstance(raw_speech, (np.ndarray, torch.Tensor)):
        return [validate_waveform(raw_speech, dtype=dtype)]
    if isinstance(raw_speech, Sequence) and not isinstance(raw_speech, (str, bytes)):
        if len(raw_speech) == 0:
            raise InvalidAudioError("audio: got an empty list; expected a waveform or a list of waveforms")
        if isinstance(raw_speech[0], (np.ndarray, torch.Tensor, list, tuple)):
            return [validate_waveform(wave, index, dtype=dtype) for index, wave in enumerate(raw_speech)]
    # A flat list of numbers is one waveform; anything else gets validate_waveform's message.
    return [validate_waveform(raw_speech, dtype=dtype)]
