"""Our own CUDA expert loop (native/cuda/expert_loop.cu) against ggml's graph of the same flow steps and
against the `reference` target, on fresh random observations of the tiny pack's F16 and q4_k_m twins
(the loop reads BF16 matrices: GPUs with BF16 tensor cores widen F16 and quantised ones to BF16, while
the tiny pack's own F32 matrices stay F32, and there ggml's graph runs and says why).

Needs the native core built with -DVLA_EDGE_CUDA=ON and a GPU of compute capability >= 8.0: skipped
elsewhere, run on the GPU machine (benchmarks/gpu_vs_realtime_vla.sh runs it before it times anything).

Tolerances (rel-L2 of the action chunk): loop vs ggml graph 2e-3, since both read the same BF16 weights,
folded gates and modulation and differ in the attention kernel (F16 probabilities) and in summation
order; loop vs reference 5e-3, the forms check's bound for every GPU form.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from vla_edge.packs.golden import random_observation
from vla_edge.packs.writer import rel_l2

pytestmark = pytest.mark.gpu
LOOP_VS_GRAPH = 2e-3
VS_REFERENCE = 5e-3


@pytest.fixture
def expert_policy(cuda_policy):
    """make(pack, loop): our own expert loop (True) or ggml's graph of the same steps (False)."""
    return lambda pack_dir, loop: cuda_policy(pack_dir, VLA_EDGE_CUDA_EXPERT="1" if loop else "0")


def test_loop_equals_the_ggml_graph_and_the_reference(pack: Path, expert_policy, matches_graph_and_reference) -> None:
    loop, graph = expert_policy(pack, True), expert_policy(pack, False)
    # two prompts of different lengths: two shapes, each captured once
    prompts = ("pick up the red cube", "put the cup on the plate and then go back to the start")
    matches_graph_and_reference(loop, graph, pack, prompts, LOOP_VS_GRAPH, VS_REFERENCE)
    note = loop._backend.describe()["expert_loop"]
    assert note.startswith("cuda (own kernels, 2 shapes captured; attention tile64w8; merge 2 warps per row; "), note
    assert "product shapes timed cold" in note and note.endswith("; vector norms)"), note
    assert graph._backend.describe()["expert_loop"] == "ggml graph (VLA_EDGE_CUDA_EXPERT=0)"


@pytest.mark.parametrize("switches", [{"VLA_EDGE_CUDA_ATTENTION": "split128"}, {"VLA_EDGE_CUDA_ATTENTION": "tile32"},
                                      {"VLA_EDGE_CUDA_ATTENTION": "tile64"}, {"VLA_EDGE_CUDA_MERGE_WARPS": "1"},
                                      {"VLA_EDGE_CUDA_TUNE_COLD": "0"}, {"VLA_EDGE_CUDA_VECTOR_NORMS": "0"},
                                      {"VLA_EDGE_CUDA_TUNED_PRODUCTS": "0"}, {"VLA_EDGE_CUDA_PDL": "1"},
                                      {"VLA_EDGE_CUDA_ATTENTION": "flash"},
                                      {"VLA_EDGE_CUDA_STREAM_PRODUCTS": "only"}, {"VLA_EDGE_CUDA_STREAM_PRODUCTS": "1"},
                                      {"VLA_EDGE_CUDA_STREAM_PRODUCTS": "only", "VLA_EDGE_CUDA_STREAM_FUSED": "0"},
                                      {"VLA_EDGE_CUDA_STREAM_PRODUCTS": "only", "VLA_EDGE_CUDA_PDL": "1"},
                                      {"VLA_EDGE_CUDA_ATTENTION": "flash", "VLA_EDGE_CUDA_FLASH_SPLITS": "1"},
                                      {"VLA_EDGE_CUDA_ATTENTION": "split128", "VLA_EDGE_CUDA_TUNED_PRODUCTS": "0"},
                                      {"VLA_EDGE_CUDA_ATTENTION": "tile64", "VLA_EDGE_CUDA_MERGE_WARPS": "1",
                                       "VLA_EDGE_CUDA_TUNE_COLD": "0", "VLA_EDGE_CUDA_VECTOR_NORMS": "0"},
                                      {"VLA_EDGE_CUDA_ROPE_IN_ATTENTION": "1"},
                                      {"VLA_EDGE_CUDA_ROPE_IN_ATTENTION": "1", "VLA_EDGE_CUDA_ATTENTION": "tile64"},
                                      {"VLA_EDGE_CUDA_ROPE_IN_ATTENTION": "1", "VLA_EDGE_CUDA_STREAM_PRODUCTS": "only"},
                                      {"VLA_EDGE_CUDA_MERGE_IN_ATTENTION": "1"},
                                      {"VLA_EDGE_CUDA_MERGE_IN_ATTENTION": "1", "VLA_EDGE_CUDA_ROPE_IN_ATTENTION": "1"},
                                      {"VLA_EDGE_CUDA_MERGE_IN_ATTENTION": "1", "VLA_EDGE_CUDA_ATTENTION": "tile32"}])
