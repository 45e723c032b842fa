#!/usr/bin/env bash
# GPU machine: build the native core once, return the build as a cache for the next calls, and check
# every ggml-CUDA form against the reference on a tiny pack (gpu_forms_check.py), also with each
# opt-in switch in FORMS_ENVS set. A fresh machine spends ~6 minutes compiling ggml-CUDA; with the
# cache carried back (`.gcache/`, see gpu_setup.sh) the next machine recompiles only what changed,
# which this script proves before returning: it unpacks the cache it just wrote into a new tree,
# touches every file of this checkout as a fresh copy would, builds again and prints how many CUDA
# objects that build compiled (0 = the cache holds all of ggml-CUDA).
#   usage: FORMS_ENVS="VAR=VALUE ..." bash benchmarks/gpu_forms_and_cache.sh
#   $OUT: gbuild.part* (the cache, 15 MB pieces) and forms.tgz (one forms-check JSON per environment)
set -uo pipefail
OUT=${OUT:?set OUT to the folder that comes back}
export SAVE_BUILD=1
source benchmarks/gpu_setup.sh || exit 1
unset SAVE_BUILD
tiny=/tmp/vla_tiny
[ -f "$tiny/pack.yaml" ] || python3 -m vla_edge.cli.main pack synth --size tiny --out "$tiny" > /dev/null || exit 1
mkdir -p /tmp/forms
for assignment in DEFAULT=1 ${FORMS_ENVS:-}; do
  echo "== forms check with $assignment"
  env "$assignment" PYTHONUNBUFFERED=1 timeout 120 python3 benchmarks/gpu_forms_check.py --tiny "$tiny" --obs 2 \
    --out "/tmp/forms/gpu_forms_check_${assignment%%=*}.json" 2>&1 | tail -14
done
tar -C /tmp/forms -czf "$OUT/forms.tgz" .
echo "== the cache, unpacked and built on as a fresh machine would"
mv /tmp/b /tmp/b.first && rm -f /tmp/b.built-here
mkdir -p .gcache && cp "$OUT"/gbuild.part* .gcache/
find . -path ./.gcache -prune -o -path ./.git -prune -o -type f -print0 | xargs -0 touch
T0=$(date +%s)
source benchmarks/gpu_setup.sh || exit 1
rm -rf .gcache
