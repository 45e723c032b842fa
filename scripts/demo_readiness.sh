#!/usr/bin/env bash
# The README demo's readiness on this machine, as on a 2-core laptop: pinned to CORES (default
# 0,1), for each target in TARGETS (default: auto reference), a 10 s `vla-edge run --robot ur3-sim`
# then `vla-edge report --strict` (exit 1 when a check fails). Writes runs under OUT and prints a
# summary line per target. Needs an idle machine: other jobs on the same cores make control ticks
# late, which the late_ticks check (rightly) counts.
set -u
cores=${CORES:-0,1}
out=${OUT:-runs/demo-readiness}
status=0
summary=()
for target in ${TARGETS:-auto reference}; do
  rm -rf "$out/$target"
  taskset -c "$cores" vla-edge run --robot ur3-sim --duration 10 --target "$target" --run-dir "$out/$target" \
    || { summary+=("$target: run failed"); status=1; continue; }
  if taskset -c "$cores" vla-edge report "$out/$target" --force --strict; then
    summary+=("$target: every readiness check passed ($out/$target/report/report.html)")
  else
    summary+=("$target: NOT READY ($out/$target/report/report.md)"); status=1
  fi
done
printf '%s\n' "${summary[@]}"
exit $status
