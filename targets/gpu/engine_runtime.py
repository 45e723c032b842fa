"""Runtime half of `gb10` / `orin`: the pack's three engines inside the reference's pipeline.

Each engine is wrapped as a stage with onnxruntime's `run(output_names, feeds)` shape, so the
`onnx` target's pipeline (host embedding lookup, sinusoidal time embedding, Euler loop over ten
expert steps) runs the engines unchanged: the graphs are the same ones the ONNX export checked.
Device memory through cuda-python's runtime bindings (`cuda.bindings.runtime`).

Before TensorRT sees an engine, this GPU's compute capability is checked against what the
flavour's runtime supports (TensorRT-RTX: the `ComputeCapability` enum of the installed library),
then the library's own `get_engine_validity`, then `deserialize_cuda_engine`; every refusal is an
`EngineRefused` naming the file and the reason in words ("compute capability 9.0 is not supported
by TensorRT-RTX ..."), never a TensorRT traceback or a crash.

NOT RUN HERE: executing engines needs a GPU the flavour supports (GB10 / Orin / RTX); the
development machines have none and the H200 (9.0) is refused by TensorRT-RTX by design. What ran
on the H200 is the refusal path (benchmarks/gpu_verify_targets.sh). Per-call device allocations,
no CUDA graphs yet (speed is another issue).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from vla_edge.errors import TargetUnavailableError

from .engine_check import EngineRefused
from .facts import Gpu
from .flavours import CollectingLogger, Flavour, runtime_compute_capabilities

DIAGNOSTICS = {  # EngineInvalidityDiagnostics bit -> words
    "VERSION_MISMATCH": "built by another TensorRT version",
    "UNSUPPORTED_CC": "built for another compute capability",
    "MALFORMED_ENGINE": "malformed or truncated engine file",
    "OLD_CUDA_DRIVER": "the CUDA driver is too old for this engine",
    "OLD_CUDA_RUNTIME": "the CUDA runtime is too old for this engine",
    "INSUFFICIENT_GPU_MEMORY": "not enough GPU memory",
    "CUDA_ERROR": "a CUDA error while checking it",
}


def unsupported_gpu(trt: Any, flavour: Flavour, gpu: Gpu) -> str | None:
    """'compute capability 9.0 is not supported by TensorRT-RTX (...)' or None."""
    supported = runtime_compute_capabilities(trt, flavour)
    if supported is None or gpu.compute_capability in supported:
        return None
    listed = ", ".join(f"{a}.{b}" for a, b in supported)
    return (f"compute capability {gpu.cc} ({gpu.name}) is not supported by {flavour.title} "
            f"(its runtime runs {listed}); use --target cuda on this GPU")


def _diagnostics(trt: Any, bits: int) -> list[str]:
    flags = getattr(trt, "EngineInvalidityDiagnostics", None)
    if flags is None:
        return []
    return [words for name, words in DIAGNOSTICS.items() if hasattr(flags, name) and bits & int(getattr(flags, name))]


def _cudart() -> Any:
    try:
        from cuda.bindings import runtime as cudart
    except ImportError:
        try:
            from cuda import cudart  # cuda-python < 12.6
        except ImportError as exc:
            raise TargetUnavailableError(f"cuda-python is not installed ({exc}); pip install 'vla-edge[gb10]'") from exc
    return cudart


def _check(result: Any, what: str) -> Any:
    err, *rest = result if isinstance(result, tuple) else (result,)
    if int(err) != 0:
        raise RuntimeError(f"CUDA {what} failed: {err}")
    return rest[0] if len(rest) == 1 else rest


def deserialize(trt: Any, flavour: Flavour, runtime: Any, logger: Any, path: Path, gpu: Gpu, precheck: bool = True) -> Any:
    """The engine in `path` as an ICudaEngine, or EngineRefused saying why not."""
    if precheck:
        problem = unsupported_gpu(trt, flavour, gpu)
        if problem:
            raise EngineRefused(str(path), problem)
    data = path.read_bytes()
    if precheck and hasattr(runtime, "get_engine_validity"):
        validity, bits = runtime.get_engine_validity(data)
        if validity == trt.EngineValidity.INVALID:
            reasons = _diagnostics(trt, int(bits)) or ["TensorRT says it is invalid here"]
            raise EngineRefused(str(path), "; ".join(reasons) + f" (this GPU: {gpu.name}, compute capability {gpu.cc})")
    try:
        engine = runtime.deserialize_cuda_engine(data)
    except Exception as exc:  # noqa: BLE001 - some versions raise instead of returning None
        logger.errors.append(f"{type(exc).__name__}: {exc}")
        engine = None
    if engine is None:
        logged = " | ".join(logger.errors[-2:]) or "no error logged"
        problem = unsupported_gpu(trt, flavour, gpu)
        reason = problem or f"{flavour.title} could not deserialise it"
        raise EngineRefused(str(path), f"{reason} [{flavour.title}: {logged}]")
    return engine


class EngineStage:
    """One engine with onnxruntime's `run(output_names, feeds)` interface."""

    def __init__(self, trt: Any, engine: Any, cudart: Any):
        self.trt, self.engine, self.cudart = trt, engine, cudart
        self.context = engine.create_execution_context()
        self.stream = _check(cudart.cudaStreamCreate(), "stream creation")

    def run(self, output_names: list[str], feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        trt, cudart, ctx = self.trt, self.cudart, self.context
        buffers = []
        try:
            for name, value in feeds.items():
                array = np.ascontiguousarray(value, dtype=trt.nptype(self.engine.get_tensor_dtype(name)))
                ctx.set_input_shape(name, array.shape)
                ptr = _check(cudart.cudaMalloc(max(array.nbytes, 1)), "allocation")
                buffers.append(ptr)
                _check(cudart.cudaMemcpy(ptr, array.ctypes.data, array.nbytes, cudart.cudaMemcpyKind.cudaMemcpyHostToDevice),
                       "copy to device")
                ctx.set_tensor_address(name, ptr)
            outputs = {}
            for name in output_names:
                shape = tuple(ctx.get_tensor_shape(name))
                out = np.empty(shape, dtype=trt.nptype(self.engine.get_tensor_dtype(name)))
                ptr = _check(cudart.cudaMalloc(max(out.nbytes, 1)), "allocation")
                buffers.append(ptr)
                ctx.set_tensor_address(name, ptr)
                outputs[name] = (out, ptr)
            if not ctx.execute_async_v3(self.stream):
                raise RuntimeError("TensorRT execute_async_v3 failed")
            _check(cudart.cudaStreamSynchronize(self.stream), "stream synchronise")
            for out, ptr in outputs.values():
                _check(cudart.cudaMemcpy(out.ctypes.data, ptr, out.nbytes, cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost),
                       "copy to host")
            return [outputs[n][0].astype(np.float32, copy=False) for n in output_names]
        finally:
            for ptr in buffers:
                cudart.cudaFree(ptr)


def load_stages(trt: Any, flavour: Flavour, pack: Any, engines: Any, gpu: Gpu, precheck: bool = True) -> dict[str, EngineStage]:
    """stage -> EngineStage for every engine of the set (files already checked by engine_check)."""
    logger = CollectingLogger(trt)
    runtime = trt.Runtime(logger)
    loaded = {stage: deserialize(trt, flavour, runtime, logger, pack.dir / entry.path, gpu, precheck)
              for stage, entry in engines.files.items()}
    cudart = _cudart()
    return {stage: EngineStage(trt, engine, cudart) for stage, engine in loaded.items()}
