#!/usr/bin/env bash
# GPU machine: vla-edge's `cuda` target beside realtime-vla on one full-size pack (issue 13's anchor run).
# Carry the anchor as an ignored folder: here, `mkdir -p .anchor && git --git-dir=<fetched realtime-vla>
# archive HEAD pi0_infer.py pi05_infer.py | tar -x -C .anchor` (it is run, never committed), plus what
# gpu_verify_targets.sh carries (docs/gpu.md). Reuses the warm machine's native build when there is one.
#   usage: bash benchmarks/gpu_vs_realtime_vla.sh [RECIPE] [extra args for gpu_vs_realtime_vla.py, e.g. --variant ...]
set -uo pipefail
OUT=${OUT:-/tmp/gpu_bench}; mkdir -p "$OUT"
recipe=${1:-actquant-3.97}; shift || true
[ -f .anchor/pi05_infer.py ] || { echo ".anchor/pi05_infer.py is missing: carry realtime-vla's files (see above)"; exit 2; }
full=/tmp/vla_full
# the F16 pack is synthesised (pure Python) while the native core builds
[ -f "$full/pack.yaml" ] || export GPU_SETUP_BEFORE_BUILD="python3 -m vla_edge.cli.main pack synth --size full --out $full > $OUT/synth.log 2>&1"
source benchmarks/gpu_setup.sh || exit 1
if [ -n "$setup_bg_pid" ]; then wait "$setup_bg_pid" || { tail -20 "$OUT/synth.log"; exit 1; }; fi
pack=$full
if [ "$recipe" != f16 ]; then
  pack=/tmp/vla_full-$recipe
  [ -f "$pack/pack.yaml" ] || python3 -m vla_edge.cli.main pack quantize "$full" --recipe "$recipe" --out "$pack" --no-golden \
    > "$OUT/quantize.log" 2>&1 || { tail -20 "$OUT/quantize.log"; exit 1; }
fi
tiny=/tmp/vla_tiny
[ -f "$tiny/pack.yaml" ] || python3 -m vla_edge.cli.main pack synth --size tiny --out "$tiny" > /dev/null 2>&1 || exit 1
echo "packs ready after $(( $(date +%s) - T0 )) s"
# every ggml-CUDA form against the reference on tiny packs first: a fast form that is wrong is no result
PYTHONUNBUFFERED=1 timeout 100 python3 benchmarks/gpu_forms_check.py --tiny "$tiny" --obs 2 --out "$OUT/gpu_forms_check.json" || echo "forms check: exit $?"
PYTHONUNBUFFERED=1 python3 benchmarks/gpu_vs_realtime_vla.py --anchor .anchor --pack "$pack" --tiny-pack "$tiny" \
  --out "$OUT/gpu_vs_realtime_vla.json" "$@"
