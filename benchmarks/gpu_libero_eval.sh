#!/usr/bin/env bash
# GPU machine: issue 17's full-size run. `vla-edge eval` on LIBERO with a full-size pi0.5 pack (random
# weights: success ~0; what is measured is that the closed loop runs at full size, and its timing) on
# the `cuda` target, the F16 parent beside its RECIPE twin on the same seeds.
# The simulator travels as a trimmed bundle (benchmarks/libero_sim_bundle.py: ~41 MB for libero_spatial,
# vs ~690 MB of wheels) in an ignored `.sim/` folder (part-*), the EGL loaders in `.gl/` (docs/eval.md);
# carry=[".whl", ".gpu", ".gl", ".sim"]. The eval output is resumable: a call cut short by the device's
# time limit continues where it stopped when run again on the still-warm machine.
#   usage: bash benchmarks/gpu_libero_eval.sh [RECIPE] [extra args for vla-edge eval, e.g. --tasks 0,1 --episodes 1]
set -uo pipefail
OUT=${OUT:-/tmp/gpu_bench}; mkdir -p "$OUT"
recipe=${1:-actquant-3.97}; shift || true
ls .sim/part-* > /dev/null 2>&1 || { echo ".sim/part-* is missing: build it with benchmarks/libero_sim_bundle.py (docs/eval.md)"; exit 2; }
robot=libero; source benchmarks/gpu_packs.sh || exit 1  # sets full (F16 parent) and pack (its RECIPE twin)
# the simulator's own Python: this machine's python3 plus the bundle, limited to the simulator process
if [ ! -x /tmp/simpy ]; then
  mkdir -p /tmp/simsite && cat .sim/part-* | tar -xJ -C /tmp/simsite || exit 1
  printf '#!/bin/sh\nPYTHONPATH=/tmp/simsite exec %s "$@"\n' "$(command -v python3)" > /tmp/simpy && chmod +x /tmp/simpy
fi
export MUJOCO_GL=egl PYOPENGL_PLATFORM=egl
echo "packs and simulator ready after $(( $(date +%s) - T0 )) s"
PYTHONUNBUFFERED=1 python3 -m vla_edge.cli.main eval --pack "$full" --pack "$pack" --target cuda --suite libero_spatial \
  --sim-python /tmp/simpy --out /tmp/eval_full "$@" 2>&1 | grep -vE "warmup|ggml_cuda_init|Device 0|Warning" | tail -40
echo "eval exit ${PIPESTATUS[0]} after $(( $(date +%s) - T0 )) s"
cp /tmp/eval_full/summary.json /tmp/eval_full/episodes.jsonl /tmp/eval_full/run.json "$OUT/" 2>/dev/null || true
