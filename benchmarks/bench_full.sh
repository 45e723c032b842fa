#!/usr/bin/env bash
# Full-size benchmark: synthesise a pi0.5-size pack, quantise it with actquant-3.97, bench it on
# the x86 target. Usage: bash benchmarks/bench_full.sh [WORKDIR] [THREADS] [RUNS]
# Writes benchmarks/results/x86_full_actquant-3.97_<threads>t.json. Needs ~10 GB of disk, ~6 GB RAM.
set -euo pipefail
work=${1:-/tmp/vla-edge-full}
threads=${2:-$(nproc)}
runs=${3:-5}
mkdir -p "$work" benchmarks/results
[ -d "$work/f16" ] || vla-edge pack synth --size full --out "$work/f16"
[ -d "$work/actquant-3.97" ] || vla-edge pack quantize "$work/f16" --recipe actquant-3.97 --out "$work/actquant-3.97"
vla-edge bench --pack "$work/actquant-3.97" --target x86 --threads "$threads" --runs "$runs" --warmup 1 \
  --json "benchmarks/results/x86_full_actquant-3.97_${threads}t.json"
