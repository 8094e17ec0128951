#!/usr/bin/env bash
# After a zoo run finishes: stage it into hub/ (fp16 + spec), evaluate at 128 and 160px (fp32), sweep rotations and
# rescalings, inspect the twist (ConvTwist models), and regenerate the cards. Run from the repository root:
#   CONVTWIST_DATA=/path/to/archives tools/publish_run.sh convtwist_resnet18.imagenette
# When NAME replaces a published checkpoint, run `python -m convtwist_zoo.release retire NAME --suffix e20` (or such) first.
set -eu
NAME=$1
RUNS=${RUNS:-"$HOME/.cache/convtwist-zoo/runs"}
CZ=${CZ:-"python -m convtwist_zoo"}
REL=${REL:-"python -m convtwist_zoo.release"}
$REL stage "$RUNS/$NAME"
$CZ eval --model "$NAME" --image-size 128 160 --json "hub/$NAME/eval.json" --no-progress
case "$NAME" in convtwist_*) $CZ inspect "$NAME" --out "hub/$NAME/inspect" ;; esac
$CZ robustness "$NAME" --json-dir hub --no-progress
$REL cards
