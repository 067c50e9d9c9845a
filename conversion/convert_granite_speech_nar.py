#!/usr/bin/env python
"""Convert ``ibm-granite/granite-speech-4.1-2b-nar`` from its original remote-code layout to the native one.

    python conversion/convert_granite_speech_nar.py --input ibm-granite/granite-speech-4.1-2b-nar \\
        --revision 99a4df9... --output granite-speech-4.1-2b-nar-native

Steps (library code in :mod:`granite_nar.checkpoints.conversion`, docs/reference_behaviour.md §6, §11.1):

1. config fields mapped with the tables of :mod:`granite_nar.checkpoints.original_layout` (print them with
   ``--show-mapping``); a field the tables do not know raises;
2. tensors renamed with ``STATE_DICT_RENAMES``; the model is built on ``meta`` and the renamed state dict is
   assigned after a strict check (every missing, unexpected or mis-shaped tensor is named);
3. the projector LayerNorm affines (``DROPPED_IDENTITY_NORMS``) are dropped only after checking that they
   are exactly weight 1 / bias 0; a stored ``lm_head`` must equal the embeddings (tied);
4. ``save_pretrained`` (sharded with an index above ``--max-shard-size``), the feature-extractor config in
   native names and the tokenizer files;
5. the written folder is reloaded strictly and compared with the original loaded directly, on fixed random
   inputs: draft tokens equal, edited tokens equal, logits within a dtype tolerance.

The old ``7d20732d`` snapshot (``llm_config``, 100353-row BPE head, blank at row 0) is refused: use Hub
revision ``99a4df9`` or later. Converting a folder that is already native is refused.

Every user error (an input that does not exist or is not this checkpoint, an output that exists, an unknown
config field, a missing, truncated or corrupt weight file, no network for a Hub id, ...) is reported as one
line on stderr with exit status 1; ``--debug`` shows the traceback instead. Usage errors exit with 2.
"""

from __future__ import annotations

import argparse
import resource
import sys

from safetensors import SafetensorError

from granite_nar.checkpoints.conversion import convert_checkpoint, push_to_hub
from granite_nar.checkpoints.original_layout import (
    DROPPED_IDENTITY_NORMS,
    ENCODER_FIELDS,
    PROJECTOR_FIELDS,
    STATE_DICT_RENAMES,
    TOP_FIELDS,
)

PROG = "convert_granite_speech_nar.py"
# User errors: ValueError covers OriginalLayoutError, ConversionError and invalid configs; OSError covers
# ModelNotFoundError, CheckpointFileError, Hub and file-system errors.
USER_ERRORS = (ValueError, OSError, SafetensorError)

# The mapping, as applied (first matching rename wins; None = checked, then dropped).
RENAMES = STATE_DICT_RENAMES
DROPPED = DROPPED_IDENTITY_NORMS.pattern
CONFIG_FIELDS = {"": TOP_FIELDS, "encoder_config": ENCODER_FIELDS, "projector_config": PROJECTOR_FIELDS}


def mapping_text() -> str:
    lines = ["tensor renames (regex, first match wins):"]
    lines += [f"  {pattern:58s} -> {replacement}" for pattern, replacement in RENAMES]
    lines.append(f"dropped after an exact identity check: {DROPPED}")
    lines.append("dropped after an equality check with the embeddings: language_model.lm_head.weight")
    for section, table in CONFIG_FIELDS.items():
        lines.append(f"config fields{' of ' + section if section else ' (top level)'}:")
        lines += [f"  {k:28s} -> {v if v is not None else '(checked, dropped)'}" for k, v in table.items()]
    lines.append("text_config: model_type granite -> granite_speech_nar_text, fields unchanged")
    lines.append("preprocessor_config.json: n_mels -> feature_size, + frame_stacking 2, auto_map dropped")
    return "\n".join(lines)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0])
    parser.add_argument("--input", help="folder or Hub repo id in the original layout")
    parser.add_argument("--revision", default=None, help="Hub revision of --input (e.g. 99a4df9...)")
    parser.add_argument("--output", help="folder to write (must not exist or be empty)")
    parser.add_argument(
        "--push-to-hub", metavar="REPO_ID", default=None, help="upload the result to this repo"
    )
    parser.add_argument(
        "--dtype",
        choices=["keep", "bfloat16", "float16", "float32"],
        default="keep",
        help="dtype of the written weights (default: keep the checkpoint's)",
    )
    parser.add_argument(
        "--max-shard-size", default="5GB", help="shard the weights above this size (default 5GB)"
    )
    parser.add_argument("--no-verify", action="store_true", help="skip the reload-and-compare step")
    parser.add_argument("--overwrite", action="store_true", help="replace a non-empty --output folder")
    parser.add_argument("--cache-dir", default=None, help="Hub cache folder")
    parser.add_argument("--show-mapping", action="store_true", help="print the rename tables and exit")
    parser.add_argument("--debug", action="store_true", help="show the full traceback of an error")
    args = parser.parse_args(argv)
    if not args.show_mapping and (args.input is None or args.output is None):
        parser.error("--input and --output are required")
    return args


def _error(message) -> int:
    print(f"{PROG}: error: {' '.join(str(message).split())}", file=sys.stderr)
    return 1


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.show_mapping:
        print(mapping_text())
        return 0
    try:
        report = convert_checkpoint(
            args.input,
            args.output,
            dtype=args.dtype,
            revision=args.revision,
            cache_dir=args.cache_dir,
            max_shard_size=args.max_shard_size,
            verify=not args.no_verify,
            overwrite=args.overwrite,
        )
    except USER_ERRORS as error:
        if args.debug:
            raise
        return _error(error)
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    print(report)
    print(f"peak resident memory: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.2f} GiB")
    if args.push_to_hub:
        try:
            info = push_to_hub(report.output, args.push_to_hub)
        except USER_ERRORS as error:
            if args.debug:
                raise
            return _error(
                f"the converted folder {report.output} was written, but uploading it to {args.push_to_hub} "
                f"failed ({error}); check the repo id and your login (`hf auth login`), then upload the folder "
                "again (--push-to-hub needs no new conversion: `hf upload REPO FOLDER`)"
            )
        print(f"pushed to {args.push_to_hub}: {getattr(info, 'commit_url', info)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
