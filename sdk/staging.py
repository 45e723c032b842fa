"""Staging folders for atomic outputs (packs, exports, reports): created beside the final path,
so the last step is a same-filesystem rename.

tempfile.mkdtemp makes folders readable by their owner only (0700); an output moved into place
from one would keep that, and a pack built by one account could not be read by the robot's
service account. The folder gets the permissions a plain mkdir would (0777 minus the umask).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def staging_dir_beside(out: Path, label: str = "partial") -> Path:
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.{label}-", dir=out.parent))
    staging.chmod(0o777 & ~_umask())
    return staging


@contextmanager
def atomic_dir(out: Path, label: str = "partial") -> Iterator[Path]:
    """`with atomic_dir(out) as staging:` write everything into `staging`; on success it becomes
    `out` (an existing `out` is moved aside first and deleted only after the swap), on any error
    the staging folder is deleted and `out` is left as it was."""
    out = Path(out)
    staging = staging_dir_beside(out, label)
    try:
        yield staging
        move_into_place(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def move_into_place(staging: Path, out: Path) -> None:
    """Make the finished `staging` folder `out`. An existing `out` is moved aside first and
    deleted only after the swap, so there is never a moment with neither in place."""
    previous = None
    if out.exists():
        previous = staging_dir_beside(out, "previous")
        out.replace(previous / out.name)
    staging.replace(out)
    if previous is not None:
        shutil.rmtree(previous, ignore_errors=True)
