"""The stream product's CUDA kernel (native/cuda/stream_product.cuh) compiled as host C++ and run on the
CPU through tests/native/cuda_emulation.h (one thread per CUDA thread, warp-wide ldmatrix / mma.sync
laid out as the PTX ISA says), against a float64 reference on fresh random inputs: the plain product
(rows past a tile, 1-4 input-value splits added in split order by the tile's last block, two token
blocks, accumulating into rows ldy apart, a pipeline that wraps around its six stages) and the paired
forms (GeGLU in BF16, RoPE of q/k with the K/V cache writes in F16), and every tile's counter back at
zero after a split launch. Why here: the GPU machine is lent ~30 minutes a session and at times not
at all; this catches indexing errors before device time is spent. What it cannot check: the timing of
cp.async (copied at once here) and whether the chip lays fragments out as this reading of the ISA
does (the GPU tests do: tests/gpu/test_cuda_expert_loop.py with VLA_EDGE_CUDA_STREAM_PRODUCTS=only).

Bounds (rel-L2): plain 1e-5 (float32 sums of the same BF16 products, in another order than float64's:
~1e-7 measured); GeGLU 4e-3 (BF16 output, 2^-9 relative rounding: ~1.7e-3 measured); RoPE 2e-3 (F16
output and float32 angles: ~2e-4 measured)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def emulated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    compiler = shutil.which("c++") or shutil.which("g++")
    if compiler is None:
        pytest.skip("no C++ compiler on this machine")
    exe = tmp_path_factory.mktemp("stream_product") / "emulated"
    subprocess.run([compiler, "-std=c++20", "-O2", "-pthread", "-Wall", "-Werror", "-Wno-unknown-pragmas",
                    f"-I{REPO / 'tests' / 'native'}", f"-I{REPO / 'native' / 'cuda'}",
                    str(REPO / "tests" / "native" / "stream_product_emulated.cpp"), "-o", str(exe)], check=True)
    return exe


def test_every_form_matches_float64_on_fresh_random_inputs(emulated: Path) -> None:
    seed = int(np.random.default_rng().integers(1 << 31))
    done = subprocess.run([str(emulated), str(seed)], capture_output=True, text=True, timeout=300)
    lines = done.stdout.splitlines()
    assert done.returncode == 0, f"seed {seed}:\n{done.stdout}{done.stderr}"
    assert lines[-1] == "all cases within their bounds", done.stdout
    cases = [line for line in lines[:-1] if line.endswith(" ok")]
    # five plain products, two GeGLU, two RoPE: each named with its split count
    assert len(cases) == 9 and len(lines) == 10, done.stdout
    assert sum("plain" in c for c in cases) == 5 and sum("geglu" in c for c in cases) == 2, done.stdout
    assert sum("rope" in c for c in cases) == 2 and any("(3 splits of 2)" in c for c in cases), done.stdout
