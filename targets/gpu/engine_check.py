"""Does an engine set in a pack fit here? Every reason it does not, named with its file.

Checked before any engine is handed to TensorRT: the file is there with the size and sha256
pack.yaml records (a truncated or replaced engine is refused), it was built from the pack's
current weights, with the TensorRT flavour and version installed here, for this GPU's compute
capability. `EngineRefused` carries the file and the reason; the GPU targets turn it into a
visible fallback to ggml-CUDA, or an error where there is nothing to fall back to.
"""

from __future__ import annotations

from vla_edge.errors import PackError
from vla_edge.packs.manifest import EngineSet
from vla_edge.packs.pack import Pack, check_listed_file

from .facts import Gpu
from .flavours import Flavour


class EngineRefused(PackError):
    """An engine that must not be loaded: `.file` and `.reason` say which and why."""

    def __init__(self, file: str, reason: str):
        super().__init__(file, reason)
        self.file, self.reason = file, reason


def engine_sets(pack: Pack, target: str, precision: str | None = None) -> list[EngineSet]:
    """The pack's engine sets for `target` (only `precision`'s when given), in manifest order."""
    return [e for e in pack.manifest.engines if e.target == target and (precision is None or e.precision == precision)]


def check_files(pack: Pack, engines: EngineSet) -> None:
    """Size and sha256 of every engine file against pack.yaml."""
    for stage, entry in engines.files.items():
        try:
            check_listed_file(pack.dir, f"{stage} engine", entry, "sha256")
        except PackError as exc:
            raise EngineRefused(exc.where, exc.problem) from exc


def check_fit(pack: Pack, engines: EngineSet, flavour: Flavour, installed_version: str | None, gpu: Gpu | None) -> None:
    """Raise EngineRefused with the first reason `engines` cannot run here; None when they can."""
    first = str(pack.dir / next(iter(engines.files.values())).path)
    if engines.runtime != flavour.key:
        raise EngineRefused(first, f"built with {engines.runtime}, the {flavour.target} target runs {flavour.key} engines")
    if engines.weights_sha256 != pack.manifest.files.weights.sha256:
        raise EngineRefused(first, f"built from other weights (sha256 {engines.weights_sha256[:12]}…); the pack's "
                            f"weights are now {pack.manifest.files.weights.sha256[:12]}…: rebuild with "
                            f"`vla-edge pack build-engine {pack.dir} --target {flavour.target}`")
    if installed_version is None:
        raise EngineRefused(first, f"{flavour.title} is not installed here ({flavour.install_hint})")
    if engines.runtime_version != installed_version:
        raise EngineRefused(first, f"built with {flavour.title} {engines.runtime_version}, this machine has "
                            f"{installed_version} (engines only load in the version that built them)")
    if gpu is not None and engines.compute_capability != gpu.cc:
        raise EngineRefused(first, f"built for compute capability {engines.compute_capability}, this GPU "
                            f"({gpu.name}) is {gpu.cc}")
    check_files(pack, engines)
