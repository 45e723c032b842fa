"""Our own CUDA vision loop (native/cuda/vision_loop.cu, the default; VLA_EDGE_CUDA_VISION=0 keeps ggml's) against
ggml's vision graph and against the `reference` target, on fresh random observations of the tiny
pack's F16 and q4_k_m twins (the q4_k_m twin pads the vision matrices' inputs, the projection's not);
with q/k/v as separate matrices (the default) and with VLA_EDGE_FUSE_VISION_QKV=1 (which fuses them only
where each bias fills whole 256-byte blocks: on the full pack, not the tiny one, whose 96-float biases
keep both the graph and the loop on separate products); the F32 pack keeps ggml's graph and says why.

Needs the native core built with -DVLA_EDGE_CUDA=ON and a GPU of compute capability >= 8.0: skipped
elsewhere, run on the GPU machine (benchmarks/gpu_vs_realtime_vla.sh runs tests/gpu before it times
anything).

Tolerances (rel-L2 of the action chunk): vision loop vs ggml's vision graph 2e-3, since both read the
same BF16 weights and differ in attention (batched products with F16 probabilities against ggml's
flash kernel, which rounds to F16 too) and in summation order; vs reference 5e-3, the forms check's
bound for every GPU form.
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
def vision_policy(cuda_policy):
    """make(pack, loop, **more): our own vision loop (True) or ggml's vision graph (False)."""
    return lambda pack_dir, loop, **more: cuda_policy(pack_dir, VLA_EDGE_CUDA_VISION="1" if loop else "0", **more)


@pytest.mark.parametrize("fused,norms,flash", [("0", None, True), ("1", None, True), ("0", "0", True), ("0", None, False)])
def test_vision_loop_equals_the_ggml_graph_and_the_reference(pack: Path, fused: str, norms: str | None, flash: bool,
                                                             vision_policy, matches_graph_and_reference) -> None:
    """q/k/v separate or fused; the layer norms' rows held in registers (the default) or read in loops
    (VLA_EDGE_CUDA_VECTOR_NORMS=0); attention as the flash kernel (the default since 2026-12-07's seventh
    session: the tiny pack's head_dim 24, zero-padded to 32 in the kernel) or as batched products
    (VLA_EDGE_CUDA_VISION_ATTENTION=batched)."""
    more = {} if norms is None else {"VLA_EDGE_CUDA_VECTOR_NORMS": norms}
    if not flash:
        more["VLA_EDGE_CUDA_VISION_ATTENTION"] = "batched"
    loop = vision_policy(pack, True, VLA_EDGE_FUSE_VISION_QKV=fused, **more)
    graph = vision_policy(pack, False, VLA_EDGE_FUSE_VISION_QKV=fused)
    # fresh images each time, one image count
    matches_graph_and_reference(loop, graph, pack, ("wipe the table", "stack the blocks"), LOOP_VS_GRAPH, VS_REFERENCE)
    # the tiny pack's biases keep q/k/v separate even with the switch on (above): the note says which ran
    assert loop._backend.describe()["vision_loop"] == ("cuda (own kernels, 1 image counts captured; q/k/v separate" +
                                                       ("; attention flash" if flash else "") +
                                                       ("; vector norms" if norms is None else "") + ")")
    assert graph._backend.describe()["vision_loop"] == "ggml graph (VLA_EDGE_CUDA_VISION=0)"


def test_batch_equals_one_at_a_time(pack: Path, vision_policy, batch_matches_singles) -> None:
    """Every image attends to its own tokens only, and each lands in its own observation's prefix."""
    loop = vision_policy(pack, True)
    batch_matches_singles(loop, ("open the drawer", "put the spoon in the cup"), LOOP_VS_GRAPH)
    assert loop._backend.describe()["vision_loop"] == ("cuda (own kernels, 2 image counts captured; q/k/v separate; "
                                                       "attention flash; vector norms)")


def test_float32_matrices_keep_the_ggml_graph_and_say_why(tiny_pack_dir: Path, vision_policy) -> None:
    policy = vision_policy(tiny_pack_dir, True)
    policy.infer(random_observation(policy.pack, np.random.default_rng(), prompt="stop"))
    note = policy._backend.describe()["vision_loop"]
    assert note.startswith("ggml graph (") and "must be a BF16" in note, note
