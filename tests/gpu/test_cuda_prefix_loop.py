"""Our own CUDA prefix loop (native/cuda/prefix_loop.cu, the default on CUDA; VLA_EDGE_CUDA_PREFIX=0 keeps ggml's graph) against
ggml's prefix graph and against the `reference` target, on fresh random observations of the tiny
pack's F16 and q4_k_m twins; the F32 pack keeps ggml's graph and says why.

Needs the native core built with -DVLA_EDGE_CUDA=ON and a GPU of compute capability >= 8.0: skipped
elsewhere, run on the GPU machine (benchmarks/gpu_vs_realtime_vla.sh runs tests/gpu before it times
anything).

Tolerances (rel-L2 of the action chunk): prefix loop vs ggml's prefix graph 2e-3, since both read the
same BF16 weights and the same 1 + w constants and differ in the attention kernel (F16 probabilities)
and in summation order; vs reference 5e-3, the forms check's bound for every GPU form.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from vla_edge.packs.golden import random_observation

pytestmark = pytest.mark.gpu
LOOP_VS_GRAPH = 2e-3
VS_REFERENCE = 5e-3


@pytest.fixture
def prefix_policy(cuda_policy):
    """make(pack, loop, **more): our own prefix loop (True) or ggml's prefix graph (False)."""
    return lambda pack_dir, loop, **more: cuda_policy(pack_dir, VLA_EDGE_CUDA_PREFIX="1" if loop else "0", **more)


# the default (the flash kernel with the key splits its plan takes, one-warp merge where it splits, norms'
# rows in registers, products raced per shape: the defaults since 2026-12-07's seventh session), then the
# other forms the prefix loop takes (two-warp merge, norms' rows read in loops, four-warp tile attention
# through the loops' shared switch, 128-key tile splits and the eight-warp tile form (the default before)
# through its own, cuBLAS's default products, the flash kernel unsplit): each exact against ggml's graph too
@pytest.mark.parametrize("switches", [{}, {"VLA_EDGE_CUDA_MERGE_WARPS": "2"}, {"VLA_EDGE_CUDA_VECTOR_NORMS": "0"},
                                      {"VLA_EDGE_CUDA_ATTENTION": "tile64"}, {"VLA_EDGE_CUDA_PREFIX_ATTENTION": "tile128w8"},
                                      {"VLA_EDGE_CUDA_PREFIX_TUNED": "0"}, {"VLA_EDGE_CUDA_PREFIX_ATTENTION": "tile64w8"},
                                      {"VLA_EDGE_CUDA_FLASH_SPLITS": "1"}])
def test_prefix_loop_equals_the_ggml_graph_and_the_reference(pack: Path, switches: dict[str, str], prefix_policy,
                                                             matches_graph_and_reference) -> None:
    loop, graph = prefix_policy(pack, True, **switches), prefix_policy(pack, False)
    # two prompts of different lengths: two shapes, each captured once (the longer first: a longer prefix
    # grows the loop's buffers, which drops the graphs captured before)
    prompts = ("pick up the green block and put it in the bowl on the left", "wipe the table")
    matches_graph_and_reference(loop, graph, pack, prompts, LOOP_VS_GRAPH, VS_REFERENCE)
    note = loop._backend.describe()["prefix_loop"]
    attention = switches.get("VLA_EDGE_CUDA_PREFIX_ATTENTION", switches.get("VLA_EDGE_CUDA_ATTENTION", "flash"))
    merge = switches.get("VLA_EDGE_CUDA_MERGE_WARPS", "1")
    assert note.startswith(f"cuda (own kernels, 2 shapes captured; attention {attention}; "
                           f"merge {merge} warp{'s' if merge == '2' else ''} per row; "), note
    tuned = switches.get("VLA_EDGE_CUDA_PREFIX_TUNED") != "0"
    assert ("product shapes timed cold: " in note) == tuned and ("cuBLAS default products" in note) == (not tuned), note
    assert note.endswith("; vector norms)") == (switches.get("VLA_EDGE_CUDA_VECTOR_NORMS") != "0"), note
    assert graph._backend.describe()["prefix_loop"] == "ggml graph (VLA_EDGE_CUDA_PREFIX=0)"


def test_batch_of_different_prefixes_equals_one_at_a_time(pack: Path, prefix_policy, batch_matches_singles) -> None:
    """Each observation attends to its own prefix only and writes its own cache rows."""
    loop = prefix_policy(pack, True)
    batch_matches_singles(loop, ("close the lid", "move the red cup next to the blue plate, handle facing right"), LOOP_VS_GRAPH)
    assert loop._backend.describe()["prefix_loop"].startswith("cuda (own kernels")


def test_float32_matrices_keep_the_ggml_graph_and_say_why(tiny_pack_dir: Path, prefix_policy) -> None:
    policy = prefix_policy(tiny_pack_dir, True)
    policy.infer(random_observation(policy.pack, np.random.default_rng(), prompt="stop"))
    note = policy._backend.describe()["prefix_loop"]
    assert note.startswith("ggml graph (") and "must be a BF16" in note, note
