#!/usr/bin/env bash
# The fine-tuning recipe of docs/training.md, end to end on the tiny model and synthetic speech:
# baseline sweep -> SFT presets at equal wall-clock time -> sequence-level stage and self-correction
# (each against a same-budget SFT continuation) -> evaluation on the adapted condition and on the
# original held-out set (forgetting).
#
#   bash examples/adapt_tiny_synth.sh [OUT]        (default OUT: runs/adapt; needs espeak-ng)
#
# Runs go two at a time, one torch thread each, so that both members of a pair see the same machine.
# SFT_MINUTES and STAGE_MINUTES set the budgets (default 5 and 3).
set -euo pipefail
OUT=${1:-runs/adapt}
SFT_MINUTES=${SFT_MINUTES:-5}
STAGE_MINUTES=${STAGE_MINUTES:-3}
BASE=examples/models/tiny-synth
ORIG=runs/synth-long        # the shipped model's own corpus (docs/training.md#reproduce)
ACCENTS=runs/synth-accents  # English read by six voices the model never heard
mkdir -p "$OUT"

if [ ! -f "$ACCENTS/train.jsonl" ]; then
  python examples/make_synthetic_corpus.py --out "$ACCENTS" --num-train 1500 --num-dev 100 --num-test 600 \
    --seed 21 --voices de es it nl pl fr-fr --jobs 2
fi
if [ ! -f "$ORIG/test.jsonl" ]; then
  echo "missing $ORIG: make it as docs/training.md#reproduce says" >&2
  exit 2
fi

# 1. Baseline sweep: the shipped model on its own held-out sets and on the new condition, sliced.
evaluate() {  # evaluate MODEL NAME
  granite-nar evaluate "$ACCENTS/test.jsonl" --model "$1" --slice-by voice --threads 1 \
    --predictions "$OUT/eval/$2.accents.predictions.jsonl" \
    --json "$OUT/eval/$2.accents.json" > "$OUT/eval/$2.accents.txt"
  granite-nar evaluate "$ORIG/test.jsonl" --model "$1" --slice-by voice rate_band noise --threads 1 \
    --json "$OUT/eval/$2.orig.json" > "$OUT/eval/$2.orig.txt"
}
mkdir -p "$OUT/eval"
evaluate "$BASE" baseline
granite-nar evaluate "$ORIG/test_long.jsonl" --model "$BASE" --slice-by voice rate_band noise --threads 1 \
  --json "$OUT/eval/baseline.orig_long.json" > "$OUT/eval/baseline.orig_long.txt"

# 2. SFT presets, the same wall-clock budget each, from the shipped model.
finetune() {  # finetune NAME MODEL MINUTES ARGS...  (TRAIN=manifest overrides the training manifest)
  local name=$1 model=$2 minutes=$3
  shift 3
  granite-nar finetune --model "$model" --train-manifest "${TRAIN:-$ACCENTS/train.jsonl}" \
    --eval-manifest "$ACCENTS/dev.jsonl" --output-dir "$OUT/$name" --minutes "$minutes" \
    --batch-size 8 --bf16 --threads 1 --keep-best-only --metric edit1_wer --seed 0 "$@" > "$OUT/$name.log" 2>&1
}
finetune sft-projector "$BASE" "$SFT_MINUTES" --preset projector --lr 1e-3 --warmup-steps 50 &
finetune sft-last1-head "$BASE" "$SFT_MINUTES" --preset editor_last_n_head --num-layers 1 --lr 1e-3 \
  --warmup-steps 50 &
wait
finetune sft-lora "$BASE" "$SFT_MINUTES" --preset lora --lora-targets encoder editor --lr 1e-3 --warmup-steps 50 &
finetune sft-full "$BASE" "$SFT_MINUTES" --preset full --lr 5e-4 --warmup-steps 50 &
wait

# 2b. The same with replay: the new training set plus as many utterances of the original training set.
python - "$ACCENTS/train.jsonl" "$ORIG/train.jsonl" "$OUT/replay-train.jsonl" <<'PY'
import json, os, sys

new, old, out = sys.argv[1:]
with open(out, "w") as f:
    rows = open(new).read().splitlines()
    for manifest, lines in ((new, rows), (old, open(old).read().splitlines()[: len(rows)])):
        for line in lines:
            row = json.loads(line)
            row["audio_path"] = os.path.join(os.path.dirname(os.path.abspath(manifest)), row["audio_path"])
            f.write(json.dumps(row) + "\n")
PY
TRAIN=$OUT/replay-train.jsonl finetune sft-full-replay "$BASE" "$SFT_MINUTES" --preset full --lr 5e-4 \
  --warmup-steps 50 &
TRAIN=$OUT/replay-train.jsonl finetune sft-lora-replay "$BASE" "$SFT_MINUTES" --preset lora \
  --lora-targets encoder editor --lr 1e-3 --warmup-steps 50 &
wait

# 3. From the full-model SFT: the sequence-level stage and self-correction, each against SFT continued for
#    the same time on the same (editor) parameters, at two learning rates; self-correction is selected by
#    edit-2 WER (what it is meant to improve), against SFT continued and selected the same way.
SFT=$OUT/sft-full/final
STAGE=(--preset editor --warmup-steps 20)
SEQUENCE=(--objective sequence --group-size 8 --anchor-weight 1.0)
finetune stage-sft "$SFT" "$STAGE_MINUTES" "${STAGE[@]}" --lr 3e-5 &
finetune stage-sequence "$SFT" "$STAGE_MINUTES" "${STAGE[@]}" --lr 3e-5 "${SEQUENCE[@]}" --advantage mwer &
wait
finetune stage-sequence-group "$SFT" "$STAGE_MINUTES" "${STAGE[@]}" --lr 3e-5 "${SEQUENCE[@]}" --advantage group \
  --sample-temperature 0.7 &
finetune stage-self-correction "$SFT" "$STAGE_MINUTES" "${STAGE[@]}" --lr 3e-5 --self-correction-prob 0.5 &
wait
finetune stage-sft-lr1e-4 "$SFT" "$STAGE_MINUTES" "${STAGE[@]}" --lr 1e-4 &
finetune stage-sequence-lr1e-4 "$SFT" "$STAGE_MINUTES" "${STAGE[@]}" --lr 1e-4 "${SEQUENCE[@]}" --advantage mwer &
wait
finetune stage-self-correction-e2 "$SFT" "$STAGE_MINUTES" "${STAGE[@]}" --lr 1e-4 --self-correction-prob 0.5 \
  --metric edit2_wer &
finetune stage-sft-e2 "$SFT" "$STAGE_MINUTES" "${STAGE[@]}" --lr 1e-4 --metric edit2_wer &
wait

# 4. Every model on the adapted condition and on the original held-out set.
for name in sft-projector sft-last1-head sft-lora sft-full sft-lora-replay sft-full-replay stage-sft stage-sequence stage-sequence-group \
  stage-self-correction stage-sft-lr1e-4 stage-sequence-lr1e-4 stage-self-correction-e2 stage-sft-e2; do
  evaluate "$OUT/$name/final" "$name"
done
python examples/summarize_adaptation.py "$OUT"
