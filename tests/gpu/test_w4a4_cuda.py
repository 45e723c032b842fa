"""W4A4 CUDA kernels (native/cuda/w4a4.cu) against the reference oracle (targets/reference/w4a4.py)
on fresh random layers and activations. Needs an NVIDIA GPU, nvcc and torch with CUDA: skipped in
CI and on the development machines, run on the GPU machine (docs/importers.md says how).

Asserted: activation codes and dynamic scales bit-exact; integer segment sums bit-exact; the
float32 outputs within 2 ulp of the oracle's (both accumulate in float64, in different orders).
"""

from __future__ import annotations

import ctypes
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from vla_edge.packs.w4a4 import pack_nibbles
from vla_edge.targets.reference.w4a4 import integer_accumulators, per_token_scales, quantize, w4a4_matmul

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.gpu
if not torch.cuda.is_available() or shutil.which("nvcc") is None:
    pytest.skip("needs an NVIDIA GPU and nvcc (run on the GPU machine)", allow_module_level=True)

SOURCE = Path(__file__).resolve().parents[2] / "native" / "cuda" / "w4a4.cu"
P, I = ctypes.c_void_p, ctypes.c_int


@pytest.fixture(scope="module")
def lib(tmp_path_factory):
    so = tmp_path_factory.mktemp("w4a4") / "libvla_w4a4.so"
    subprocess.run(["nvcc", "-O2", "-arch=native", "-shared", "-Xcompiler", "-fPIC", str(SOURCE), "-o", str(so)],
                   check=True, capture_output=True, text=True)
    lib = ctypes.CDLL(str(so))
    lib.vla_w4a4_quantise_static.argtypes = [P, P, I, I, I, P]
    lib.vla_w4a4_quantise_dynamic.argtypes = [P, I, I, I, P, P]
    lib.vla_w4a4_product.argtypes = [P, P, I, P, P, I, I, I, I, I, P, P]
    return lib


def dev(a: np.ndarray):
    return torch.from_numpy(np.ascontiguousarray(a)).cuda()


def host(t) -> np.ndarray:
    return t.cpu().numpy()


def ulps(a: np.ndarray, b: np.ndarray) -> int:
    ia, ib = a.astype(np.float32).view(np.int32).astype(np.int64), b.astype(np.float32).view(np.int32).astype(np.int64)
    ia = np.where(ia < 0, -(ia & 0x7FFFFFFF), ia)  # order floats as integers
    ib = np.where(ib < 0, -(ib & 0x7FFFFFFF), ib)
    return int(np.abs(ia - ib).max())


def random_case(rng, T, K, N, G):
    codes = rng.integers(-8, 8, (N, K)).astype(np.int8)
    wscale = rng.uniform(0.001, 0.05, (N, K // G)).astype(np.float32)
    x = (rng.standard_normal((T, K)) * rng.uniform(0.1, 3.0)).astype(np.float32)
    return codes, wscale, x


@pytest.mark.parametrize("T, K, N, G", [(50, 1024, 256, 128), (7, 256, 96, 256), (1, 512, 33, 64)])
def test_static_per_channel_scales_as_omega_packs_use(lib, T, K, N, G):
    rng = np.random.default_rng()
    codes, wscale, x = random_case(rng, T, K, N, G)
    row = np.abs(x).max(axis=0) / np.float32(7) * rng.uniform(0.5, 1.5, K).astype(np.float32)  # some clipping
    q_ref = quantize(x, row[None, :], 1)
    q = torch.empty((T, K), dtype=torch.int8, device="cuda")
    xd, rd = dev(x), dev(row)
    assert lib.vla_w4a4_quantise_static(xd.data_ptr(), rd.data_ptr(), T, K, 1, q.data_ptr()) == 0
    np.testing.assert_array_equal(host(q), q_ref)
    y = torch.empty((T, N), dtype=torch.float32, device="cuda")
    packed = dev(pack_nibbles(codes))
    assert lib.vla_w4a4_product(q.data_ptr(), rd.data_ptr(), 1, packed.data_ptr(), dev(wscale).data_ptr(),
                                T, K, N, G, 1, y.data_ptr(), None) == 0
    expected = w4a4_matmul(q_ref, row[None, :], codes, wscale, G, 1).astype(np.float32)
    assert ulps(host(y), expected) <= 2


@pytest.mark.parametrize("T, K, N, G, A", [(50, 1024, 128, 128, 128), (9, 512, 64, 64, 32), (3, 256, 40, 32, 64)])
def test_dynamic_per_token_scales_and_exact_integer_sums(lib, T, K, N, G, A):
    rng = np.random.default_rng()
    codes, wscale, x = random_case(rng, T, K, N, G)
    scales_ref = per_token_scales(x, A)
    q_ref = quantize(x, scales_ref, A)
    scales = torch.empty((T, K // A), dtype=torch.float32, device="cuda")
    q = torch.empty((T, K), dtype=torch.int8, device="cuda")
    assert lib.vla_w4a4_quantise_dynamic(dev(x).data_ptr(), T, K, A, scales.data_ptr(), q.data_ptr()) == 0
    np.testing.assert_array_equal(host(scales), scales_ref)
    np.testing.assert_array_equal(host(q), q_ref)
    S = int(np.gcd(G, A))
    y = torch.empty((T, N), dtype=torch.float32, device="cuda")
    acc = torch.empty((T, N, K // S), dtype=torch.int32, device="cuda")
    assert lib.vla_w4a4_product(q.data_ptr(), scales.data_ptr(), T, dev(pack_nibbles(codes)).data_ptr(),
                                dev(wscale).data_ptr(), T, K, N, G, A, y.data_ptr(), acc.data_ptr()) == 0
    np.testing.assert_array_equal(host(acc), integer_accumulators(q_ref, codes, S))
    expected = w4a4_matmul(q_ref, scales_ref, codes, wscale, G, A).astype(np.float32)
    assert ulps(host(y), expected) <= 2


def test_bad_shapes_are_refused_before_launch(lib):
    assert lib.vla_w4a4_product(None, None, 1, None, None, 2, 100, 8, 64, 1, None, None) == -1000  # K % G
    assert lib.vla_w4a4_product(None, None, 3, None, None, 2, 128, 8, 64, 1, None, None) == -1001  # act rows
