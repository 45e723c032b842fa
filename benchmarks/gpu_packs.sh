#!/usr/bin/env bash
# Sourced by the GPU-machine benchmarks (gpu_vs_realtime_vla.sh, gpu_shape_churn.sh, gpu_libero_eval.sh):
# gpu_setup.sh, then the full-size F16 pack (synthesised while the native core builds), its RECIPE twin
# and a tiny pack, each made once per warm machine; with `robot` set, packs with that robot's spaces
# (`pack synth --robot`, e.g. libero). Sets full, pack (the RECIPE pack) and tiny.
#   usage: recipe=actquant-3.97 [robot=libero]; source benchmarks/gpu_packs.sh || exit 1
robot=${robot:-}
full=/tmp/vla_full${robot:+_$robot}
# (unset when the pack exists: a script sourced from one that already made it must not synthesise again)
if [ -f "$full/pack.yaml" ]; then unset GPU_SETUP_BEFORE_BUILD
else export GPU_SETUP_BEFORE_BUILD="python3 -m vla_edge.cli.main pack synth --size full ${robot:+--robot $robot} --out $full > $OUT/synth.log 2>&1"; fi
source benchmarks/gpu_setup.sh || return 1
if [ -n "$setup_bg_pid" ]; then wait "$setup_bg_pid" || { tail -20 "$OUT/synth.log"; return 1; }; fi
pack=$full
if [ "$recipe" != f16 ]; then
  pack=$full-$recipe
  [ -f "$pack/pack.yaml" ] || python3 -m vla_edge.cli.main pack quantize "$full" --recipe "$recipe" --out "$pack" --no-golden \
    > "$OUT/quantize.log" 2>&1 || { tail -20 "$OUT/quantize.log"; return 1; }
fi
tiny=/tmp/vla_tiny${robot:+_$robot}
[ -f "$tiny/pack.yaml" ] || python3 -m vla_edge.cli.main pack synth --size tiny ${robot:+--robot $robot} --out "$tiny" > /dev/null 2>&1 || return 1
echo "packs ready after $(( $(date +%s) - T0 )) s"
