#!/usr/bin/env bash
# Run the README's test command (pip install '.[test]' && python -m pytest -q) on every other
# installed Python (3.12, 3.13 by default), each in its own fresh venv under ${VENVS:-/tmp}.
# Usage: scripts/test_pythons.sh [/path/to/python3.12 ...]   (default: pyenv's 3.12.* and 3.13.*)
# Exit status: non-zero if any interpreter's install or test run failed; a summary line per interpreter.
set -u
cd "$(dirname "$0")/.."
pythons=("$@")
if [ ${#pythons[@]} -eq 0 ]; then
  for p in "${PYENV_ROOT:-$HOME/.pyenv}"/versions/3.1[23].*/bin/python3; do [ -x "$p" ] && pythons+=("$p"); done
fi
[ ${#pythons[@]} -gt 0 ] || { echo "no Python 3.12/3.13 found (pass interpreters as arguments)"; exit 2; }
status=0
summary=()
for py in "${pythons[@]}"; do
  version=$("$py" -c 'import sys; print("%d.%d.%d" % sys.version_info[:3])')
  venv="${VENVS:-/tmp}/vla-edge-py$version"
  echo "=== Python $version: $py -> $venv"
  rm -rf "$venv" && "$py" -m venv "$venv" || { summary+=("$version: venv FAILED"); status=1; continue; }
  if ! "$venv/bin/pip" install -q '.[test]'; then summary+=("$version: install FAILED"); status=1; continue; fi
  if "$venv/bin/python" -m pytest -q; then summary+=("$version: tests passed"); else summary+=("$version: tests FAILED"); status=1; fi
done
printf '%s\n' "${summary[@]}"
exit $status
