"""What the GPU targets need to know about this machine, behind one small interface.

`cuda`, `gb10` and `orin` decide whether they can run, and on which path, from a `DeviceFacts`
alone: the GPUs (name, compute capability), the Jetson release file, whether the native core was
built with ggml-CUDA, which TensorRT flavours import, and whether the developer opted into running
a target's fallback on other hardware. `probe()` reads them from this machine; tests build
`DeviceFacts` by hand (tests/gpu_targets/) to play GB10, Orin or an H200.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable
from dataclasses import dataclass, field

from vla_edge.health.jetson import jetson_model, read_power_mode
from vla_edge.health.nvml import NvmlSession, describe_devices
from vla_edge.health.sample import SensorError
from vla_edge.health.sysfs import SysfsTree

# Set to 1 to let `gb10` / `orin` run their ggml-CUDA fallback on another NVIDIA GPU (development
# only: every log line, Policy.info and run report then says so).
DEV_FALLBACK_ENV = "VLA_EDGE_GPU_DEV_FALLBACK"
TEGRA_RELEASE = "etc/nv_tegra_release"
# Jetson modules have no NVML: their integrated GPU is known from the device-tree model.
JETSON_GPUS = {"Orin": (8, 7), "Thor": (11, 0), "Xavier": (7, 2)}


@dataclass(frozen=True)
class Gpu:
    index: int
    name: str
    compute_capability: tuple[int, int]

    @property
    def cc(self) -> str:
        return f"{self.compute_capability[0]}.{self.compute_capability[1]}"


@dataclass(frozen=True)
class DeviceFacts:
    gpus: tuple[Gpu, ...] = ()
    gpu_error: str | None = None  # why no GPU is listed (NVML missing, driver absent...)
    tegra_release: str | None = None  # first line of /etc/nv_tegra_release (Jetson only)
    jetson_model: str | None = None
    power_mode: str | None = None  # nvpmodel mode on Jetson
    native_cuda: bool = False  # vla_edge._native was built with the ggml-CUDA backend
    native_info: str = "native module not loaded"
    tensorrt: dict[str, str | None] = field(default_factory=dict)  # python module -> version (None: absent)
    tensorrt_errors: dict[str, str] = field(default_factory=dict)  # python module -> why it did not import
    dev_fallback: bool = False

    def gpu(self, index: int = 0) -> Gpu | None:
        return next((g for g in self.gpus if g.index == index), None)

    def describe_gpus(self) -> str:
        if not self.gpus:
            return f"no NVIDIA GPU ({self.gpu_error or 'none found'})"
        return ", ".join(f"gpu{g.index} {g.name} (compute capability {g.cc})" for g in self.gpus)

    def to_dict(self) -> dict:
        return {"gpus": [{"index": g.index, "name": g.name, "compute_capability": g.cc} for g in self.gpus],
                "gpu_error": self.gpu_error, "tegra_release": self.tegra_release, "jetson_model": self.jetson_model,
                "power_mode": self.power_mode, "native_cuda": self.native_cuda, "native_info": self.native_info,
                "tensorrt": dict(self.tensorrt), "tensorrt_errors": dict(self.tensorrt_errors),
                "dev_fallback": self.dev_fallback}


def _nvml_gpus(session: NvmlSession) -> tuple[tuple[Gpu, ...], str | None]:
    gpus = []
    for d in describe_devices(session):
        if "compute_capability" in d:
            major, minor = (int(x) for x in d["compute_capability"].split("."))
            gpus.append(Gpu(d["index"], d.get("name", "?"), (major, minor)))
    return tuple(gpus), (None if gpus else session.error or "NVML found no NVIDIA GPU")


def _jetson_gpu(model: str | None) -> Gpu | None:
    for key, cc in JETSON_GPUS.items():
        if model and key in model:
            return Gpu(0, f"{model} integrated GPU", cc)
    return None


def _tensorrt(module: str) -> tuple[str | None, str | None]:
    try:
        mod = importlib.import_module(module)
    except Exception as exc:  # noqa: BLE001 - ImportError, or a library that fails to load
        return None, f"{type(exc).__name__}: {exc}"
    return str(getattr(mod, "__version__", "unknown")), None


def _native_info() -> str:
    from vla_edge import _native

    return str(_native.system_info())


def _native(info: Callable[[], str]) -> tuple[bool, str]:
    try:
        text = info()
    except Exception as exc:  # noqa: BLE001 - ImportError, or a broken .so
        return False, f"native module vla_edge._native is not available ({exc})"
    return "CUDA backend built" in text, text


def probe(tree: SysfsTree | None = None, session: NvmlSession | None = None,
          native_info: Callable[[], str] = _native_info) -> DeviceFacts:
    """Read this machine's facts (NVML, /etc/nv_tegra_release, nvpmodel, the native build, TensorRT);
    `vla-edge doctor` passes its own (injectable) tree, NVML session and native module."""
    from .flavours import FLAVOURS

    tree = tree or SysfsTree()
    session = session or NvmlSession()
    try:
        gpus, gpu_error = _nvml_gpus(session)
    finally:
        session.close()
    tegra = model = power = None
    if tree.exists(TEGRA_RELEASE):
        try:
            tegra = tree.text(TEGRA_RELEASE).splitlines()[0].strip()
        except (SensorError, IndexError):
            tegra = "present (unreadable)"
        model = jetson_model(tree)
        try:
            power = read_power_mode(tree)
        except SensorError as exc:
            power = f"unknown ({exc})"
        jetson = _jetson_gpu(model)
        if not gpus and jetson is not None:
            gpus, gpu_error = (jetson,), None
    native_cuda, native_text = _native(native_info)
    versions, errors = {}, {}
    for flavour in FLAVOURS.values():
        versions[flavour.module], err = _tensorrt(flavour.module)
        if err:
            errors[flavour.module] = err
    return DeviceFacts(gpus, gpu_error, tegra, model, power, native_cuda, native_text, versions, errors,
                       os.environ.get(DEV_FALLBACK_ENV) == "1")
