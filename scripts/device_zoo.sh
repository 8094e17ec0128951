#!/usr/bin/env bash
# Zoo runs on a lent GPU machine (the device tool), one subcommand per `run` call, plus the two steps here.
# State lives in /tmp/cz there: it survives between calls while the machine stays warm (30 s idle), whereas the
# work tree is laid anew on every call, so the runs train from a copy of the package made by `start`.
#
#   here:   scripts/device_zoo.sh lighten               # untrack hub weights (345 MB) for the calls: a call
#                                                       # carries at most 64 MiB; `restore` tracks them again
#           scripts/device_zoo.sh split imagewoof       # .gpu-store/ <- archive in pieces of <= 52 MB + sha256
#           scripts/device_zoo.sh pick imagewoof 0      # .gpu/ <- piece 0 alone (then 1, 2, ... per call)
#   device: scripts/device_zoo.sh recv                  # carry=[".gpu"]: keeps the carried piece in /tmp/cz
#           scripts/device_zoo.sh start imagewoof convtwist_resnet18 resnet18 ...   # reassemble, check, launch
#           scripts/device_zoo.sh wait 540              # poll until every run has finished, or the seconds pass
#           scripts/device_zoo.sh send 0                # fp16 weights + logs, tar, 4 pieces from piece 0 to $OUT
#   here:   scripts/device_zoo.sh unpack DIR...         # the fetched folders -> ~/.cache/convtwist-zoo/runs/
#           then scripts/publish_run.sh NAME for each, and scripts/submission_size.sh before stopping.
# Runs go four at a time (the 16 CPU cores decode for four runs with --workers 3); EXTRA adds train flags.
set -euo pipefail
CZ=${CZ_DEVICE_DIR:-/tmp/cz}
PY=${PYTHON:-python3}
PIECE=52000000   # data piece: with the ~3 MB tree, under the 64 MiB a call carries
BACK=16000000    # result piece: 8 files of 16 MiB, 64 MiB in all, come back per call; 4 leave room
cmd=${1:?usage: scripts/device_zoo.sh lighten|restore|split|pick|recv|start|status|wait|send|unpack ...}; shift

archive_of() {
  case "$1" in
    imagenette) echo imagenette2-160sq.tgz ;; imagewoof) echo imagewoof2-160.tgz ;;
    *) echo "unknown dataset $1 (imagenette or imagewoof)" >&2; exit 2 ;;
  esac
}

