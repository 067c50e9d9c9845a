"""granite_nar: Granite Speech NAR (non-autoregressive ASR by transcript editing) for transformers.

Importing the package registers its configs and models with the transformers Auto classes.
"""

from transformers import AutoConfig, AutoModel, AutoModelForCTC

from .configuration import (
    GraniteSpeechNarConfig,
    GraniteSpeechNarEncoderConfig,
    GraniteSpeechNarProjectorConfig,
    GraniteSpeechNarTextConfig,
)
from .modeling_granite_speech_nar import (
    GraniteSpeechNarForCTC,
    GraniteSpeechNarGenerateOutput,
    GraniteSpeechNarModel,
    GraniteSpeechNarOutput,
    GraniteSpeechNarPreTrainedModel,
)

__version__ = "0.1.0"

for _config in (
    GraniteSpeechNarConfig,
    GraniteSpeechNarEncoderConfig,
    GraniteSpeechNarProjectorConfig,
    GraniteSpeechNarTextConfig,
):
    AutoConfig.register(_config.model_type, _config, exist_ok=True)
AutoModel.register(GraniteSpeechNarConfig, GraniteSpeechNarModel, exist_ok=True)
AutoModelForCTC.register(GraniteSpeechNarConfig, GraniteSpeechNarForCTC, exist_ok=True)

__all__ = [
    "GraniteSpeechNarConfig",
    "GraniteSpeechNarEncoderConfig",
    "GraniteSpeechNarProjectorConfig",
    "GraniteSpeechNarTextConfig",
    "GraniteSpeechNarPreTrainedModel",
    "GraniteSpeechNarModel",
    "GraniteSpeechNarForCTC",
    "GraniteSpeechNarOutput",
    "GraniteSpeechNarGenerateOutput",
]
