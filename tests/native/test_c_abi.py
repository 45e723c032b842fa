"""The C ABI as vendor software uses it: a C program compiled against vla_edge.h/libvla_edge,
run on a pack; its output equals the Python binding's; bad input fails cleanly; no leaks."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from native_paths import REPO, native_lib_dir

pytestmark = pytest.mark.native

PROBE = r"""
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "vla_edge.h"
/* Bad-input probe: each call must fail with a message and leave the process healthy. */
int main(int argc, char** argv) {
    vla_edge_options o; vla_edge_default_options(&o);
    o.n_threads = 0;
    if (vla_edge_create(argv[1], &o) != NULL) return 10;
    printf("threads: %s\n", vla_edge_last_error());
    o.n_threads = 1;
    if (vla_edge_create("/nonexistent/pack", &o) != NULL) return 11;
    printf("missing: %s\n", vla_edge_last_error());
    vla_edge_runtime* rt = vla_edge_create(argv[1], &o);
    if (!rt) { printf("create: %s\n", vla_edge_last_error()); return 12; }
    unsigned char* small = calloc(100 * 100 * 3, 1);
    vla_edge_image im = {small, 100, 100};
    int32_t tokens[3] = {2, 7, 9};
    int rc = vla_edge_infer(rt, &im, 1, tokens, 3, NULL, 1);
    printf("size rc=%d: %s\n", rc, vla_edge_last_error());
    float out[4];
    rc = vla_edge_read_chunk(rt, out, 4);
    printf("read rc=%d: %s\n", rc, vla_edge_last_error());
    free(small);
    vla_edge_destroy(rt);
    return 0;
}
"""


MATCH = r"""
#include <stdio.h>
#include <stdlib.h>
#include "vla_edge.h"
/* argv: pack image.bin noise.bin out.bin tokens... -- run one inference from files, write the chunk. */
static void* slurp(const char* path, size_t n) {
    void* buf = malloc(n); FILE* f = fopen(path, "rb");
    if (!f || fread(buf, 1, n, f) != n) { fprintf(stderr, "cannot read %s\n", path); exit(3); }
    fclose(f); return buf;
}
int main(int argc, char** argv) {
    vla_edge_options o; vla_edge_default_options(&o); o.n_threads = 2;
    vla_edge_runtime* rt = vla_edge_create(argv[1], &o);
    if (!rt) { fprintf(stderr, "%s\n", vla_edge_last_error()); return 1; }
    int s = vla_edge_image_size(rt), h, d; vla_edge_chunk_shape(rt, &h, &d);
    unsigned char* rgb = slurp(argv[2], (size_t)s * s * 3);
    float* noise = slurp(argv[3], sizeof(float) * h * d);
    int n = argc - 5; int32_t* tokens = malloc(sizeof(int32_t) * n);
    for (int i = 0; i < n; ++i) tokens[i] = atoi(argv[5 + i]);
    vla_edge_image im = {rgb, s, s};
    float* out = malloc(sizeof(float) * h * d);
    if (vla_edge_infer(rt, &im, 1, tokens, n, noise, 0) || vla_edge_read_chunk(rt, out, (size_t)h * d)) {
        fprintf(stderr, "%s\n", vla_edge_last_error()); return 2;
    }
    FILE* f = fopen(argv[4], "wb"); fwrite(out, sizeof(float), (size_t)h * d, f); fclose(f);
    free(out); free(tokens); free(noise); free(rgb); vla_edge_destroy(rt);
    return 0;
}
"""


def _compile(src: Path, out: Path) -> Path:
    lib, inc = native_lib_dir()
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        pytest.skip("no C compiler on PATH")
    subprocess.run([cc, "-O1", "-g", str(src), f"-I{inc}", f"-L{lib}", "-lvla_edge", f"-Wl,-rpath,{lib}", "-o",
                    str(out), "-lm"], check=True, capture_output=True, text=True)
    return out


@pytest.fixture(scope="module")
def example(tmp_path_factory) -> Path:
    return _compile(REPO / "examples" / "run_pack.c", tmp_path_factory.mktemp("cabi") / "run_pack")


@pytest.fixture(scope="module")
def probe(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("probe")
    (d / "probe.c").write_text(PROBE)
    return _compile(d / "probe.c", d / "probe")


def test_example_program_runs_a_pack(example, tiny_pack_dir):
    tokens = ["2", "17", "41", "300", "5"]
    out = subprocess.run([str(example), str(tiny_pack_dir), "2", *tokens], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.strip().splitlines()
    assert lines[0] == "chunk 10 x 32"
    printed = np.array([[float(v) for v in line.split()] for line in lines[1:4]])
    assert printed.shape == (3, 6) and np.all(np.isfinite(printed)) and np.abs(printed).max() > 0
    again = subprocess.run([str(example), str(tiny_pack_dir), "1", *tokens], capture_output=True, text=True,
                           timeout=120)
    assert again.stdout == out.stdout  # same seed -> same chunk, whatever the thread count


def test_c_abi_equals_the_python_binding(tiny_pack_dir, tmp_path):
    from vla_edge import _native

    (tmp_path / "match.c").write_text(MATCH)
    program = _compile(tmp_path / "match.c", tmp_path / "match")
    rng = np.random.default_rng()
    rgb = rng.integers(0, 256, (224, 224, 3), dtype=np.uint8)
    noise = rng.standard_normal((10, 32)).astype(np.float32)
    tokens = [2] + rng.integers(3, 512, 11).tolist()
    (tmp_path / "img.bin").write_bytes(rgb.tobytes())
    (tmp_path / "noise.bin").write_bytes(noise.tobytes())
    out = subprocess.run([str(program), str(tiny_pack_dir), str(tmp_path / "img.bin"), str(tmp_path / "noise.bin"),
                          str(tmp_path / "out.bin"), *map(str, tokens)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    c_chunk = np.fromfile(tmp_path / "out.bin", dtype=np.float32).reshape(10, 32)
    runtime = _native.Pi05Runtime(str(tiny_pack_dir / "pi05.gguf"), 2)
    image = (rgb.astype(np.float32) / 255.0 * 2.0 - 1.0)[None]
    py_chunk, _ = runtime.sample_actions(image, np.array(tokens, np.int32), noise, 10)
    np.testing.assert_allclose(c_chunk, py_chunk, rtol=1e-5, atol=1e-5)


def test_bad_input_through_the_c_abi(probe, tiny_pack_dir):
    out = subprocess.run([str(probe), str(tiny_pack_dir)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, (out.stdout, out.stderr)
    text = out.stdout
    assert "threads: n_threads must be >= 1, got 0" in text
    assert "missing: /nonexistent/pack: cannot open weights file" in text
    assert "size rc=-1: image 0 is 100x100, expected 224x224" in text
    assert "read rc=-1: no chunk yet" in text


@pytest.fixture(scope="module")
def asan_build(tmp_path_factory) -> Path:
    """libvla_edge built with AddressSanitizer + LeakSanitizer (valgrind cannot decode the AVX-512
    code ggml emits on this CPU, so the sanitizer is the memory checker here)."""
    import sys

    ggml = subprocess.run([sys.executable, str(REPO / "native" / "fetch_source.py"), "ggml"], capture_output=True, text=True)
    if ggml.returncode != 0:
        pytest.skip(f"ggml source unavailable: {ggml.stderr.strip()}")
    build = tmp_path_factory.mktemp("asan")
    cmake = shutil.which("cmake")
    if cmake is None:
        pytest.skip("cmake not installed")
    subprocess.run([cmake, "-S", str(REPO), "-B", str(build), f"-DVLA_EDGE_GGML_DIR={ggml.stdout.strip()}",
                    "-DVLA_EDGE_PYTHON=OFF", "-DVLA_EDGE_SANITIZE=address", "-DCMAKE_BUILD_TYPE=RelWithDebInfo"],
                   check=True, capture_output=True)
    subprocess.run([cmake, "--build", str(build), "-j", "2", "--target", "vla_edge", "vla_edge_example"],
                   check=True, capture_output=True)
    return build / "native"


def test_c_abi_has_no_leaks_or_memory_errors_under_asan(asan_build, tiny_pack_dir, tmp_path):
    cc = shutil.which("cc") or shutil.which("gcc")
    (tmp_path / "probe.c").write_text(PROBE)
    probe = tmp_path / "probe"
    subprocess.run([cc, "-g", "-fsanitize=address", str(tmp_path / "probe.c"), f"-I{REPO / 'native' / 'include'}",
                    f"-L{asan_build}", "-lvla_edge", f"-Wl,-rpath,{asan_build}", "-o", str(probe)], check=True)
    env = {"ASAN_OPTIONS": "detect_leaks=1:abort_on_error=0:exitcode=99", "PATH": "/usr/bin:/bin"}
    for program, args in ((probe, [str(tiny_pack_dir)]),
                          (asan_build / "vla_edge_example", [str(tiny_pack_dir), "1", "2", "9", "33"])):
        out = subprocess.run([str(program), *args], capture_output=True, text=True, timeout=600, env=env)
        assert out.returncode == 0, out.stderr[-4000:]
        assert "ERROR: AddressSanitizer" not in out.stderr and "ERROR: LeakSanitizer" not in out.stderr
