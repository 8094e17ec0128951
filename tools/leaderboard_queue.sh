#!/usr/bin/env bash
# The leaderboard plan, one run at a time; every line skips what its results file already holds, so starting this
# again after a stop resumes where it was (a killed run continues from its last epoch). Run from the repository root:
#   CONVTWIST_DATA=/path/to/archives setsid nohup tools/leaderboard_queue.sh >> ~/.cache/convtwist-zoo/queue.log 2>&1 &
# RESULTS_DIR: where the rows go (default results/leaderboard); give an absolute path when the queue runs from a
# snapshot of the code (a git worktree), so the rows land in the checkout you commit from.
# STAGES picks parts of the plan (default: probes b a d t d50, in this order):
#   options the xresnet18 architecture options at 4e-3 (none, sa, MODEL_ARGS plus wide_stem, plus sa), which chose
#           MODEL_ARGS (done: not in the default plan)
#   probes  seed 0 of each model at 4e-3 and 8e-3, then one step past the edge the better one sits at (x2 above,
#           /2 below), a model's runs together, in PROBE_MODELS order; its rate is the best of the three
#   b       Imagewoof, 5 epochs: convtwist_xresnet18, xresnet18, xresnet34, seeds 1-5 at the probes' rates (a probe,
#           seed 0, is never a reported run)
#   a       Imagewoof, 5 epochs: convtwist_xresnet50 and xresnet50, seeds 1-5
#   c       Imagenette, 5 epochs: the five models, 3 seeds (0-2)
#   d       Imagewoof, 20 epochs: convtwist_xresnet18, xresnet18, xresnet34, seeds 1-3
#   d50     Imagewoof, 20 epochs: convtwist_xresnet50 and xresnet50, seeds 1-3
#   t       the time-matched control: xresnet50 on Imagewoof for the epochs whose step time equals
#           convtwist_xresnet50's 5 (bench/results/run_time.json, from python bench/run_time.py), seeds 1-5, a results
#           file of its own, shown in the 5-epoch table as "time-matched"
#   fp32    not in the default plan, for a CPU without bf16 instructions: the recipe in fp32 (--no-amp) on
#           Imagewoof, 5 epochs, at the bf16 arms' rates, 5 seeds: convtwist_xresnet18 and xresnet18, then the
#           compute-matched control xresnet34 (arms of their own, compared only with each other)
#   fp32c   stage c the same way: Imagenette, 5 epochs, fp32, 3 seeds: convtwist_xresnet18 and xresnet18, then
#           xresnet34, then convtwist_xresnet50 and xresnet50
#   fp32d   stage d the same way: Imagewoof, 20 epochs, fp32, 3 seeds: convtwist_xresnet18 and xresnet18, then
#           xresnet34
# Each model's peak lr comes from its probes (--lr-from PROBES). MODEL_ARGS are the architecture options of every
# arm (default maxblur=true: the MaxBlurPool probe gained about 6 points on xresnet18 at 5 epochs); the option
# probes run once each.
set -eu
PY=${PYTHON:-python}
ARGS=${MODEL_ARGS-maxblur=true}
RESULTS_DIR=${RESULTS_DIR:-results/leaderboard}
LB="$PY -m convtwist_zoo leaderboard run --no-progress --results-dir $RESULTS_DIR ${EXTRA:-}"
LBA="$LB --model-args $ARGS"
MODELS="xresnet18 convtwist_xresnet18 xresnet34 xresnet50 convtwist_xresnet50"
# the probes' order: the cheaper 18/34-layer models first, then the 50-layer pair
PROBE_MODELS=${PROBE_MODELS:-xresnet18 convtwist_xresnet18 xresnet34 xresnet50 convtwist_xresnet50}
PROBES=${PROBES:-$RESULTS_DIR/imagewoof-128px-5ep.jsonl}
# the recipe trains in bf16: a CPU that emulates it would take many times longer (bench/precision.py)
STAGES=${STAGES:-probes b a d t d50}
HAS_BF16="import sys, torch; from convtwist_zoo.host import cpuinfo_fields, has_native_bf16
sys.exit(not (torch.cuda.is_available() or has_native_bf16(cpuinfo_fields())))"
NEEDS_BF16=
for stage in $STAGES; do case $stage in fp32*) ;; *) NEEDS_BF16=1 ;; esac; done
if [ -n "$NEEDS_BF16" ] && [ -z "${ALLOW_EMULATED_BF16:-}" ] && ! $PY -c "$HAS_BF16"; then
  echo "this CPU has no bf16 instructions (AMX, AVX512-BF16) and there is no CUDA GPU: the plan's bf16 runs would" \
       "take many times longer here (python bench/precision.py shows how much); run it elsewhere, or set" \
       "ALLOW_EMULATED_BF16=1 to run it anyway, or STAGES=\"fp32 fp32c fp32d\" for the fp32 arms" >&2
  exit 2