def test_each_other_form_equals_the_graph(pack: Path, switches: dict[str, str], expert_policy, hopper: bool,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """The forms the A/B switches select (128-key split, 32-key or four-warp 64-key tile attention, the flash
    kernel split as its plan says and unsplit, the merge with one warp per row, products timed hot or cuBLAS's
    default products, our stream product for every product (checked against cuBLAS in the race first, so
    a wrong one would show as "rejected" here; RoPE and the cache writes in its q/k/v product and GeGLU in
    its gate/up product, or apart; with programmatic
    launches, its weights requested before the wait) or raced beside cuBLAS's, the norms' rows read in loops,
    programmatic dependent launches, and the default before 2026-12-07's fifth session: the last set), which
    the prefix loop takes too, are exact as well; so are RoPE in the attention's tile kernel, which only
    tile64w8 has (tile64 runs the rope kernel) and which the stream product's RoPE in its q/k/v product
    leaves nothing to do, and the merge in the tile kernel's own launch (tile64w8 only; tile32 keeps the
    merge kernel), alone and with RoPE in the attention."""
    for name, value in switches.items():
        monkeypatch.setenv(name, value)
    loop, graph = expert_policy(pack, True), expert_policy(pack, False)
    rng = np.random.default_rng()
    obs = random_observation(loop.pack, rng, prompt="fold the towel in half and put it in the basket")
    noise = rng.standard_normal(loop.noise_shape).astype(np.float32)
    assert rel_l2(loop.infer(obs, noise=noise).actions, graph.infer(obs, noise=noise).actions) <= LOOP_VS_GRAPH
    note = loop._backend.describe()["expert_loop"]
    assert f"attention {switches.get('VLA_EDGE_CUDA_ATTENTION', 'tile64w8')};" in note, note
    # the tiny pack's output and down products have one shape: 3 shapes timed there, 4 on the full pack
    assert ("product shapes timed" in note) == (switches.get("VLA_EDGE_CUDA_TUNED_PRODUCTS") != "0"), note
    if "product shapes timed" in note:
        assert ("timed cold" in note) == (switches.get("VLA_EDGE_CUDA_TUNE_COLD") != "0"), note
        assert "rejected" not in note, note
        # raced beside cuBLAS's ("1"), the races decide which shapes take the stream product
        stream = switches.get("VLA_EDGE_CUDA_STREAM_PRODUCTS")
        if stream == "only":  # the tiny pack's three shapes all take it (strides of 128 and 256 values, 50 tokens)
            assert "3 stream" in note, note
        elif stream is None:  # left out of the races
            assert " stream" not in note, note
        if stream != "1":
            fused = stream == "only" and switches.get("VLA_EDGE_CUDA_STREAM_FUSED") != "0"
            assert ("RoPE and GeGLU in the products" in note) == fused, note
    merge = "" if switches.get("VLA_EDGE_CUDA_ATTENTION") == "split128" else switches.get("VLA_EDGE_CUDA_MERGE_WARPS", "2")
    assert (f"merge {merge} warp{'s' if merge == '2' else ''} per row;" in note) == bool(merge), note
    assert ("vector norms" in note) == (switches.get("VLA_EDGE_CUDA_VECTOR_NORMS") != "0"), note
    # programmatic launches need compute capability 9.0 (the GPU machine's H100 / H200)
    assert ("programmatic launches" in note) == ("VLA_EDGE_CUDA_PDL" in switches and hopper), note
    rope_in = (switches.get("VLA_EDGE_CUDA_ROPE_IN_ATTENTION") == "1" and "VLA_EDGE_CUDA_ATTENTION" not in switches
               and switches.get("VLA_EDGE_CUDA_STREAM_PRODUCTS") != "only")
    assert ("RoPE in the attention" in note) == rope_in, note
    # the merge in the tile kernel's own (cooperative) launch: tile64w8 only, every GPU of ours launches cooperatively
    merge_in = switches.get("VLA_EDGE_CUDA_MERGE_IN_ATTENTION") == "1" and "VLA_EDGE_CUDA_ATTENTION" not in switches
    assert ("merge in the attention's launch" in note) == merge_in, note


def test_rope_and_merge_in_the_attention_batch_equals_one_at_a_time(pack: Path, expert_policy, batch_matches_singles,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """Each observation's own keys are the last `horizon` of its range: a batch of different prefix lengths
    puts them at different places, and q and k rotate at each token's own positions; the merge in the
    launch takes every observation's rows, each with its own number of splits."""
    monkeypatch.setenv("VLA_EDGE_CUDA_ROPE_IN_ATTENTION", "1")
    monkeypatch.setenv("VLA_EDGE_CUDA_MERGE_IN_ATTENTION", "1")
    loop = expert_policy(pack, True)
    batch_matches_singles(loop, ("open the drawer", "stack the blocks, the blue one on top of the green one"), LOOP_VS_GRAPH)
    note = loop._backend.describe()["expert_loop"]
    assert "RoPE in the attention" in note and "merge in the attention's launch" in note, note


def test_batch_of_different_prefixes_equals_one_at_a_time(pack: Path, expert_policy, batch_matches_singles) -> None:
    loop = expert_policy(pack, True)
    batch_matches_singles(loop, ("open the drawer", "stack the blocks, the blue one on top of the green one"), LOOP_VS_GRAPH)
    assert loop._backend.describe()["expert_loop"].startswith("cuda (own kernels")


def test_float32_matrices_keep_the_ggml_graph_and_say_why(tiny_pack_dir: Path, expert_policy) -> None:
    policy = expert_policy(tiny_pack_dir, True)
    policy.infer(random_observation(policy.pack, np.random.default_rng(), prompt="stop"))
    note = policy._backend.describe()["expert_loop"]
    assert note.startswith("ggml graph (") and "must be a BF16" in note
