"""Where the GPU time of one chunk goes: every CUDA kernel our `cuda` target launches, timed by CUPTI.

    python benchmarks/gpu_profile.py --pack PACK [--views 2] [--prompt-len 70] [--chunks 3]
        [--option key=value]... [--out gpu_profile.json]

Latency tables say *which stage* is slow; this says *which kernels* inside it are, and how much of
the chunk's wall time the GPU is busy at all (the rest is launch overhead, host work and
synchronisation). It uses torch's profiler only as a CUPTI client: it sees every kernel launched
in the process, ggml-CUDA's included, with or without CUDA graphs. Kernels are grouped by their
name without template arguments (e.g. every `mul_mat_q<...>` instance together), and by ggml
operation family, so the table stays readable. Run on the GPU machine after gpu_setup.sh.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gpu_vs_realtime_vla import Ours  # noqa: E402 - same inputs as the side-by-side benchmark

FAMILIES = (  # first match wins; a kernel name matching none is reported as "other"
    ("matmul (quantised, ggml mmq/mmvq)", r"mul_mat_q|mul_mat_vec_q|mmq|mmvq"),
    ("matmul (cuBLAS / cutlass)", r"gemm|cutlass|sm90_|sm80_|xmma|cublas|ampere_|s16816|s1688|nvjet"),
    ("matmul (ggml f16/f32 kernels)", r"mul_mat|mmf|mmvf"),
    ("flash attention", r"flash_attn|fattn"),
    ("attention (our loops)", r"attention_|vision_qkv|vision_heads"),
    ("softmax", r"soft_?max"),
    ("norms", r"norm"),
    ("rope", r"rope"),
    ("gelu / glu / silu", r"gelu|glu|silu|tanh"),
    ("element-wise add/mul/scale", r"bin_bcast|scale|op_add|op_mul|add_f32|mul_f32"),
    ("copies / casts / concat / pad", r"cpy|convert|concat|pad|cont|dup|copy|memcpy|memset"),
)


def family(name: str) -> str:
    low = name.lower()
    return next((fam for fam, pattern in FAMILIES if re.search(pattern, low)), "other")


def short_name(name: str) -> str:
    name = name.replace("(anonymous namespace)::", "")  # our kernels live in one: keep their names
    name = re.sub(r"<.*", "", name)          # template arguments
    return re.sub(r"\(.*", "", name).strip()  # parameter lists


def kernel_times(prof: Any) -> list[tuple[str, float]]:
    """(kernel name, device microseconds) for every kernel event the profiler recorded."""
    out = []
    for e in prof.events():
        if "cuda" not in str(getattr(e, "device_type", "")).lower():
            continue
        us = getattr(e, "device_time", None)
        if us is None:
            us = getattr(e, "cuda_time", 0.0)
        out.append((e.name, float(us)))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pack", required=True)
    ap.add_argument("--views", type=int, default=2)
    ap.add_argument("--prompt-len", type=int, default=70)
    ap.add_argument("--chunks", type=int, default=3)
    ap.add_argument("--option", action="append", default=[], help="cuda target option key=value (repeatable)")
    ap.add_argument("--top", type=int, default=25)
    ap.add_argument("--out", type=Path, default=Path("gpu_profile.json"))
    args = ap.parse_args()
    import torch
    from torch.profiler import ProfilerActivity, profile

    options = dict(o.split("=", 1) for o in args.option)
    ours = Ours(args.pack, options, None)
    ours.setup(args.views, args.prompt_len, seed=1)
    for _ in range(3):  # graphs built, CUDA graphs captured
        ours.chunk()
    torch.cuda.synchronize()
    stages = []
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        start = time.perf_counter()
        for _ in range(args.chunks):
            stages.append(ours.chunk()[1])
        torch.cuda.synchronize()
        wall_ms = (time.perf_counter() - start) * 1e3 / args.chunks
    kernels = kernel_times(prof)
    by_name: dict[str, list[float]] = defaultdict(lambda: [0.0, 0])
    by_family: dict[str, list[float]] = defaultdict(lambda: [0.0, 0])
    for name, us in kernels:
        for table, key in ((by_name, short_name(name)), (by_family, family(name))):
            table[key][0] += us / 1e3 / args.chunks
            table[key][1] += 1 / args.chunks
    busy_ms = sum(v[0] for v in by_family.values())
    result = {
        "gpu": torch.cuda.get_device_name(0), "pack": args.pack, "views": args.views, "prompt_len": args.prompt_len,
        "options": options, "chunks_profiled": args.chunks, "wall_ms_per_chunk": wall_ms,
        "kernel_ms_per_chunk": busy_ms, "gpu_busy_fraction": busy_ms / wall_ms,
        "kernels_per_chunk": len(kernels) / args.chunks,
        "stages_ms": {k: sum(s[k] for s in stages) / len(stages) for k in stages[0]},
        "by_family_ms": {k: {"ms": v[0], "launches": v[1]} for k, v in sorted(by_family.items(), key=lambda kv: -kv[1][0])},
        "top_kernels_ms": {k: {"ms": v[0], "launches": v[1]}
                           for k, v in sorted(by_name.items(), key=lambda kv: -kv[1][0])[:args.top]},
    }
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"{options or 'defaults'}: wall {wall_ms:.1f} ms/chunk, kernels {busy_ms:.1f} ms "
          f"({100 * busy_ms / wall_ms:.0f}% busy), {len(kernels) / args.chunks:.0f} kernels/chunk")
    for k, v in result["by_family_ms"].items():
        print(f"  {v['ms']:8.2f} ms {v['launches']:7.0f} x  {k}")
    for k, v in list(result["top_kernels_ms"].items())[:12]:
        print(f"  {v['ms']:8.2f} ms {v['launches']:7.0f} x  {k[:100]}")


if __name__ == "__main__":
    main()
