"""`x86` target: pi0.5 on the native ggml core.

Weights (cpu_weights): "mapped" (default) points straight into the pack's GGUF (zero copy,
fastest load, shared page cache); "repacked" copies every matrix ggml's CPU backend has an
interleaved layout for into that layout (its own gemm kernels; one copy at load, file pages dropped
again, so memory stays ~1x the pack); "anonymous" reads the file into private memory advised for
transparent huge pages. Mapped is the default because it was the fastest of the three in the
same-run A/B of benchmarks/vs_actquant.py (docs/x86.md).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from vla_edge.errors import PackError, TargetUnavailableError
from vla_edge.families.pi05.inputs import Pi05Inputs

from ..base import Backend, BackendResult, check_threads


def _native():
    try:
        from vla_edge import _native
    except ImportError as exc:
        raise TargetUnavailableError(
            f"native module vla_edge._native is not built ({exc}); reinstall with a C++ compiler and cmake "
            "available (VLA_EDGE_BUILD_NATIVE=1 pip install . makes a build failure fatal and shows why)") from exc
    return _native


def availability() -> tuple[bool, str]:
    try:
        native = _native()
    except TargetUnavailableError as exc:
        return False, str(exc)
    return True, native.system_info()


def default_threads() -> int:
    return max(1, len(os.sched_getaffinity(0)))


class X86Backend(Backend):
    name = "x86"

    def __init__(self, pack: Any, threads: int | None = None, device: str = "cpu", unfused_ops: bool = False,
                 expert_graph: str = "auto", device_weights: str = "auto", cpu_weights: str = "mapped",
                 attention: str = "auto", fused_matrices: str | bool = "auto"):
        if pack.manifest.family != "pi05":
            raise TargetUnavailableError(f"x86 target has no implementation for family '{pack.manifest.family}'")
        threads = default_threads() if threads is None else threads
        check_threads(threads)
        native = _native()
        try:
            self.runtime = native.Pi05Runtime(str(pack.weights_path), threads, device, bool(unfused_ops),
                                              expert_graph, device_weights, cpu_weights, attention,
                                              str(fused_matrices).lower())
        except ValueError as exc:  # an option the runtime refuses: the caller's mistake, not the pack's
            raise TargetUnavailableError(f"{self.name} target: {exc}") from exc
        except RuntimeError as exc:
            raise PackError(str(pack.weights_path), str(exc)) from exc
        cfg = pack.config
        if (self.runtime.horizon, self.runtime.action_dim) != (cfg.action_horizon, cfg.action_dim):
            raise PackError(str(pack.weights_path), "GGUF metadata disagrees with pack.yaml on horizon/action_dim")

    def sample_actions(self, inputs: Pi05Inputs) -> BackendResult:
        actions, timings = self.runtime.sample_actions(inputs.images, inputs.tokens, inputs.noise, inputs.num_steps)
        return BackendResult(np.asarray(actions, dtype=np.float32), dict(timings))

    @property
    def batches(self) -> bool:
        return True

    def sample_actions_batch(self, batch: Sequence[Pi05Inputs]) -> list[BackendResult]:
        """One graph call per stage for the whole batch (per-observation cameras, prompt lengths and
        noise); every result carries the batch's stage times."""
        steps = {inputs.num_steps for inputs in batch}
        if len(steps) != 1:
            raise ValueError(f"a batch runs one flow-step count, got {sorted(steps)}")
        actions, timings = self.runtime.sample_actions_batch([i.images for i in batch], [i.tokens for i in batch],
                                                             [i.noise for i in batch], steps.pop())
        return [BackendResult(np.asarray(a, dtype=np.float32), dict(timings)) for a in actions]

    def describe(self) -> dict[str, Any]:
        rt = self.runtime
        return {"implementation": "ggml", "backend": rt.backend, "threads": rt.n_threads,
                "weight_bytes": rt.weight_bytes, "device_weight_bytes": rt.device_weight_bytes,
                "compute_buffer_bytes": rt.compute_buffer_bytes, "fused_gelu_ops": rt.fused_ops,
                "gelu_ops": rt.gelu_ops, "attention": rt.attention, "fused_matrices": rt.fused_matrices,
                "device_weights": rt.device_weights,
                "expert_graph": rt.expert_graph, "cpu_weights": rt.cpu_weights,
                "repacked_bytes": rt.repacked_bytes, "repacked_tensors": rt.repacked_tensors,
                "constants": rt.constants, "expert_loop": rt.expert_loop, "prefix_loop": rt.prefix_loop,
                "vision_loop": rt.vision_loop}


def create_backend(pack: Any, threads: int | None = None, device: str = "cpu", unfused_ops: bool = False,
                   expert_graph: str = "auto", cpu_weights: str = "mapped", attention: str = "auto",
                   **options: Any) -> X86Backend:
    """unfused_ops: keep GELU/GeGLU as ggml's element-wise chain instead of the fused CPU op
    (for same-run comparisons, benchmarks/bench_fused_ops.py); expert_graph: 'step' (default on the
    CPU: per-step timings) or 'chunk' (all flow steps in one graph); cpu_weights: 'mapped'
    (default), 'repacked' or 'anonymous' (see the module docstring); attention: 'auto' (flash
    attention in the vision tower, where it measured faster, products + softmax elsewhere), 'flash'
    (ggml_flash_attn_ext in every stage) or 'matmul' (products + softmax everywhere)."""
    if options:
        raise TargetUnavailableError(
            f"x86 target got unknown options {sorted(options)} "
            "(known: threads, device, unfused_ops, expert_graph, cpu_weights, attention)")
    return X86Backend(pack, threads=threads, device=device, unfused_ops=unfused_ops, expert_graph=expert_graph,
                      cpu_weights=cpu_weights, attention=attention)
