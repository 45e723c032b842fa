"""`orin` target: full TensorRT 10 engines (JetPack 6) on Jetson Orin (compute capability 8.7),
ggml-CUDA when they do not fit. The TensorRT path has not run in the development workplace."""

from .target import RUNS_PACKS_OF, target_functions

availability, create_backend = target_functions("orin")
__all__ = ["RUNS_PACKS_OF", "availability", "create_backend"]
