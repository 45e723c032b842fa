"""Turn artifacts people already have into verified packs (`vla-edge pack import --from FORMAT`).

Each importer reads its source format, checks it against the family's tensor inventory and
writes a pack through `PackBuilder`, so a rejected source leaves nothing behind. Formats that
are known but not implemented yet are listed with what is missing, never half-imported.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from ..errors import ConfigError
from .actquant import import_actquant

IMPORTERS: dict[str, Callable[..., Path]] = {"actquant": import_actquant}

NOT_IMPLEMENTED = {
    "omega-qvla": "Omega-QVLA W4A4 quantized.pt (needs the W4A4 pack form and its reference kernels)",
    "torchao-int8wo": "torchao int8 weight-only pi0.5 (Shallow-pi pruned checkpoints)",
    "checkpoint": "openpi / lerobot pi0.5 safetensors checkpoints",
}


def get_importer(fmt: str) -> Callable[..., Path]:
    if fmt in IMPORTERS:
        return IMPORTERS[fmt]
    if fmt in NOT_IMPLEMENTED:
        raise ConfigError("--from", f"'{fmt}' ({NOT_IMPLEMENTED[fmt]}) is recognised but its importer is not "
                                    f"implemented yet; available: {sorted(IMPORTERS)}")
    raise ConfigError("--from", f"expected one of {sorted(IMPORTERS) + sorted(NOT_IMPLEMENTED)}, got '{fmt}'")
