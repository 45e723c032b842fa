"""A separate virtual environment with the published openpi-client 0.1.2, for the test that runs
openpi's own client against `vla-edge serve`. Separate because openpi-client pins numpy < 2 and
vla-edge needs numpy 2: they cannot share one environment.

Built once (about 20 s, from PyPI) and reused: $VLA_EDGE_OPENPI_CLIENT_VENV, else
~/.cache/vla-edge-test-envs/openpi-client-0.1.2. Build it ahead with `python tests/serve/openpi_env.py`.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

# What openpi-client 0.1.2 resolved to when this was written; pinned so the test is repeatable.
# typing-extensions: openpi_client/websocket_client_policy.py imports it but 0.1.2 does not declare it.
PINS = ("openpi-client==0.1.2", "numpy==1.26.4", "dm-tree==0.1.10", "websockets==17.4", "msgpack==1.2.4",
        "typing-extensions==4.16.0")
READY = "vla-edge-ready.txt"


class EnvironmentUnavailable(RuntimeError):
    """The environment could not be built here (offline, no wheels for this Python...)."""


def location() -> Path:
    default = Path.home() / ".cache" / "vla-edge-test-envs" / "openpi-client-0.1.2"
    return Path(os.environ.get("VLA_EDGE_OPENPI_CLIENT_VENV", default))


def openpi_client_python() -> Path:
    """The environment's python, building the environment first if needed."""
    venv = location()
    python = venv / "bin" / "python"
    ready = venv / READY
    if ready.exists() and ready.read_text().strip() == " ".join(PINS):
        return python
    steps = ([sys.executable, "-m", "venv", "--clear", str(venv)],
             [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", *PINS])
    for step in steps:
        try:
            done = subprocess.run(step, capture_output=True, text=True, timeout=600)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise EnvironmentUnavailable(f"{' '.join(step[:4])}...: {exc}") from exc
        if done.returncode != 0:
            last = (done.stderr.strip().splitlines() or ["(no output)"])[-1]
            raise EnvironmentUnavailable(f"{' '.join(step[:4])}... failed: {last}")
    ready.write_text(" ".join(PINS) + "\n")
    return python


if __name__ == "__main__":
    print(openpi_client_python())
