"""The built-in demo pack: a tiny synthetic pi0.5, created on first use in the user cache."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from platformdirs import user_cache_dir

from ..errors import PackError
from .pack import Pack

log = logging.getLogger(__name__)

DEMO_NAME = "pi05-tiny-ur3-demo-v2"


def cache_dir() -> Path:
    return Path(os.environ.get("VLA_EDGE_CACHE_DIR") or user_cache_dir("vla-edge"))


def demo_pack_path() -> Path:
    """Path of a valid demo pack, synthesising (or repairing) it if needed."""
    path = cache_dir() / "packs" / DEMO_NAME
    if path.exists():
        try:
            Pack.open(path, check="sha256")
            return path
        except PackError as exc:
            log.warning("demo pack at %s is damaged (%s); rebuilding it", path, exc)
    from ..families.pi05.synth import synth_pack

    return synth_pack(path, size="tiny", seed=0, overwrite=True)


def resolve_pack(arg: str | Path | None, robot: str | None = None) -> Path:
    """CLI helper: no value or 'demo' means the built-in demo pack (for `robot` once per-robot
    demo packs exist)."""
    if arg is None or str(arg) == "demo":
        return demo_pack_path()
    return Path(arg)
