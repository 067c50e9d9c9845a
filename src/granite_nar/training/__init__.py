"""Fine-tuning Granite Speech NAR: data, trainable-parameter presets, draft noise, metrics and the trainer;
text normalisers and the evaluation of a model on a manifest.

See ``docs/training.md`` and ``docs/evaluation.md``. The ``lora`` preset needs the ``train`` extra (peft).
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
from .evaluation import (
    EvaluationReport,
    EvaluationUsageError,
    RowFailure,
    SliceScore,
    SliceSpec,
    StepScore,
    UtteranceResult,
    evaluate_manifest,
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
from .normalizers import (
    TextNormalizer,
    TranscriptScorer,
    UtteranceErrors,
    build_normalizer,
    load_spelling_mapping,
)
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
    "TextNormalizer",
    "TranscriptScorer",
    "UtteranceErrors",
    "build_normalizer",
    "load_spelling_mapping",
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
    "EvaluationReport",
    "EvaluationUsageError",
    "RowFailure",
    "SliceScore",
    "SliceSpec",
    "StepScore",
    "UtteranceResult",
    "evaluate_manifest",
]
