"""x86 weight placement (cpu_weights): 'repacked' (ggml's interleaved layouts and their gemm
kernels), 'anonymous' (a private copy on huge-page-advised memory) and 'mapped' (the file mapping)
give the same chunk on fresh random inputs.

Tolerances (quantised tiny packs, whole action chunk, rel-L2):
- anonymous vs mapped: <= 1e-6 (the same bytes and kernels; only the memory differs).
- repacked vs mapped: <= 1e-3 (the same weights; the interleaved kernels sum in another order and
  round the activations to 8 bits with their own routine, 4 rows at a time, which can land one
  step apart on some values; through the random tiny model that is ~2e-4 rel-L2 on the chunk).
- each vs the NumPy reference on the same quantised weights: <= 1e-3 (test_quantize_packs.py).
Timings are never asserted here: benchmarks/vs_actquant.py and docs/bench.md hold the A/B.
"""

from __future__ import annotations

import numpy as np
import pytest

from vla_edge import TargetUnavailableError, load_policy
from vla_edge.packs.golden import random_observation
from vla_edge.packs.quantize import quantize_pack
from vla_edge.packs.writer import rel_l2

pytestmark = pytest.mark.native
native = pytest.importorskip("vla_edge._native")

RECIPES = ["q4_k_m", "q8_0", "actquant-3.97"]
MODES = ["mapped", "anonymous", "repacked"]


@pytest.fixture(scope="module")
def packs(tiny_pack_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("cpu_weights")
    return {r: quantize_pack(tiny_pack_dir, r, root / r) for r in RECIPES}


@pytest.mark.parametrize("recipe", RECIPES)
def test_weight_placements_give_the_same_chunk(packs, recipe):
    policies = {m: load_policy(packs[recipe], target="x86", threads=2, cpu_weights=m) for m in MODES}
    ref = load_policy(packs[recipe], target="reference")
    for mode, policy in policies.items():
        assert policy.info.backend["cpu_weights"] == mode
    # The default is the placement that measured fastest (docs/x86.md): mapped.
    assert load_policy(packs[recipe], target="x86", threads=2).info.backend["cpu_weights"] == "mapped"
    repacked = policies["repacked"].info.backend
    # The tiny packs' K-quant matrices have shapes ggml interleaves on AVX2 CPUs: the test must
    # exercise the repacked kernels there, not fall back to the stored layout everywhere. (ggml
    # 0.3.36 has interleaved Q8_0 kernels for ARM and RISC-V only: q8_0 checks that nothing breaks.)
    if recipe != "q8_0" and "AVX2" in native.system_info():
        assert repacked["repacked_tensors"] > 0 and repacked["repacked_bytes"] > 0
    assert policies["mapped"].info.backend["repacked_tensors"] == 0
    rng = np.random.default_rng()
    for _ in range(2):
        obs = random_observation(ref.pack, rng, prompt="put the red block in the bowl")
        noise = rng.standard_normal(ref.noise_shape).astype(np.float32)
        chunks = {m: p.infer(obs, noise=noise).actions for m, p in policies.items()}
        assert rel_l2(chunks["anonymous"], chunks["mapped"]) <= 1e-6
        err = rel_l2(chunks["repacked"], chunks["mapped"])
        assert err <= 1e-3, f"{recipe}: repacked vs mapped rel-L2 {err:.2e}"
        expected = ref.infer(obs, noise=noise).actions
        for mode, chunk in chunks.items():
            assert rel_l2(chunk, expected) <= 1e-3, f"{recipe}/{mode} vs reference"


def test_f32_pack_has_nothing_to_repack(tiny_pack_dir):
    """ggml has no interleaved layout for F32: 'repacked' then places every tensor as mapped."""
    policy = load_policy(tiny_pack_dir, target="x86", threads=1, cpu_weights="repacked")
    assert policy.info.backend["repacked_tensors"] == 0


@pytest.mark.parametrize("value", ["huge", "", "Repacked"])
def test_bad_cpu_weights_value_is_refused(tiny_pack_dir, value):
    with pytest.raises(TargetUnavailableError, match="cpu_weights must be 'mapped', 'anonymous' or 'repacked'"):
        load_policy(tiny_pack_dir, target="x86", threads=1, cpu_weights=value)


def test_bench_matmul_layouts():
    """The ceiling's two layouts: Q4_K has an interleaved layout on AVX2 CPUs (8-row groups), F32
    has none (-1, not a time); a bad layout name is a clear error."""
    assert native.bench_matmul("F32", 64, 256, 4, 1, 1, "repacked") == -1.0
    assert native.bench_matmul("Q4_K", 64, 256, 4, 1, 1, "stored") > 0
    if "AVX2" in native.system_info():
        assert native.bench_matmul("Q4_K", 64, 256, 4, 1, 1, "repacked") > 0
    with pytest.raises(ValueError, match="layout must be 'stored' or 'repacked'"):
        native.bench_matmul("Q4_K", 64, 256, 4, 1, 1, "interleaved")
