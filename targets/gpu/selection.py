"""Which path a GPU target takes on a machine, decided from `DeviceFacts` alone (so tests can play
any machine): the target's own engines, the ggml-CUDA fallback, or nothing, and why.

- `cuda`: ggml-CUDA (the native core built with VLA_EDGE_CUDA=1) on any NVIDIA GPU.
- `gb10` / `orin`: on their own hardware, the pack's TensorRT engines when they fit
  (engine_check.py), else ggml-CUDA with a visible note. On other hardware they are
  unavailable, with a message pointing to `cuda`, unless VLA_EDGE_GPU_DEV_FALLBACK=1 lets them
  run their ggml-CUDA fallback there for development, marked as such everywhere.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from vla_edge.errors import TargetUnavailableError

from .facts import DEV_FALLBACK_ENV, DeviceFacts, Gpu
from .flavours import FLAVOURS, Flavour

ENGINE, FALLBACK = "engine", "fallback"


@dataclass(frozen=True)
class Plan:
    target: str
    path: str  # "engine" | "fallback"
    gpu: Gpu
    note: str  # why this path, shown to the user and kept in Policy.info
    development: bool = False  # a fallback running on hardware that is not the target's
    engines: object | None = None  # the EngineSet chosen (path "engine")
    refused: list[str] = field(default_factory=list)  # engine sets that did not fit, with reasons


def cuda_problem(facts: DeviceFacts, index: int = 0) -> str | None:
    """Why ggml-CUDA cannot run here (None: it can)."""
    if facts.gpu(index) is None:
        return f"needs an NVIDIA GPU (gpu{index}); this machine: {facts.describe_gpus()}"
    if not facts.native_cuda:
        return (f"the native core was built without ggml-CUDA ({facts.native_info}); reinstall with "
                "VLA_EDGE_CUDA=1 pip install . (needs nvcc)")
    return None


def _no_gpu_at_all(facts: DeviceFacts) -> bool:
    """No NVIDIA GPU and no Jetson: the GPU targets' reasons leave why to the `cuda` target's."""
    return not facts.gpus and facts.tegra_release is None


def hardware_problem(flavour: Flavour, facts: DeviceFacts, index: int = 0) -> str | None:
    """Why this machine is not the target's hardware (None: it is). Where it has no NVIDIA GPU at all
    and is no Jetson, the short form: why NVML found none is the `cuda` target's reason to give (once,
    in `auto`'s list of what it passed over, where every GPU target repeated it before)."""
    gpu = facts.gpu(index)
    bare = _no_gpu_at_all(facts)
    if flavour.target == "orin" and facts.tegra_release is None:
        return ("this machine is not a Jetson and has no NVIDIA GPU" if bare else
                f"this machine is not a Jetson (no /etc/nv_tegra_release; {facts.describe_gpus()})")
    if bare:
        return "this machine has no NVIDIA GPU"
    if gpu is None:
        return f"this machine has {facts.describe_gpus()}"
    if gpu.compute_capability != flavour.device_cc:
        return f"gpu{index} is {gpu.name} (compute capability {gpu.cc}), not compute capability {flavour.cc}"
    return None


def availability(target: str, facts: DeviceFacts, index: int = 0) -> tuple[bool, str]:
    """(can `target` run here, on which path and why / why not): what `doctor` and the registry show."""
    cuda = cuda_problem(facts, index)
    if target == "cuda":
        return (False, cuda) if cuda else (True, f"ggml-CUDA on gpu{index} {facts.gpu(index).name}")
    flavour = FLAVOURS[target]
    hardware = hardware_problem(flavour, facts, index)
    if hardware is None:
        version = facts.tensorrt.get(flavour.module)
        engine = (f"{flavour.title} {version} engines from the pack when they fit" if version else
                  f"no engines ({flavour.title} not installed: {flavour.install_hint})")
        fallback = "ggml-CUDA fallback otherwise" if cuda is None else f"no ggml-CUDA fallback ({cuda})"
        if version is None and cuda is not None:
            return False, f"{flavour.device}, but {engine} and {fallback}"
        return True, f"{flavour.device}: {engine}; {fallback}"
    if facts.dev_fallback and cuda is None:
        return True, (f"DEVELOPMENT FALLBACK ({DEV_FALLBACK_ENV}=1): this is not a {flavour.device} ({hardware}); "
                      f"runs ggml-CUDA on gpu{index}, never {target}'s engines")
    if _no_gpu_at_all(facts):  # nothing to point to
        return False, f"{target} runs on {flavour.device} only and {hardware}"
    pointer = ("use --target cuda (ggml-CUDA on any NVIDIA GPU)" if cuda is None else
               "the cuda target (ggml-CUDA on any NVIDIA GPU) cannot run here either")
    return False, (f"{target} runs on {flavour.device} only and {hardware}; {pointer}"
                   + (f", or set {DEV_FALLBACK_ENV}=1 to run {target}'s ggml-CUDA fallback here for development"
                      if cuda is None else ""))


def plan(target: str, facts: DeviceFacts, pack, precision: str | None = None, index: int = 0) -> Plan:
    """The path `target` takes for `pack` here; TargetUnavailableError when there is none."""
    from .engine_check import EngineRefused, check_fit, engine_sets

    ok, why = availability(target, facts, index)
    if not ok:
        raise TargetUnavailableError(f"target '{target}' is unavailable: {why}")
    gpu = facts.gpu(index)
    if target == "cuda":
        return Plan(target, FALLBACK, gpu, why)
    flavour = FLAVOURS[target]
    if hardware_problem(flavour, facts, index) is not None:
        return Plan(target, FALLBACK, gpu, why, development=True)
    candidates = engine_sets(pack, target, precision)
    refused = []
    for engines in candidates:
        try:
            check_fit(pack, engines, flavour, facts.tensorrt.get(flavour.module), gpu)
        except EngineRefused as exc:
            refused.append(f"{engines.precision}: {exc.file}: {exc.reason}")
            continue
        return Plan(target, ENGINE, gpu, f"{flavour.title} {engines.runtime_version} engines ({engines.precision}) "
                    f"on {gpu.name}", engines=engines)
    if not candidates:
        wanted = f" for precision {precision}" if precision else ""
        reason = (f"pack '{pack.manifest.name}' has no {target} engines{wanted} (build them with "
                  f"`vla-edge pack build-engine {pack.dir} --target {target}`)")
    else:
        reason = "no engine set fits: " + "; ".join(refused)
    cuda = cuda_problem(facts, index)
    if cuda is not None:
        raise TargetUnavailableError(f"target '{target}': {reason}; and no ggml-CUDA fallback: {cuda}")
    return Plan(target, FALLBACK, gpu, f"FALLBACK to ggml-CUDA: {reason}", refused=refused)
