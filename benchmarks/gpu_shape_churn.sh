#!/usr/bin/env bash
# GPU machine: gpu_shape_churn.py for each form given, one process each (a form that crashes ends only
# its own run), on the full-size RECIPE pack; JSON per form in $OUT/shape_churn_NAME.json.
#   usage: bash benchmarks/gpu_shape_churn.sh RECIPE NAME:OPTIONS[:ENV] [NAME:OPTIONS[:ENV]]...
#   e.g.   bash benchmarks/gpu_shape_churn.sh actquant-3.97 default:: shared::VLA_EDGE_SHAPE_MARKERS=0
set -uo pipefail
OUT=${OUT:-/tmp/gpu_bench}; mkdir -p "$OUT"
recipe=${1:-actquant-3.97}; shift || true
source benchmarks/gpu_packs.sh || exit 1
for form in "$@"; do
  IFS=: read -r name options env <<< "$form"
  echo "== $name (options: ${options:-none}; environment: ${env:-none})"
  env ${env//,/ } PYTHONUNBUFFERED=1 timeout "${CHURN_TIMEOUT:-150}" python3 benchmarks/gpu_shape_churn.py --pack "$pack" \
    --options "$options" --out "$OUT/shape_churn_$name.json" 2>&1 | grep -vE "warmup|ggml_cuda_init|Device 0"
  echo "== $name: exit ${PIPESTATUS[0]}"
done
