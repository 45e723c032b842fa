"""ggml's own matmul throughput on the model's actual (shape, type, tokens) triples.

The ceiling time is what one inference would take if it were nothing but ggml's matrix
multiplications on these shapes, each timed alone. `ceiling / pipeline time` is the pipeline's
achieved matmul FLOP/s divided by ggml's: everything else the pipeline does (attention, norms,
copies, thread wake-ups, graph overhead) shows up as the gap.

Each shape is timed in both layouts ggml has for it here, the pack's stored blocks and, where the
CPU backend has one, its repacked (interleaved) layout, and the faster one counts: the ceiling is
the best ggml reaches on these shapes on this machine, whichever layout the pipeline itself uses.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from ..packs.gguf_io import GGUFFile


def matmul_ceiling(weights: GGUFFile, uses: list[Any], threads: int, reps: int = 3) -> dict[str, Any]:
    from .. import _native

    infos = weights.tensor_infos()
    groups: dict[tuple[str, int, int, int], int] = defaultdict(int)
    for use in uses:
        info = infos[use.tensor]
        n_out, n_in = info.shape[0], int(info.n_elements // info.shape[0])  # conv weights flatten to [out, in]
        groups[(info.ggml_type, n_out, n_in, use.n_tokens)] += use.calls
    shapes = []
    total_s = total_flop = 0.0
    for (qtype, n_out, n_in, n_tokens), count in sorted(groups.items()):
        by_layout = {layout: _native.bench_matmul(qtype, n_out, n_in, n_tokens, threads, reps, layout)
                     for layout in ("stored", "repacked")}
        by_layout = {k: v for k, v in by_layout.items() if v > 0}  # -1: no repacked layout for this shape
        best = min(by_layout, key=by_layout.__getitem__)
        seconds = by_layout[best]
        flop = 2.0 * n_out * n_in * n_tokens
        shapes.append({"type": qtype, "n_out": n_out, "n_in": n_in, "n_tokens": n_tokens, "count": count,
                       "seconds_each": seconds, "gflops": flop / seconds / 1e9, "layout": best,
                       "seconds_by_layout": by_layout})
        total_s += seconds * count
        total_flop += flop * count
    return {"seconds": total_s, "flop": total_flop, "gflops": total_flop / total_s / 1e9 if total_s else 0.0,
            "threads": threads, "reps": reps, "shapes": shapes}
