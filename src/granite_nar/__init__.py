"""granite_nar: Granite Speech NAR (non-autoregressive ASR by transcript editing) for transformers.

Importing the package registers its configs and models with the transformers Auto classes.
"""

from transformers import (
    AutoConfig,
    AutoFeatureExtractor,
    AutoModel,
    AutoModelForCTC,
    AutoModelForSpeechSeq2Seq,
    AutoProcessor,
)

from .audio import (
    AudioLoadError,
    GraniteSpeechNarFeatureExtractor,
    GraniteSpeechNarProcessor,
    InvalidAudioError,
    load_audio,
)
from .checkpoints.loading import CheckpointFileError, ModelNotFoundError
from .model.configuration_granite_speech_nar import (
    GraniteSpeechNarConfig,
    GraniteSpeechNarEncoderConfig,
    GraniteSpeechNarProjectorConfig,
    GraniteSpeechNarTextConfig,
    UnknownConfigFieldWarning,
)
from .model.modeling_encoder import GraniteSpeechNarEncoder
from .model.modeling_granite_speech_ar import (
    GraniteSpeechArConfig,
    GraniteSpeechArForConditionalGeneration,
    GraniteSpeechArPreTrainedModel,
)
from .model.modeling_granite_speech_nar import (
    GraniteSpeechNarForCTC,
    GraniteSpeechNarGenerateOutput,
    GraniteSpeechNarModel,
    GraniteSpeechNarOutput,
    GraniteSpeechNarPreTrainedModel,
)
from .model.quantization import quantize_int8
from .transcription.long_form import LongFormOptions
from .transcription.pipeline import GraniteSpeechNarPipeline
from .transcription.results import Segment, TranscriptionResult, Word
from .transcription.transcribe import load_model, transcribe, transcribe_iter

# Keep equal to pyproject.toml's version (``granite-nar --version`` reads the installed metadata).
__version__ = "0.2.0"

for _config in (
    GraniteSpeechNarConfig,
    GraniteSpeechNarEncoderConfig,
    GraniteSpeechNarProjectorConfig,
    GraniteSpeechNarTextConfig,
):
    AutoConfig.register(_config.model_type, _config, exist_ok=True)
AutoModel.register(GraniteSpeechNarConfig, GraniteSpeechNarModel, exist_ok=True)
AutoModel.register(GraniteSpeechNarEncoderConfig, GraniteSpeechNarEncoder, exist_ok=True)
AutoModelForCTC.register(GraniteSpeechNarConfig, GraniteSpeechNarForCTC, exist_ok=True)
# The autoregressive counterpart (same encoder and projector, causal LM), like transformers' Granite Speech.
AutoConfig.register(GraniteSpeechArConfig.model_type, GraniteSpeechArConfig, exist_ok=True)
AutoModelForSpeechSeq2Seq.register(
    GraniteSpeechArConfig, GraniteSpeechArForConditionalGeneration, exist_ok=True
)
# Registering by config class also lets AutoProcessor / AutoFeatureExtractor find the classes by the names
# written in processor_config.json / preprocessor_config.json (the original layout's `auto_map` is ignored).
AutoFeatureExtractor.register(GraniteSpeechNarConfig, GraniteSpeechNarFeatureExtractor, exist_ok=True)
AutoProcessor.register(GraniteSpeechNarConfig, GraniteSpeechNarProcessor, exist_ok=True)

__all__ = [
    "quantize_int8",
    "GraniteSpeechNarConfig",
    "GraniteSpeechNarEncoderConfig",
    "GraniteSpeechNarProjectorConfig",
    "GraniteSpeechNarTextConfig",
    "GraniteSpeechNarPreTrainedModel",
    "GraniteSpeechNarModel",
    "GraniteSpeechNarEncoder",
    "GraniteSpeechNarForCTC",
    "GraniteSpeechNarOutput",
    "GraniteSpeechNarGenerateOutput",
    "GraniteSpeechArConfig",
    "GraniteSpeechArPreTrainedModel",
    "GraniteSpeechArForConditionalGeneration",
    "GraniteSpeechNarFeatureExtractor",
    "GraniteSpeechNarProcessor",
    "GraniteSpeechNarPipeline",
    "InvalidAudioError",
    "AudioLoadError",
    "load_audio",
    "load_model",
    "transcribe",
    "transcribe_iter",
    "TranscriptionResult",
    "Segment",
    "Word",
    "LongFormOptions",
    "UnknownConfigFieldWarning",
    "ModelNotFoundError",
    "CheckpointFileError",
]
