"""Runs the `vla-edge` CLI the way a user does; a named module so test files can import it
(every test folder has its own conftest.py, so `from conftest import` is ambiguous)."""

from __future__ import annotations

import os
import subprocess
import sys


def run_cli(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run `vla-edge ARGS` in a subprocess, as a user would (real exit codes and stderr)."""
    return subprocess.run([sys.executable, "-m", "vla_edge.cli.main", *args], capture_output=True, text=True,
                          env=os.environ.copy(), timeout=timeout)
