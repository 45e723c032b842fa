"""`cuda` target: the native ggml core with its CUDA backend on any NVIDIA GPU (the everyday GPU path, and
the fallback of `gb10` and `orin`)."""

from .target import RUNS_PACKS_OF, target_functions

availability, create_backend = target_functions("cuda")
__all__ = ["RUNS_PACKS_OF", "availability", "create_backend"]
