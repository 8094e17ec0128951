#!/usr/bin/env bash
# The 5-epoch Imagewoof probes (128px) that chose the recipe; results in README ("How the recipe was chosen").
set -eu
R=${RUNS:-"$HOME/.cache/convtwist-zoo/runs/probes"}
python -m convtwist_zoo train --model resnet18 --data imagewoof --epochs 5 --optimizer sgd --lr 0.1 \
  --weight-decay 5e-4 --schedule onecycle --warmup-epochs 0.5 --out "$R/r18w5-sgd" --no-progress
python -m convtwist_zoo train --model resnet18 --data imagewoof --epochs 5 --optimizer radam --lr 0.004 \
  --weight-decay 0.01 --schedule flatcos --out "$R/r18w5-radam" --no-progress
python -m convtwist_zoo train --model convtwist_resnet18 --data imagewoof --epochs 5 --optimizer radam --lr 0.004 \
  --weight-decay 0.01 --schedule flatcos --out "$R/ct18w5-radam" --no-progress
