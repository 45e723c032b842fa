"""Where the native library and header live (installed wheel or dev build)."""

from __future__ import annotations

from pathlib import Path

import pytest

native = pytest.importorskip("vla_edge._native", reason="native module not built (pip install . builds it)")

REPO = Path(__file__).resolve().parents[2]


def native_lib_dir() -> tuple[Path, Path]:
    """(directory with libvla_edge.so, directory with vla_edge.h), installed or dev build."""
    here = Path(native.__file__).resolve().parent
    installed = here / "native_lib"
    if (installed / "libvla_edge.so").is_file():
        return installed, installed
    return here, REPO / "native" / "include"
