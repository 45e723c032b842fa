"""The built-in demo packs: one per robot, built on first use in the user cache.

Each is a tiny pi0.5 fitted to the simulator's scripted demonstration for that robot (see
demo_policy.py); `vla-edge run --robot arx5-sim` with no --pack uses the ARX5's, and so on.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from platformdirs import user_cache_dir

from ..errors import PackError
from .pack import Pack

log = logging.getLogger(__name__)

DEMO_VERSION = "v6"  # bump when the demo policy or its demonstration changes: old caches are rebuilt
DEFAULT_ROBOT = "ur3"
# Replan and cross-fade used when a run drives the demo pack (unless the run file sets them):
# one target per chunk, reached with a smoothstep fade that lasts until the next chunk is due.
DEMO_REPLAN_S = 1.5


def cache_dir() -> Path:
    return Path(os.environ.get("VLA_EDGE_CACHE_DIR") or user_cache_dir("vla-edge"))


def demo_robot(robot: str | None) -> str:
    """The robot family a demo pack is made for: ur3-sim and ur3 share one."""
    return (robot or DEFAULT_ROBOT).removesuffix("-sim")


def demo_pack_name(robot: str | None = None) -> str:
    return f"pi05-tiny-{demo_robot(robot)}-demo-{DEMO_VERSION}"


def demo_pack_path(robot: str | None = None) -> Path:
    """Path of a valid demo pack for `robot`, building (or repairing) it if needed."""
    path = cache_dir() / "packs" / demo_pack_name(robot)
    if path.exists():
        try:
            Pack.open(path, check="sha256")
            return path
        except PackError as exc:
            log.warning("demo pack at %s is damaged (%s); rebuilding it", path, exc)
    from .demo_policy import build_demo_pack

    log.warning("building the demo pack for %s in %s (once; under a minute)", demo_robot(robot), path)
    return build_demo_pack(path, demo_robot(robot))


def is_demo(arg: str | Path | None) -> bool:
    return arg is None or str(arg) == "demo"


def resolve_pack(arg: str | Path | None, robot: str | None = None) -> Path:
    """CLI helper: no value or 'demo' means the built-in demo pack (for `robot`, default UR3)."""
    if is_demo(arg):
        return demo_pack_path(robot)
    return Path(arg)
