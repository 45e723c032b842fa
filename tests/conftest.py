"""Shared fixtures: one tiny synthetic pack per test session (synthesis takes < 1 s)."""

from __future__ import annotations

import os
import shutil
import signal
from pathlib import Path

import pytest

from cli_runner import run_cli

# Started as a background job of a non-interactive shell (`pytest ... &`, nohup), this process has
# SIGINT ignored, every child inherits that, and a child Python then never raises
# KeyboardInterrupt: the tests that press Ctrl-C on `run` / `serve` would wait out their timeouts.
# Give children the normal disposition (an exec'd child gets SIG_DFL from a handled signal).
if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture(scope="session", autouse=True)
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    # The demo pack goes to the user cache; tests must never touch the real one.
    os.environ.setdefault("VLA_EDGE_CACHE_DIR", str(tmp_path_factory.mktemp("vla-edge-cache")))


@pytest.fixture(scope="session")
def tiny_pack_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from vla_edge.families.pi05.synth import synth_pack

    return synth_pack(tmp_path_factory.mktemp("packs") / "tiny", size="tiny", seed=0)


@pytest.fixture
def tiny_pack_copy(tiny_pack_dir: Path, tmp_path: Path) -> Path:
    """A private copy a test may damage."""
    dst = tmp_path / "pack"
    shutil.copytree(tiny_pack_dir, dst)
    return dst


@pytest.fixture
def cli():
    return run_cli
