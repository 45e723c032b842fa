"""How close each stage of a GPU chunk is to what the GPU could do at best.

Two floors per stage, from the same workload model the CPU ceiling uses (families/pi05/workload.py:
every weight product one chunk performs, with its token count and how often): the time to read
every weight matrix the stage multiplies once per use at the GPU's peak memory bandwidth, and the
time of its products at the GPU's dense F16/BF16 tensor-core peak. The larger of the two is a
stage's floor (it can only be reached if the other resource is free); `fraction` = floor /
measured time. Attention products are left out (a few percent of the FLOPs at these lengths),
so the floors are slightly optimistic. Peaks are the vendors' datasheet numbers for the SXM
parts; a GPU not in the table gets no floor rather than a guessed one.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from ..families.pi05.config import Pi05Config
from ..families.pi05.workload import matmul_workload
from ..packs.gguf_io import TensorInfo

# name fragment -> (memory bandwidth bytes/s, dense F16/BF16 tensor-core FLOP/s, without sparsity)
GPU_PEAKS = {
    "H200": (4.8e12, 989e12),
    "H100": (3.35e12, 989e12),  # SXM; the PCIe part has 2.0e12 and 756e12
    "A100": (2.04e12, 312e12),  # 80 GB SXM
}

STAGE_OF_PREFIX = (("v.", "vision"), ("mm.", "vision"), ("pali.", "prefix"), ("action.", "expert_total"))


def gpu_peaks(gpu_name: str) -> tuple[float, float] | None:
    if "PCIe" in gpu_name:
        return None
    return next((peaks for key, peaks in GPU_PEAKS.items() if key in gpu_name), None)


def stage_of(tensor: str) -> str:
    return next(stage for prefix, stage in STAGE_OF_PREFIX if tensor.startswith(prefix))


def stage_work(cfg: Pi05Config, infos: dict[str, TensorInfo], n_images: int, n_text_tokens: int,
               num_steps: int, widened_to_f16: bool = False) -> dict[str, dict[str, float]]:
    """Per stage: weight bytes read (once per use) and matmul FLOPs of one chunk. widened_to_f16: the
    device holds quantised matrices as 16-bit values (the cuda target's device_weights=f16 / bf16)."""
    work: dict[str, dict[str, float]] = defaultdict(lambda: {"weight_bytes": 0.0, "flop": 0.0})
    for use in matmul_workload(cfg, n_images, n_text_tokens, num_steps):
        info = infos[use.tensor]
        n_out, n_in = info.shape[0], info.n_elements // info.shape[0]
        widen = widened_to_f16 and info.ggml_type not in ("F32", "F16", "BF16")
        bytes_each = 2 * info.n_elements if widen else info.n_bytes
        stage = work[stage_of(use.tensor)]
        stage["weight_bytes"] += float(bytes_each) * use.calls
        stage["flop"] += 2.0 * n_out * n_in * use.n_tokens * use.calls
    return dict(work)


def stage_floors(work: dict[str, dict[str, float]], measured_ms: dict[str, float],
                 gpu_name: str) -> dict[str, dict[str, Any]] | None:
    """Per stage the bandwidth and tensor-core floors (ms) and the fraction of the floor reached."""
    peaks = gpu_peaks(gpu_name)
    if peaks is None:
        return None
    bandwidth, flops = peaks
    out = {}
    for stage, w in work.items():
        bw_ms, tc_ms = 1e3 * w["weight_bytes"] / bandwidth, 1e3 * w["flop"] / flops
        floor = max(bw_ms, tc_ms)
        ms = measured_ms.get(stage)
        out[stage] = {"weight_bytes": w["weight_bytes"], "flop": w["flop"], "bandwidth_floor_ms": bw_ms,
                      "tensor_core_floor_ms": tc_ms, "bound_by": "bandwidth" if bw_ms >= tc_ms else "tensor cores",
                      "measured_ms": ms, "fraction_of_floor": floor / ms if ms else None}
    return out
