#!/usr/bin/env bash
# Train the zoo's eight checkpoints one after another (never two at once on one machine's cores), resuming each
# from its last.pt; a finished run (model.safetensors present) is skipped. Safe to start again after a kill.
#   CONVTWIST_DATA=/path/to/archives nohup tools/train_zoo.sh >> ~/.cache/convtwist-zoo/runs/zoo.log 2>&1 &
# Options beyond the recipe's defaults go in EXTRA (e.g. EXTRA="--epochs 20").
set -u
RUNS=${RUNS:-"$HOME/.cache/convtwist-zoo/runs"}
PY=${PYTHON:-python}
ORDER=${ORDER:-"resnet18.imagenette convtwist_resnet18.imagenette resnet18.imagewoof convtwist_resnet18.imagewoof
resnet50.imagenette convtwist_resnet50.imagenette resnet50.imagewoof convtwist_resnet50.imagewoof"}
mkdir -p "$RUNS"
for run in $ORDER; do
  model=${run%%.*}; data=${run#*.}
  dir="$RUNS/$run"
  [ -f "$dir/model.safetensors" ] && { echo "$(date -Is) $run finished already"; continue; }
  echo "$(date -Is) start $run"
  mkdir -p "$dir"
  "$PY" -m convtwist_zoo train --model "$model" --data "$data" --out "$dir" --resume --no-progress ${EXTRA:-} \
    >> "$dir/train.log" 2>&1 || { echo "$(date -Is) $run failed, see $dir/train.log"; exit 1; }
  echo "$(date -Is) done $run"
done
