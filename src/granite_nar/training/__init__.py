"""Fine-tuning Granite Speech NAR: data, trainable-parameter presets, draft noise, metrics and the trainer.

See ``docs/training.md``. The ``lora`` preset needs the ``train`` extra (peft).
"""

from .data import (
    DataCollatorForGraniteSpeechNar,
    ManifestError,
    ManifestFilter,
    ManifestReport,
    ManifestRow,
    SpeechDataset,
    ctc_symbols_needed,
    load_waveform,
    read_manifest,
    unknown_characters,
)
from .metrics import (
    EditCounts,
    ErrorRate,
    basic_normalize,
    char_error_rate,
    edit_distance,
    identity_normalize,
    split_words,
    word_error_rate,
)
from .noise import DraftNoise
from .presets import (
    PRESETS,
    TrainableSummary,
    apply_preset,
    count_parameters,
    is_peft_model,
    merged_state_dict,
    unwrap_model,
)
from .sequence import SequenceLosses, SequenceObjective, compute_sequence_losses
from .trainer import (
    ADAPTER_SUBFOLDER,
    GraniteSpeechNarTrainer,
    NarLosses,
    TranscriptionEvaluator,
    WallClockBudget,
    compute_nar_losses,
    save_merged_model,
    step_name,
)

__all__ = [
    "DataCollatorForGraniteSpeechNar",
    "ManifestError",
    "ManifestFilter",
    "ManifestReport",
    "ManifestRow",
    "SpeechDataset",
    "ctc_symbols_needed",
    "load_waveform",
    "read_manifest",
    "unknown_characters",
    "EditCounts",
    "ErrorRate",
    "basic_normalize",
    "char_error_rate",
    "edit_distance",
    "identity_normalize",
    "split_words",
    "word_error_rate",
    "DraftNoise",
    "PRESETS",
    "TrainableSummary",
    "apply_preset",
    "count_parameters",
    "is_peft_model",
    "merged_state_dict",
    "unwrap_model",
    "SequenceLosses",
    "SequenceObjective",
    "compute_sequence_losses",
    "ADAPTER_SUBFOLDER",
    "GraniteSpeechNarTrainer",
    "NarLosses",
    "TranscriptionEvaluator",
    "WallClockBudget",
    "compute_nar_losses",
    "save_merged_model",
    "step_name",
]
