#!/usr/bin/env bash
# Makes the interpreter the LeRobot oracle tests run LeRobot in (tests/oracle/test_lerobot_pi05.py).
# LeRobot >= 0.5 needs Python >= 3.12, which vla-edge itself does not require, so it gets its own
# virtual environment; everything comes from the Python package index (no model downloads: the
# oracle builds its weights itself).
#   usage: tests/oracle/make_lerobot_env.sh [VENV_DIR] [PYTHON]
#   then:  VLA_EDGE_LEROBOT_PYTHON=VENV_DIR/bin/python python -m pytest -m slow tests/oracle
set -euo pipefail
venv=${1:-$(cd "$(dirname "$0")/../.." && pwd)/.venv-lerobot}
python=${2:-$(command -v python3.12 || command -v python3.13 || true)}
if [ -z "$python" ]; then
  echo "make_lerobot_env.sh: no python3.12/python3.13 found; pass one as the second argument" >&2
  exit 2
fi
"$python" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 12) else 1)' || {
  echo "make_lerobot_env.sh: $python is older than 3.12, which lerobot 0.6.1 requires" >&2; exit 2; }
"$python" -m venv "$venv"
"$venv/bin/pip" install -q "lerobot[pi]==0.6.1"
"$venv/bin/python" -c 'import lerobot.policies.pi05; print("lerobot pi05 ready in", __import__("sys").prefix)'
echo "export VLA_EDGE_LEROBOT_PYTHON=$venv/bin/python"
