"""The registry face of the GPU targets: `availability()` and `create_backend()` for `cuda`, `gb10`
and `orin`, built on facts.py (what this machine is), selection.py (which path) and the two
halves (engine_build.py ahead of time, engine_runtime.py at run time).

Every backend says in `describe()` (hence Policy.info, run logs and reports) which path it took
and why; a fallback is logged as a warning when the policy loads, a development fallback on
other hardware is marked `development_fallback: true`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

from vla_edge.errors import TargetUnavailableError

from ..base import Backend, BackendResult
from .facts import DeviceFacts, probe
from .selection import ENGINE, Plan, availability, plan

log = logging.getLogger("vla_edge.targets.gpu")
# Packs listing x86 run here: the ggml-CUDA path runs the same GGUF, and engines are built from it.
RUNS_PACKS_OF = "x86"


class GpuBackend(Backend):
    """The chosen path's backend plus the plan that chose it."""

    def __init__(self, name: str, inner: Backend, chosen: Plan, facts: DeviceFacts):
        self.name, self.inner, self.plan, self.facts = name, inner, chosen, facts

    def sample_actions(self, inputs: Any) -> BackendResult:
        return self.inner.sample_actions(inputs)

    @property
    def batches(self) -> bool:
        return self.inner.batches  # the ggml-CUDA path batches; TensorRT engines do not (yet)

    def sample_actions_batch(self, batch: Sequence[Any]) -> list[BackendResult]:
        if not self.inner.batches:
            raise TargetUnavailableError(f"target '{self.name}' on its {self.plan.path} path cannot run several "
                                         "observations in one forward pass (the ggml-CUDA path can)")
        return self.inner.sample_actions_batch(batch)

    def describe(self) -> dict[str, Any]:
        p = self.plan
        return {**self.inner.describe(), "target": self.name, "path": p.path, "path_note": p.note,
                "gpu": {"index": p.gpu.index, "name": p.gpu.name, "compute_capability": p.gpu.cc},
                "development_fallback": p.development, "refused_engines": list(p.refused),
                **self._jetson()}

    def _jetson(self) -> dict[str, Any]:
        """On a Jetson, the power mode goes into every run's record (jetson_clocks has no status file)."""
        f = self.facts
        if f.tegra_release is None:
            return {}
        return {"jetson": {"release": f.tegra_release, "model": f.jetson_model, "power_mode": f.power_mode}}

    def close(self) -> None:
        self.inner.close()


class EngineBackend(Backend):
    """TensorRT / TensorRT-RTX engines inside the reference's pipeline (engine_runtime.py)."""

    name = "engine"

    def __init__(self, pack: Any, chosen: Plan, facts: DeviceFacts):
        from vla_edge.targets.onnx.target import OnnxPi05

        from .engine_runtime import load_stages
        from .flavours import FLAVOURS, import_flavour

        flavour = FLAVOURS[chosen.target]
        trt = import_flavour(flavour)
        stages = load_stages(trt, flavour, pack, chosen.engines, chosen.gpu)
        self.engines = chosen.engines
        self.model = OnnxPi05(pack, stages, pack.weights.float32)

    def sample_actions(self, inputs: Any) -> BackendResult:
        import numpy as np

        actions, timings = self.model.sample_actions(inputs)
        return BackendResult(actions.astype(np.float32), timings)

    def describe(self) -> dict[str, Any]:
        e = self.engines
        return {"implementation": f"{e.runtime} {e.runtime_version} engines", "precision": e.precision,
                "engine_files": {s: f.path for s, f in e.files.items()}}


# Options of the ggml-CUDA path (the x86 core on a GPU device), see native/src/pi05_runtime.h.
# device_weights "auto": BF16 matrices (F16 before Ampere) on a discrete GPU with room for them, the pack's types elsewhere
# (DeviceWeights in native/src/gguf_weights.h); fused_matrices "auto": fused. The first value is the default.
GGML_CUDA_OPTIONS = {"expert_graph": ("chunk", "step"), "device_weights": ("auto", "stored", "f16", "bf16"),
                     "attention": ("auto", "flash", "matmul"), "unfused_ops": ("false", "true"),
                     "fused_matrices": ("auto", "false", "true")}
# given as text on command lines, as a bool from Python (fused_matrices also takes "auto")
FLAG_OPTIONS = ("unfused_ops", "fused_matrices")


def _fallback_backend(pack: Any, gpu_index: int, **ggml_options: str) -> Backend:
    from vla_edge.targets.x86.target import X86Backend

    return X86Backend(pack, threads=None, device=f"cuda:{gpu_index}", **ggml_options)


def target_functions(name: str) -> tuple[Callable[[], tuple[bool, str]], Callable[..., GpuBackend]]:
    """(availability, create_backend) of GPU target `name`, as the registry calls them."""

    def target_availability(facts: DeviceFacts | None = None) -> tuple[bool, str]:
        return availability(name, facts or probe())

    def create_backend(pack: Any, precision: str | None = None, gpu: int = 0, facts: DeviceFacts | None = None,
                       **options: Any) -> GpuBackend:
        """precision: which of the pack's engine sets (default: the first that fits); gpu: device index;
        facts: this machine's (tests pass fakes); expert_graph / device_weights / attention / unfused_ops /
        fused_matrices: the ggml-CUDA path's choices (GGML_CUDA_OPTIONS; ignored by engines)."""
        unknown = sorted(set(options) - set(GGML_CUDA_OPTIONS))
        if unknown:
            raise TargetUnavailableError(f"{name} target got unknown options {unknown} "
                                         f"(known: precision, gpu, {', '.join(GGML_CUDA_OPTIONS)})")
        for key in FLAG_OPTIONS:
            if key in options:
                options[key] = str(options[key]).lower()
        for key, value in options.items():
            if value not in GGML_CUDA_OPTIONS[key]:
                raise TargetUnavailableError(f"{name} target: option {key}={value!r}, expected one of "
                                             f"{', '.join(GGML_CUDA_OPTIONS[key])}")
        if "unfused_ops" in options:
            options["unfused_ops"] = options["unfused_ops"] == "true"
        facts = facts or probe()
        chosen = plan(name, facts, pack, precision, gpu)
        if chosen.path == ENGINE:
            inner: Backend = EngineBackend(pack, chosen, facts)
        else:
            if name != "cuda":
                log.warning("%s target: %s", name, chosen.note)
            inner = _fallback_backend(pack, gpu, **options)
        return GpuBackend(name, inner, chosen, facts)

    return target_availability, create_backend
