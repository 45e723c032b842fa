"""Our tensor-core CUDA kernels compiled as host C++ and run on the CPU through
tests/native/cuda_emulation.h (one thread per CUDA thread, warp-wide ldmatrix / mma.sync laid out as
the PTX ISA says), each against a float64 reference on fresh random inputs.

The stream product (native/cuda/stream_product.cuh): the plain product
(rows past a tile, 1-4 input-value splits added in split order by the tile's last block, two token
blocks, accumulating into rows ldy apart, a pipeline that wraps around its six stages) and the paired
forms (GeGLU in BF16, RoPE of q/k with the K/V cache writes in F16), each with four warps per block
and with eight, and every tile's counter back at zero after a split launch. Why here: the GPU machine is lent ~30 minutes a session and at times not
at all; this catches indexing errors before device time is spent. What it cannot check: the timing of
cp.async (copied at once here) and whether the chip lays fragments out as this reading of the ISA
does (the GPU tests do: tests/gpu/test_cuda_expert_loop.py with VLA_EDGE_CUDA_STREAM_PRODUCTS=only).
Bounds (rel-L2): plain 1e-5 (float32 sums of the same BF16 products, in another order than float64's:
~1e-7 measured); GeGLU 4e-3 (BF16 output, 2^-9 relative rounding: ~1.7e-3 measured); RoPE 2e-3 (F16
output and float32 angles: ~2e-4 measured).

The flash attention (native/cuda/flash_attention_kernel.cuh) at head_dim 64 / 256 (two warps per tile)
and 72 / 24 (one, zero-padded), one split (BF16 out) and several (partials merged here), the prefix's
and the vision towers' layouts. It measured 1.68e-3 from float64 on an H100, and ~1.65e-3 here: the
same kernel matching the chip's result checks the emulation's fragment layouts (ldmatrix plain and
transposed, mma.sync) that the stream product's test relies on. Bound 5e-3 (F16 weights, BF16 out).

The loops' default attention (native/cuda/attention_tile_kernel.cuh: the tile kernel over key splits and
the merge of the splits into BF16 rows; WMMA emulated with whole tiles per lane): tile64w8, tile64 and
tile32 at head_dim 64 / 128 / 256, the merge with one and two warps per row, which must give the same bits
in every form (one warp per row, two with its loop over the splits, two with all loads first where there
are at most 16 splits; 19 splits take the loop), also where an observation has fewer splits than the
batch; tile64w8 also with the merge in the same launch (TileMerge: a grid barrier, then every block's share
of the rows; the emulation runs a cooperative launch's blocks at once), which must give the same bits and
leave the barrier's two words ready for the next launch. Same bound. Its RoPE-in form
(tile64w8 rotating q and the chunk's own k from the q/k/v product's float32 rows) must give the same bits
as the path it replaces (rope_cache_kernel, then the plain kernel) with the chunk's cache rows it must not
read set to NaN, and stay within the bound of float64 RoPE + attention: the chunk's keys across a split's
end, starting a split, and sharing one with the prefix's."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]


def emulated(name: str, tmp_path: Path) -> list[str]:
    """Builds tests/native/NAME.cpp against the emulation and runs it with a fresh seed: its lines."""
    compiler = shutil.which("c++") or shutil.which("g++")
    if compiler is None:
        pytest.skip("no C++ compiler on this machine")
    exe = tmp_path / name
    # CUDA code reads memory through other types (16-byte and paired stores): no strict aliasing here
    subprocess.run([compiler, "-std=c++20", "-O2", "-pthread", "-fno-strict-aliasing", "-Wall", "-Werror",
                    "-Wno-unknown-pragmas", f"-I{REPO / 'tests' / 'native'}", f"-I{REPO / 'native' / 'cuda'}",
                    str(REPO / "tests" / "native" / f"{name}.cpp"), "-o", str(exe)], check=True)
    seed = int(np.random.default_rng().integers(1 << 31))
    done = subprocess.run([str(exe), str(seed)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"seed {seed}:\n{done.stdout}{done.stderr}"
    lines = done.stdout.splitlines()
    assert lines[-1] == "all cases within their bounds", done.stdout
    return lines


def test_stream_product_matches_float64_in_every_form(tmp_path: Path) -> None:
    lines = emulated("stream_product_emulated", tmp_path)
    done = "\n".join(lines)
    cases = [line for line in lines[:-1] if line.endswith(" ok")]
    # five plain products, two GeGLU, two RoPE and one with its blocks shuffled, each with four warps and with
    # eight: named with its split count
    assert len(cases) == 20 and len(lines) == 23, done
    shuffled = [line for line in lines if "blocks shuffled" in line]
    assert len(shuffled) == 2 and all(line.endswith(": same bits") for line in shuffled), done
    assert sum("plain" in c for c in cases) == 10 and sum("geglu" in c for c in cases) == 4, done
    assert sum("rope" in c for c in cases) == 4 and sum(", 8 warps)" in c for c in cases) == 9, done
    assert any("(3 splits of 2)" in c for c in cases), done


def test_flash_attention_matches_float64_in_both_layouts(tmp_path: Path) -> None:
    lines = emulated("flash_attention_emulated", tmp_path)
    cases = [line for line in lines[:-1] if line.endswith(" ok")]
    # head dims 64 (one split and three), 256 (two), 72 and 24 (the vision towers')
    assert len(cases) == 5 and len(lines) == 6, "\n".join(lines)
    for head_dim in (64, 256, 72, 24):
        assert any(line.startswith(f"flash D {head_dim:3d}") for line in cases), "\n".join(lines)
    assert any("3 split(s)" in line for line in cases) and any("1 split(s)" in line for line in cases), "\n".join(lines)


def test_attention_tile_and_merge_match_float64(tmp_path: Path) -> None:
    lines = emulated("attention_tile_emulated", tmp_path)
    cases = [line for line in lines[:-1] if line.endswith(" ok")]
    assert len(cases) == 9 and len(lines) == 10, "\n".join(lines)
    rope_in = [line for line in cases if line.startswith("tile RoPE-in")]
    assert len(rope_in) == 3 and all("same bits as the rope kernel's path" in line for line in rope_in), "\n".join(lines)
    assert all("same bits from every merge" in line for line in cases if line not in rope_in), "\n".join(lines)
    # tile64w8 (and its RoPE-in form) also with the merge in its own cooperative launch, after a grid barrier
    assert sum(", the merge in its launch too" in line for line in cases) == 3, "\n".join(lines)
    assert all("(and with the merge in its launch)" in line for line in rope_in), "\n".join(lines)
    assert any("splits x 19" in line for line in cases), "\n".join(lines)  # the two-warp merge's loop, past 16 splits
    for head_dim in (64, 128, 256):
        assert any(line.startswith(f"tile D {head_dim:3d}") for line in cases), "\n".join(lines)
    assert any("2 warp(s) per tile" in line for line in cases) and any("1 warp(s) per tile" in line for line in cases)
    assert any("merge 1 warp(s)" in line for line in cases) and any("merge 2 warp(s)" in line for line in cases)
