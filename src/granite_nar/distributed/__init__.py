"""Beyond one process: corpora on Ray Data (the ``ray`` extra), multi-process fine-tuning (docs/scale_out.md).

Ray is imported only when a function here runs, so this package imports without the extra.
"""

from .ray_data import DatasetReport, ManifestError, completed_keys, read_manifest, transcribe_dataset

__all__ = ["DatasetReport", "ManifestError", "completed_keys", "read_manifest", "transcribe_dataset"]
