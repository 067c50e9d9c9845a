"""The audio front end: files and waveforms in, stacked log-mel features out.

``waveform`` (checks, downmix, resampling) → ``io`` (reading files) → ``inputs`` (one way in for files,
bytes, arrays and dicts) → ``feature_extraction_granite_speech_nar`` (log-mel frames) →
``processing_granite_speech_nar`` (features + tokenizer).
"""

from .feature_extraction_granite_speech_nar import GraniteSpeechNarFeatureExtractor
from .inputs import prepare_waveform
from .io import AudioInfo, AudioLoadError, TruncatedAudioWarning, audio_info, decode_audio, load_audio
from .processing_granite_speech_nar import GraniteSpeechNarProcessor
from .waveform import InvalidAudioError, downmix, resample_waveform, to_mono, validate_waveform

__all__ = [
    "AudioInfo",
    "AudioLoadError",
    "GraniteSpeechNarFeatureExtractor",
    "GraniteSpeechNarProcessor",
    "InvalidAudioError",
    "TruncatedAudioWarning",
    "audio_info",
    "decode_audio",
    "downmix",
    "load_audio",
    "prepare_waveform",
    "resample_waveform",
    "to_mono",
    "validate_waveform",
]
