#!/usr/bin/env bash
# Build ActQuant's pi0.5 runtime (github.com/arashakb/ActQuant, tools/pi0.5) in a scratch folder,
# as the side-by-side anchor of benchmarks/vs_actquant.py. Never vendored: the source and build
# stay in the scratch folder given as argument.
#
#   benchmarks/build_actquant.sh SCRATCH_DIR [SOURCE]
#
# SOURCE: a git directory (e.g. a bare mirror such as /work/.mirror/arashakb+ActQuant/repo) or a
# URL; default https://github.com/arashakb/ActQuant.git. An already extracted SCRATCH_DIR/src is
# reused. Facts this script works around (ActQuant HEAD as of 2026-12):
#   - vendor/tokenizers-cpp.zip is missing from the repository, so the system SentencePiece
#     (apt-get install libsentencepiece-dev) is linked instead of `sentencepiece-static`;
#   - the OpenVLA-OFT tool and the quantize tools are left out (not needed for pi0.5).
# Build: Release, GGML_NATIVE=ON, BUILD_PI05_PYTHON=ON, targets pi05 and pi05_py (pi05.so), with
# the Python that runs this script (it needs pybind11: pip install pybind11).
# BUILD_DIR (default SCRATCH_DIR/build) and CMAKE_EXTRA (extra cmake arguments, e.g. ggml's ISA
# switches) make a second build beside the first, such as one without AMX (docs/x86.md):
#   BUILD_DIR=$S/build-noamx CMAKE_EXTRA="-DGGML_NATIVE=OFF -DGGML_AVX512=ON ..." build_actquant.sh $S
set -euo pipefail
SCRATCH=${1:?usage: build_actquant.sh SCRATCH_DIR [SOURCE]}
SOURCE=${2:-https://github.com/arashakb/ActQuant.git}
JOBS=${JOBS:-2}
PY=${PYTHON:-python3}
BUILD=${BUILD_DIR:-$SCRATCH/build}
read -r -a EXTRA <<< "${CMAKE_EXTRA:-}"
mkdir -p "$SCRATCH"
SRC="$SCRATCH/src"
if [ ! -f "$SRC/tools/pi0.5/CMakeLists.txt" ]; then
  rm -rf "$SRC" && mkdir -p "$SRC"
  if [ -d "$SOURCE" ]; then GITDIR="$SOURCE"; else
    git clone --bare --depth 1 "$SOURCE" "$SCRATCH/ActQuant.git"; GITDIR="$SCRATCH/ActQuant.git"; fi
  # Everything except the missing tokenizers-cpp archive.
  mapfile -t TOP < <(git --git-dir="$GITDIR" ls-tree --name-only HEAD | grep -vx vendor)
  mapfile -t VENDOR < <(git --git-dir="$GITDIR" ls-tree --name-only HEAD vendor/ | grep -vx vendor/tokenizers-cpp.zip)
  git --git-dir="$GITDIR" archive HEAD "${TOP[@]}" "${VENDOR[@]}" | tar -x -C "$SRC"
  git --git-dir="$GITDIR" rev-parse HEAD > "$SRC/ACTQUANT_COMMIT"
fi
# Only pi0.5, with the system SentencePiece.
cat > "$SRC/tools/CMakeLists.txt" <<'CM'
find_package(Threads REQUIRED)
llama_add_compile_flags()
add_subdirectory(pi0.5)
CM
sed -i 's/sentencepiece-static/sentencepiece/g' "$SRC/tools/pi0.5/CMakeLists.txt"
[ -f /usr/include/sentencepiece_processor.h ] || {
  echo "build_actquant.sh: /usr/include/sentencepiece_processor.h missing: apt-get install libsentencepiece-dev" >&2; exit 1; }
cmake -S "$SRC" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=ON \
  -DBUILD_PI05_PYTHON=ON -DLLAMA_CURL=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF \
  -DLLAMA_BUILD_SERVER=OFF -DPython_EXECUTABLE="$(command -v "$PY")" "${EXTRA[@]}"
cmake --build "$BUILD" -j "$JOBS" --target pi05 pi05_py
find "$BUILD" -name 'pi05*.so' -o -name pi05 -type f | head
