"""Our CUDA prefix and expert loops, each alone, at the full model's head_dim (256) on a pack otherwise as
small as the tiny one. Why: at head_dim 256 (and 128) the tile attention needs more than the 48 KB of
shared memory a block gets unasked, which each loop must allow for its own copy of the kernel; at the
tiny pack's head_dim 64 it fits unasked, so the other GPU tests cannot see a loop that forgot. On
2026-12-07 the prefix loop's launch failed so on the full pack while every tiny-pack test passed
(docs/gpu.md, "Compiling the CUDA sources without a GPU").

GPU machine only (skipped elsewhere). Tolerances as in the loops' own tests: 2e-3 against ggml's
graphs (same BF16 weights, F16 attention probabilities), 5e-3 against the reference.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from vla_edge.families.pi05.config import TINY
from vla_edge.families.pi05.synth import synth_pack
from vla_edge.packs.quantize import quantize_pack

pytestmark = pytest.mark.gpu
LOOP_VS_GRAPH = 2e-3
VS_REFERENCE = 5e-3


@pytest.fixture(scope="module")
def wide_head_pack(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny pack with head_dim 256 in the LLM and the expert, as F16 (which a GPU with BF16 tensor
    cores widens to the BF16 matrices the loops read)."""
    cfg = TINY.model_copy(update={"llm": TINY.llm.model_copy(update={"head_dim": 256}),
                                  "expert": TINY.expert.model_copy(update={"head_dim": 256})})
    root = tmp_path_factory.mktemp("head_dim_256")
    source = synth_pack(root / "f32", config=cfg, seed=3, golden=False)
    return quantize_pack(source, "f16", root / "f16")


# the prefix's opt-in 128-key form needs 182 KB of shared memory per block at head_dim 256 (an H100 / H200
# gives 227 KB; elsewhere the loop runs tile64w8 and its note says so: the check below is for Hopper)
# the flash form (the prefix's default; 99 KB at head_dim 256, which every device of compute capability
# 8.0+ allows) unsplit and split, and the eight-warp tile form (the default before); the expert's
# tile64w8 with RoPE in the attention (VLA_EDGE_CUDA_ROPE_IN_ATTENTION=1), and with the merge in its launch as well
@pytest.mark.parametrize("alone,more", [("prefix", {}), ("expert", {}),
                                        ("expert", {"VLA_EDGE_CUDA_ROPE_IN_ATTENTION": "1"}),
                                        ("expert", {"VLA_EDGE_CUDA_ROPE_IN_ATTENTION": "1", "VLA_EDGE_CUDA_MERGE_IN_ATTENTION": "1"}),
                                        ("prefix", {"VLA_EDGE_CUDA_PREFIX_ATTENTION": "tile128w8"}),
                                        ("prefix", {"VLA_EDGE_CUDA_PREFIX_ATTENTION": "tile64w8"}),
                                        ("prefix", {"VLA_EDGE_CUDA_FLASH_SPLITS": "1"}),
                                        ("prefix", {"VLA_EDGE_CUDA_FLASH_SPLITS": "3"})])
def test_one_loop_alone_equals_the_graphs_and_the_reference(wide_head_pack: Path, alone: str, more: dict[str, str],
                                                            cuda_policy, matches_graph_and_reference, hopper: bool) -> None:
    switches = {"VLA_EDGE_CUDA_PREFIX": "0" if alone == "expert" else "1",
                "VLA_EDGE_CUDA_EXPERT": "1" if alone == "expert" else "0", **more}
    loop = cuda_policy(wide_head_pack, **switches)
    graph = cuda_policy(wide_head_pack, VLA_EDGE_CUDA_PREFIX="0", VLA_EDGE_CUDA_EXPERT="0")
    matches_graph_and_reference(loop, graph, wide_head_pack, ("pick up the cube",), LOOP_VS_GRAPH, VS_REFERENCE)
    notes = loop._backend.describe()
    assert notes[f"{alone}_loop"].startswith("cuda (own kernels"), notes
    form = more.get("VLA_EDGE_CUDA_PREFIX_ATTENTION", "flash")
    if form == "tile128w8":
        assert f"; attention {'tile128w8' if hopper else 'tile64w8'}; " in notes["prefix_loop"], notes
    elif alone == "prefix":
        assert f"; attention {form}; " in notes["prefix_loop"], notes
    if alone == "expert":
        assert ("RoPE in the attention" in notes["expert_loop"]) == ("VLA_EDGE_CUDA_ROPE_IN_ATTENTION" in more), notes
        assert ("merge in the attention's launch" in notes["expert_loop"]) == ("VLA_EDGE_CUDA_MERGE_IN_ATTENTION" in more), notes
    other = "expert" if alone == "prefix" else "prefix"
    assert notes[f"{other}_loop"] == f"ggml graph (VLA_EDGE_CUDA_{other.upper()}=0)", notes


@pytest.fixture(scope="module")
def siglip_head_pack(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny pack with SigLIP's head_dim 72 in the vision tower (4 heads of 72), as F16."""
    cfg = TINY.model_copy(update={"vision": TINY.vision.model_copy(update={"hidden_size": 288})})
    assert cfg.vision.head_dim == 72
    root = tmp_path_factory.mktemp("vision_head_dim_72")
    source = synth_pack(root / "f32", config=cfg, seed=4, golden=False)
    return quantize_pack(source, "f16", root / "f16")


def test_vision_flash_attention_at_siglip_head_dim(siglip_head_pack: Path, cuda_policy, matches_graph_and_reference) -> None:
    """The vision tower's flash attention (its default) at head_dim 72: rows zero-padded to 80 in shared memory, nine
    of its ten output tiles stored (the tiny pack's 24 covers the padding too, at another width)."""
    loop = cuda_policy(siglip_head_pack, VLA_EDGE_CUDA_VISION="1")
    graph = cuda_policy(siglip_head_pack, VLA_EDGE_CUDA_VISION="0")
    matches_graph_and_reference(loop, graph, siglip_head_pack, ("pick up the cube",), LOOP_VS_GRAPH, VS_REFERENCE)
    assert "; attention flash" in loop._backend.describe()["vision_loop"]
