"""Every source folder must be an importable package, or `pip install .` silently drops it."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_every_source_folder_has_init():
    missing = []
    for top in ("sdk", "targets", "robots", "calibration"):
        for py in (ROOT / top).rglob("*.py"):
            if "__pycache__" not in py.parts and not (py.parent / "__init__.py").exists():
                missing.append(str(py.parent.relative_to(ROOT)))
    assert not sorted(set(missing)), f"folders without __init__.py (not installed by setup.py): {sorted(set(missing))}"
