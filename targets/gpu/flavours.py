"""The two TensorRT flavours behind `gb10` and `orin`, and the one builder code path they share.

TensorRT-RTX (`tensorrt_rtx_bindings`, pip: tensorrt-rtx-cu12-bindings/-libs) and full TensorRT 10
(`tensorrt`, JetPack 6 on Orin) have the same Python API for what is used here: Builder,
NetworkDefinition, OnnxParser, BuilderConfig, optimization profiles, Runtime. Where they differ
is stated in `Flavour`:

- TensorRT-RTX networks are always strongly typed (precision comes from the ONNX graph) and it
  builds ahead of time for a named compute capability, without a GPU: engines for GB10 (12.1)
  are built on any machine, CI included. Its runtime runs compute capability 7.5/8.x/12.x only
  (read from its own `ComputeCapability` enum) and refuses others, e.g. the H200's 9.0.
- Full TensorRT is asked for a strongly typed network (same graphs, same precision rule) and
  builds for the GPU it runs on, so Orin engines are built on the Orin. NOT RUN IN THIS
  WORKPLACE: no wheel of it installs here and no Orin is reachable; that code follows the
  TensorRT 10 Python API documentation and every error from it says it has not run here.
"""

from __future__ import annotations

import importlib
import re
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from vla_edge.errors import PackError, TargetUnavailableError

NOT_RUN_HERE = ("this path has not run in the vla-edge development workplace (no Orin and no TensorRT 10 wheel "
                "there); it follows the TensorRT 10 Python API documentation")


@dataclass(frozen=True)
class Flavour:
    target: str  # the vla-edge target that runs its engines
    key: str  # in engine file names and pack.yaml
    title: str
    module: str  # Python import name
    device: str  # the hardware the target is for, in words
    device_cc: tuple[int, int]
    builds_without_gpu: bool  # TensorRT-RTX: engines for a named compute capability on any machine
    install_hint: str
    ran_here: bool

    @property
    def cc(self) -> str:
        return f"{self.device_cc[0]}.{self.device_cc[1]}"


FLAVOURS: dict[str, Flavour] = {
    "gb10": Flavour("gb10", "tensorrt-rtx", "TensorRT-RTX", "tensorrt_rtx_bindings", "NVIDIA GB10 (DGX Spark)", (12, 1),
                    True, "pip install 'vla-edge[trt]' (tensorrt-rtx-cu12-bindings and -libs)", True),
    "orin": Flavour("orin", "tensorrt", "TensorRT 10", "tensorrt", "Jetson Orin (JetPack 6)", (8, 7), False,
                    "JetPack 6 installs TensorRT 10 and its Python module on the Orin (apt install python3-libnvinfer)",
                    False),
}


def import_flavour(flavour: Flavour) -> ModuleType:
    try:
        return importlib.import_module(flavour.module)
    except Exception as exc:  # noqa: BLE001 - ImportError, or its shared library failing to load
        extra = "" if flavour.ran_here else f"; {NOT_RUN_HERE}"
        raise TargetUnavailableError(f"{flavour.title} (Python module '{flavour.module}') is not available ({exc}); "
                                     f"{flavour.install_hint}{extra}") from exc


def version_of(trt: ModuleType) -> str:
    return str(getattr(trt, "__version__", "unknown"))


def runtime_compute_capabilities(trt: ModuleType, flavour: Flavour) -> tuple[tuple[int, int], ...] | None:
    """What this flavour's runtime can run, from the library itself (None: any GPU it was built on)."""
    if not flavour.builds_without_gpu:
        return None
    names = [n for n in dir(trt.ComputeCapability) if re.fullmatch(r"SM\d+", n)]
    return tuple(sorted((int(n[2:-1]), int(n[-1])) for n in names))


class CollectingLogger:
    """A TensorRT ILogger that keeps warnings and errors, so a failed build or load can say why."""

    def __new__(cls, trt: ModuleType) -> Any:
        class _Logger(trt.ILogger):
            def __init__(self) -> None:
                trt.ILogger.__init__(self)
                self.errors: list[str] = []
                self.warnings: list[str] = []

            def log(self, severity: Any, msg: str) -> None:
                if severity in (trt.ILogger.Severity.ERROR, trt.ILogger.Severity.INTERNAL_ERROR):
                    self.errors.append(msg)
                elif severity == trt.ILogger.Severity.WARNING:
                    self.warnings.append(msg)

        return _Logger()


def _network_flags(trt: ModuleType, flavour: Flavour) -> int:
    if flavour.builds_without_gpu:
        return 0  # TensorRT-RTX: strongly typed always, the flag does not exist
    return 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)


def _compute_capability_enum(trt: ModuleType, flavour: Flavour) -> Any:
    name = f"SM{flavour.device_cc[0]}{flavour.device_cc[1]}"
    value = getattr(trt.ComputeCapability, name, None)
    if value is None:
        raise TargetUnavailableError(f"{flavour.title} {version_of(trt)} cannot build for compute capability {flavour.cc}")
    return value


def parse_onnx(trt: ModuleType, flavour: Flavour, onnx_path: Path, logger: Any) -> tuple[Any, Any, Any]:
    """(builder, network, parser) with every node of `onnx_path` parsed, or PackError naming the
    nodes the parser refused. Parsed from the path so `<stage>.weights` beside it is found."""
    builder = trt.Builder(logger)
    network = builder.create_network(_network_flags(trt, flavour))
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = []
        for i in range(parser.num_errors):
            err = parser.get_error(i)
            errors.append(f"node {err.node()} ({err.node_name() or '?'}, {err.node_operator() or '?'}): {err.desc()}")
        raise PackError(str(onnx_path), f"{flavour.title}'s ONNX parser refused it: {'; '.join(errors) or 'no details'}")
    return builder, network, parser


def build_serialized(trt: ModuleType, flavour: Flavour, onnx_path: Path, shapes: dict[str, tuple], workspace_bytes: int) -> bytes:
    """One engine from one ONNX graph: parse (all nodes), one optimization profile, build."""
    logger = CollectingLogger(trt)
    builder, network, _parser = parse_onnx(trt, flavour, onnx_path, logger)
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_bytes)
    if flavour.builds_without_gpu:
        config.num_compute_capabilities = 1
        config.set_compute_capability(_compute_capability_enum(trt, flavour), 0)
    profile = builder.create_optimization_profile()
    for name, (lo, opt, hi) in shapes.items():
        profile.set_shape(name, lo, opt, hi)
    config.add_optimization_profile(profile)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        why = "; ".join(logger.errors[-3:]) or "no error logged"
        raise PackError(str(onnx_path), f"{flavour.title} built no engine: {why}"
                        + ("" if flavour.ran_here else f" ({NOT_RUN_HERE})"))
    return bytes(serialized)