runs_done() {  # "<finished>/<launched>"
  local n=0 d=0
  for dir in "$CZ"/runs/*/; do
    [ -d "$dir" ] || continue
    n=$((n + 1)); [ -f "$dir/model.safetensors" ] && d=$((d + 1))
  done
  echo "$d/$n"
}

EXCLUDE='/hub/*/model.safetensors'
case "$cmd" in
  lighten)
    git rm -r -q --cached hub/*/model.safetensors
    grep -qxF "$EXCLUDE" .git/info/exclude 2>/dev/null || echo "$EXCLUDE" >> .git/info/exclude
    echo "hub weights untracked for the device calls; run 'scripts/device_zoo.sh restore' before committing" ;;
  restore)
    sed -i "\\|^/hub/\\*/model.safetensors\$|d" .git/info/exclude
    git reset -q -- hub && git status --short hub | head ;;
  split)
    ds=${1:?dataset}; src="${CONVTWIST_DATA:-../shared/data}/$(archive_of "$ds")"
    mkdir -p .gpu-store && rm -f .gpu-store/"$ds".*
    split -b $PIECE -d "$src" ".gpu-store/$ds.tgz.part"
    (cd "$(dirname "$src")" && sha256sum "$(basename "$src")") > ".gpu-store/$ds.sha256"
    ls -l .gpu-store ;;
  pick)
    ds=${1:?dataset}; k=$(printf %02d "${2:?piece number}")
    rm -rf .gpu && mkdir .gpu && cp ".gpu-store/$ds.sha256" ".gpu-store/$ds.tgz.part$k" .gpu/ && ls -l .gpu ;;
  recv)
    mkdir -p "$CZ/pieces"; cp -v .gpu/* "$CZ/pieces/" ;;
  start)
    ds=${1:?dataset}; shift; name=$(archive_of "$ds")
    mkdir -p "$CZ/data" "$CZ/runs"
    if [ ! -f "$CZ/data/$name" ]; then
      cat "$CZ/pieces/$ds.tgz.part"* > "$CZ/data/$name.part"
      sed "s|$name|$CZ/data/$name.part|" "$CZ/pieces/$ds.sha256" | sha256sum -c - || {
        echo "archive incomplete or corrupt: send the missing pieces with recv" >&2; exit 1; }
      mv "$CZ/data/$name.part" "$CZ/data/$name"
    fi
    rm -rf "$CZ/code" && mkdir -p "$CZ/code" && cp -r convtwist_zoo "$CZ/code/"
    (cd "$CZ/code" && CONVTWIST_DATA="$CZ/data" "$PY" -c \
      "from convtwist_zoo import data; data.prepare_dataset('$ds')")
    for arch in "$@"; do
      out="$CZ/runs/$arch.$ds"; mkdir -p "$out"
      (cd "$CZ/code" && CONVTWIST_DATA="$CZ/data" PYTHONPATH="$CZ/code" setsid nohup "$PY" -m convtwist_zoo train \
        --model "$arch" --data "$ds" --out "$out" --resume --no-progress --workers 3 ${EXTRA:-} \
        >> "$out/train.log" 2>&1 < /dev/null &)
      echo "launched $arch.$ds"
    done ;;
  status)
    for dir in "$CZ"/runs/*/; do
      [ -d "$dir" ] || continue
      m="$dir/metrics.jsonl"; [ -f "$m" ] || m=/dev/null
      echo "$(basename "$dir"): $(wc -l < "$m") epochs; $(tail -n 1 "$m" | cut -c1-160)"
    done
    nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv,noheader 2>/dev/null || true ;;
  wait)
    limit=${1:?seconds}; t0=$SECONDS
    while [ $((SECONDS - t0)) -lt "$limit" ]; do
      done_=$(runs_done); [ "${done_%/*}" = "${done_#*/}" ] && break
      sleep 15
    done
    "$0" status; echo "finished $(runs_done)" ;;
  send)
    first=${1:-0}
    if [ ! -f "$CZ/back.sha256" ]; then  # pack once: fp16 weights (as `convtwist-zoo stage` stores them) and logs
      for dir in "$CZ"/runs/*/; do
        [ -f "$dir/model.safetensors" ] || { echo "skipping unfinished $(basename "$dir")"; continue; }
        "$PY" - "$dir/model.safetensors" <<'EOF'
import os, sys
from safetensors.torch import load_file, save_file
path = sys.argv[1]
state = {k: (v.half() if v.is_floating_point() else v).contiguous() for k, v in load_file(path).items()}
save_file(state, path + ".tmp", metadata={"format": "pt", "dtype": "float16"})
os.replace(path + ".tmp", path)
EOF
      done
      (cd "$CZ/runs" && tar -cf "$CZ/back.tar" --exclude=last.pt --exclude='*.tmp' */)
      (cd "$CZ" && split -b $BACK -d back.tar back.part && sha256sum back.tar > back.sha256)
    fi
    cp "$CZ/back.sha256" "$OUT/"
    ls "$CZ"/back.part* | tail -n +$((first + 1)) | head -4 | xargs -I{} cp {} "$OUT/"
    echo "pieces: $(ls "$CZ"/back.part* | wc -l); sent from $first: $(ls "$OUT")" ;;
  unpack)
    tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
    for d in "$@"; do cp "$d"/back.part* "$tmp/"; cp "$d/back.sha256" "$tmp/"; done
    (cd "$tmp" && cat back.part* > back.tar && sha256sum -c back.sha256) || {
      echo "pieces missing or corrupt: fetch them again with send" >&2; exit 1; }
    runs=${RUNS:-"$HOME/.cache/convtwist-zoo/runs"}; mkdir -p "$runs"
    tar -xf "$tmp/back.tar" -C "$runs" && tar -tf "$tmp/back.tar" | grep '/$' | sort -u | sed "s|^|$runs/|" ;;
  *) echo "unknown subcommand $cmd" >&2; exit 2 ;;
esac
