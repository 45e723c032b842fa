"""`gb10` target: TensorRT-RTX engines from the pack on an NVIDIA GB10 (compute capability 12.1),
ggml-CUDA when they do not fit (see targets/gpu/target.py)."""

from .target import RUNS_PACKS_OF, target_functions

availability, create_backend = target_functions("gb10")
__all__ = ["RUNS_PACKS_OF", "availability", "create_backend"]