fi
for stage in $STAGES; do
  case $stage in
    options)
      $LB --data imagewoof --epochs 5 --seeds 1 --models xresnet18 --lr 4e-3 --model-args ""
      $LB --data imagewoof --epochs 5 --seeds 1 --models xresnet18 --lr 4e-3 --model-args sa=true
      $LB --data imagewoof --epochs 5 --seeds 1 --models xresnet18 --lr 4e-3 --model-args "$ARGS,wide_stem=true"
      $LB --data imagewoof --epochs 5 --seeds 1 --models xresnet18 --lr 4e-3 --model-args "$ARGS,sa=true" ;;
    probes) $LBA --data imagewoof --epochs 5 --probe --models $PROBE_MODELS ;;
    a) $LBA --data imagewoof --epochs 5 --first-seed 1 --seeds 5 --models convtwist_xresnet50 xresnet50 \
         --lr-from "$PROBES" ;;
    b) $LBA --data imagewoof --epochs 5 --first-seed 1 --seeds 5 --models convtwist_xresnet18 xresnet18 xresnet34 \
         --lr-from "$PROBES" ;;
    c) $LBA --data imagenette --epochs 5 --seeds 3 --models $MODELS --lr-from "$PROBES" ;;
    d) $LBA --data imagewoof --epochs 20 --first-seed 1 --seeds 3 --models convtwist_xresnet18 xresnet18 xresnet34 \
         --lr-from "$PROBES" ;;
    d50) $LBA --data imagewoof --epochs 20 --first-seed 1 --seeds 3 --models convtwist_xresnet50 xresnet50 \
           --lr-from "$PROBES" ;;
    t) E=$(grep -o '"control_epochs": *[0-9]*' bench/results/run_time.json | grep -o '[0-9]*$')
       if [ "$E" = 5 ]; then
         echo "stage t: the measured step-time ratio gives 5 epochs, the same-recipe control itself; nothing to run"
       else
         $LBA --data imagewoof --epochs "$E" --first-seed 1 --seeds 5 --models xresnet50 --lr-from "$PROBES" \
           --time-matched-to convtwist_xresnet50:5
       fi ;;
    fp32) $LBA --no-amp --data imagewoof --epochs 5 --seeds 5 --models convtwist_xresnet18 xresnet18 \
            --lr-from "$PROBES"
          $LBA --no-amp --data imagewoof --epochs 5 --seeds 5 --models xresnet34 --lr-from "$PROBES" ;;
    fp32c) $LBA --no-amp --data imagenette --epochs 5 --seeds 3 --models convtwist_xresnet18 xresnet18 \
             --lr-from "$PROBES"
           $LBA --no-amp --data imagenette --epochs 5 --seeds 3 --models xresnet34 --lr-from "$PROBES"
           $LBA --no-amp --data imagenette --epochs 5 --seeds 3 --models convtwist_xresnet50 xresnet50 \
             --lr-from "$PROBES" ;;
    fp32d) $LBA --no-amp --data imagewoof --epochs 20 --seeds 3 --models convtwist_xresnet18 xresnet18 \
             --lr-from "$PROBES"
           $LBA --no-amp --data imagewoof --epochs 20 --seeds 3 --models xresnet34 --lr-from "$PROBES" ;;
    *) echo "unknown stage $stage (options probes a b c d d50 t fp32 fp32c fp32d)"; exit 2 ;;
  esac
done
echo "$(date -Is) queue done"
