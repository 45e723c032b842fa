"""`reference` target: the NumPy oracle, always available, slow by design."""

from __future__ import annotations

import functools
from typing import Any

import numpy as np

from vla_edge.errors import TargetUnavailableError
from vla_edge.families.pi05.inputs import Pi05Inputs
from vla_edge.packs.w4a4 import read_layers

from ..base import Backend, BackendResult
from .pi05_model import Pi05Reference
from .w4a4 import W4A4Linear


def availability() -> tuple[bool, str]:
    return True, "pure NumPy, runs everywhere"


def _w4a4_layers(pack: Any) -> dict[str, W4A4Linear]:
    """The pack's W4A4 layers (manifest quantization.w4a4), read and checked once at load."""
    section = pack.manifest.quantization.w4a4
    if section is None:
        return {}
    layers = read_layers(pack.weights, section, pack.family.tensor_specs(pack.config))
    return {name: W4A4Linear(layer, section.act_scales, section.num_steps) for name, layer in layers.items()}


class ReferenceBackend(Backend):
    name = "reference"

    def __init__(self, pack: Any, cache_weights: bool = True):
        if pack.manifest.family != "pi05":
            raise TargetUnavailableError(f"reference target has no implementation for family '{pack.manifest.family}'")
        gguf = pack.weights
        # Dequantise lazily; caching trades memory (float32 copy of every tensor) for speed.
        load = functools.lru_cache(maxsize=None)(gguf.float32) if cache_weights else gguf.float32
        self.model = Pi05Reference(pack.config, load, quantized=_w4a4_layers(pack))

    def sample_actions(self, inputs: Pi05Inputs) -> BackendResult:
        actions, timings = self.model.sample_actions(inputs)
        return BackendResult(actions.astype(np.float32), timings)

    def describe(self) -> dict[str, Any]:
        return {"implementation": "numpy float32", "threads": "numpy/BLAS default"}


def create_backend(pack: Any, cache_weights: bool = True, **options: Any) -> ReferenceBackend:
    if options:
        raise TargetUnavailableError(f"reference target got unknown options {sorted(options)}")
    return ReferenceBackend(pack, cache_weights=cache_weights)
