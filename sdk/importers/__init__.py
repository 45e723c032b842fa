"""Turn artifacts people already have into verified packs (`vla-edge pack import --from FORMAT`).

Each importer reads its source format, checks it against the family's tensor inventory and
writes a pack through `PackBuilder`, so a rejected source leaves nothing behind. Formats that
are known but not implemented yet are listed with what is missing, never half-imported.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from .actquant import import_actquant
from .checkpoint import import_checkpoint
from .omega_qvla import import_omega_qvla
from .torchao_int8wo import import_torchao_int8wo

IMPORTERS: dict[str, Callable[..., Path]] = {"actquant": import_actquant, "checkpoint": import_checkpoint,
                                             "torchao-int8wo": import_torchao_int8wo, "omega-qvla": import_omega_qvla}

NOT_IMPLEMENTED: dict[str, str] = {}


def get_importer(fmt: str) -> Callable[..., Path]:
    if fmt in IMPORTERS:
        return IMPORTERS[fmt]
    if fmt in NOT_IMPLEMENTED:
        raise ConfigError("--from", f"'{fmt}' ({NOT_IMPLEMENTED[fmt]}) is recognised but its importer is not "
                                    f"implemented yet; available: {sorted(IMPORTERS)}")
    raise ConfigError("--from", f"expected one of {sorted(IMPORTERS) + sorted(NOT_IMPLEMENTED)}, got '{fmt}'")


def run_importer(fmt: str, src: str | Path, out: str | Path, **options: Any) -> Path:
    """Run the `fmt` importer; options left at None are not passed, and an option the format has
    no use for is an error rather than silently ignored."""
    importer = get_importer(fmt)
    given = {k: v for k, v in options.items() if v is not None}
    accepted = inspect.signature(importer).parameters
    unused = sorted(k for k in given if k not in accepted)
    if unused:
        flags = ", ".join("--" + k.replace("_", "-") for k in unused)
        raise ConfigError(flags, f"does not apply to --from {fmt}")
    return importer(src, out, **given)
