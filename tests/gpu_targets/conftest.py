"""Real TensorRT-RTX engines for the tiny pack, built once per test session (no GPU needed: the
builder runs on the CPU for compute capability 12.1), and fake device facts for any machine."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

pytest.importorskip("tensorrt_rtx_bindings")


@pytest.fixture(scope="session")
def engine_pack(tiny_pack_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny pack with gb10 engines in fp16 and bf16, built through `pack build-engine`."""
    from cli_runner import run_cli

    pack = tmp_path_factory.mktemp("engines") / "tiny"
    shutil.copytree(tiny_pack_dir, pack)
    r = run_cli("pack", "build-engine", str(pack), "--target", "gb10")
    assert r.returncode == 0, r.stdout + r.stderr
    return pack


@pytest.fixture
def engine_pack_copy(engine_pack: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "pack"
    shutil.copytree(engine_pack, dst)
    return dst
