#!/usr/bin/env bash
# Recipe probes on Imagewoof, one after another, each with every flag that differs from today's defaults (40 epochs,
# Lookahead 6). The 5-epoch probes (128px) chose the optimizer and schedule (README, "How the recipe was chosen"); the
# 30-epoch pair on 112px training crops (evaluated at 128px) and the 20-epoch pair with Lookahead (RAdam + Lookahead 6
# = fast.ai's Ranger) are listed in docs/runs/ and MODEL_CARDS.md. 40 epochs with Lookahead 6 then became the
# defaults: that pair is the published imagewoof ResNet-18 pair (tools/train_zoo.sh), so it is no probe here. On
# top of the defaults, the last pair trains on 112px crops and evaluates an EMA of the weights (decay 0.999 per step).
# Pass PROBES="five crop112 lookahead crop112ema" (the default) or some of them.
set -eu
R=${RUNS:-"$HOME/.cache/convtwist-zoo/runs/probes"}
PROBES=${PROBES:-"five crop112 lookahead crop112ema"}
if [[ " $PROBES " == *" five "* ]]; then
python -m convtwist_zoo train --model resnet18 --data imagewoof --epochs 5 --optimizer sgd --lr 0.1 \
  --weight-decay 5e-4 --schedule onecycle --warmup-epochs 0.5 --lookahead 0 --out "$R/r18w5-sgd" --no-progress
python -m convtwist_zoo train --model resnet18 --data imagewoof --epochs 5 --optimizer radam --lr 0.004 \
  --weight-decay 0.01 --schedule flatcos --lookahead 0 --out "$R/r18w5-radam" --no-progress
python -m convtwist_zoo train --model convtwist_resnet18 --data imagewoof --epochs 5 --optimizer radam --lr 0.004 \
  --weight-decay 0.01 --schedule flatcos --lookahead 0 --out "$R/ct18w5-radam" --no-progress
fi
if [[ " $PROBES " == *" crop112 "* ]]; then
for model in convtwist_resnet18 resnet18; do
  python -m convtwist_zoo train --model $model --data imagewoof --epochs 30 --lookahead 0 --train-image-size 112 \
    --out "$R/$model.imagewoof-e30-t112" --resume --no-progress
done
fi
if [[ " $PROBES " == *" lookahead "* ]]; then
for model in resnet18 convtwist_resnet18; do
  python -m convtwist_zoo train --model $model --data imagewoof --epochs 20 --lookahead 6 --out "$R/$model.imagewoof-la6" \
    --resume --no-progress
done
fi
if [[ " $PROBES " == *" crop112ema "* ]]; then
for model in convtwist_resnet18 resnet18; do
  python -m convtwist_zoo train --model $model --data imagewoof --train-image-size 112 --ema 0.999 \
    --out "$R/$model.imagewoof-t112-ema" --resume --no-progress
done
fi
