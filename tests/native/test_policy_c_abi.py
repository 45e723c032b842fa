"""The Policy-level C ABI (vla_edge_policy.h) as vendor software uses it: examples/control_loop.cpp
compiled against the shipped library + headers only, run on the tiny pack with a camera image of
a non-model size, a state, a prompt and fixed noise. Its actions must equal Python's
`load_policy(pack, "x86").infer` on the same inputs (stated tolerance 1e-5 abs/rel: same C++
pre/post-processing, same ggml graph; float summation order may differ with the thread count)
and its 125 Hz safety-filter decisions (state, sent/held, driver stop, codes; commands to 1e-9)
must equal Python's SafetyFilter driving the same simulated arm. Bad inputs give the named
error codes and texts."""

from __future__ import annotations

import math
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from native_paths import REPO, native_lib_dir

pytestmark = pytest.mark.native

UR3_HOME = [0.0, -1.571, 1.571, -1.571, -1.571, 0.0]
PROMPT = "pick up the red block"


def _cxx() -> str:
    cxx = shutil.which("c++") or shutil.which("g++")
    if cxx is None:
        pytest.skip("no C++ compiler on PATH")
    return cxx


def _build(source: Path, out: Path, cxx: bool = True) -> Path:
    lib, inc = native_lib_dir()
    if not (inc / "vla_edge_policy.h").is_file():
        pytest.skip("vla_edge_policy.h not shipped: the native core was built without the policy I/O")
    compiler = _cxx() if cxx else (shutil.which("cc") or shutil.which("gcc"))
    std = ["-std=c++17"] if cxx else ["-std=c99"]
    out_ = subprocess.run([compiler, *std, "-O1", "-g", "-Wall", "-Wextra", "-Werror", str(source), f"-I{inc}",
                           f"-I{REPO / 'examples'}", f"-L{lib}", "-lvla_edge", "-lvla_edge_safety",
                           f"-Wl,-rpath,{lib}", "-o", str(out), "-lm"], capture_output=True, text=True)
    assert out_.returncode == 0, out_.stderr[-4000:]
    return out


@pytest.fixture(scope="module")
def control_loop(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("control_loop")
    return _build(REPO / "examples" / "control_loop.cpp", d / "control_loop")


def _write_inputs(tmp_path: Path, rng, noise_shape=(10, 32)) -> tuple[np.ndarray, np.ndarray, Path, Path, Path]:
    from vla_edge.robots.safety.export import filter_config_text
    from vla_edge.robots.config import load_robot_config

    image = rng.integers(0, 256, (int(rng.integers(150, 400)), int(rng.integers(300, 700)), 3), dtype=np.uint8)
    (tmp_path / "img.ppm").write_bytes(f"P6\n{image.shape[1]} {image.shape[0]}\n255\n".encode() + image.tobytes())
    noise = rng.standard_normal(noise_shape).astype(np.float32)
    noise.tofile(tmp_path / "noise.bin")
    (tmp_path / "ur3.filter").write_text(filter_config_text(load_robot_config("ur3")))
    return image, noise, tmp_path / "img.ppm", tmp_path / "noise.bin", tmp_path / "ur3.filter"


def _parse(stdout: str) -> tuple[np.ndarray, list[str], list[tuple]]:
    actions, stages, ticks = [], [], []
    for line in stdout.splitlines():
        f = line.split()
        if f[0] == "action":
            actions.append([float(v) for v in f[2:]])
        elif f[0] == "timing":
            stages.append(f[1])
        elif f[0] == "tick":
            dof = 6
            n = int(f[7 + dof])
            ticks.append((f[3], int(f[4]), int(f[5]), int(f[6]), [float(v) for v in f[7:7 + dof]],
                          tuple(f[8 + dof:8 + dof + n])))
    return np.array(actions, dtype=np.float32), stages, ticks


def _python_loop(actions: np.ndarray, period: float) -> list[tuple]:
    """The control loop of control_loop.cpp with Python's SafetyFilter (the same C++ core through
    vla_edge._safety) and the same simulated first-order arm."""
    import sys

    sys.path.insert(0, str(REPO / "tests" / "robots"))
    from safety_fakes import FakeClock, FakeRobot

    from vla_edge.robots.base import JointState
    from vla_edge.robots.config import load_robot_config
    from vla_edge.robots.safety import SafetyFilter

    config = load_robot_config("ur3")
    clock = FakeClock(0.0)
    robot = FakeRobot(config, np.array(UR3_HOME))
    filt = SafetyFilter(robot, config, shadow=False, clock=clock)
    dt = 1.0 / config.control_rate_hz
    follow = 1.0 - math.exp(-dt / 0.05)
    decisions = []
    for _ in range(math.ceil(len(actions) * period * config.control_rate_hz)):
        clock.advance(dt)
        now = clock.t
        row = min(len(actions) - 1, int(math.floor(now / period)))
        stops = robot.port.stops if robot.port else 0
        state = JointState(q=robot.q.copy(), qd=np.zeros(6), timestamp=now)
        r = filt.step(actions[row].astype(np.float64), now, state, velocity_scale=1.0)
        stop_driver = int((robot.port.stops if robot.port else 0) > stops)
        command = r.command if r.command is not None else np.zeros(6)
        decisions.append((r.state, int(r.sent), int(r.held), stop_driver, [float(c) for c in command], r.codes))
        if r.command is not None:
            robot.q = robot.q + (r.command - robot.q) * follow
        if stop_driver:
            break
    return decisions


@pytest.mark.parametrize("which", ["synthetic", "demo"])
def test_control_loop_matches_python_policy_and_filter(control_loop, tiny_pack_dir, tmp_path, which):
    """The C++ control loop against Python on a synthetic tiny pack and on the built-in demo pack
    (what README command 1 runs)."""
    from vla_edge import Observation, load_policy
    from vla_edge.packs.demo import resolve_pack

    if which == "demo":
        tiny_pack_dir = resolve_pack("demo")

    rng = np.random.default_rng()
    with load_policy(tiny_pack_dir, target="reference") as probe:
        noise_shape = probe.noise_shape
    image, noise, ppm, noise_file, filter_file = _write_inputs(tmp_path, rng, noise_shape)
    state = ",".join(repr(v) for v in UR3_HOME)
    out = subprocess.run([str(control_loop), str(tiny_pack_dir), str(filter_file), str(ppm), state, PROMPT,
                          str(noise_file)], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    c_actions, stages, c_ticks = _parse(out.stdout)
    assert stages[0] == "preprocess" and stages[-2:] == ["postprocess", "total"] and "vision" in stages

    with load_policy(tiny_pack_dir, target="x86", threads=2) as policy:
        chunk = policy.infer(Observation(cameras={"base": image}, state=np.array(UR3_HOME), prompt=PROMPT), noise=noise)
    assert c_actions.shape == chunk.actions.shape == (noise_shape[0], 6)
    assert np.abs(chunk.actions).max() > 0.05  # a real chunk, not zeros
    np.testing.assert_allclose(c_actions, chunk.actions, rtol=1e-5, atol=1e-5)

    py_ticks = _python_loop(c_actions, chunk.control_period_s)  # the filter's decisions on the same chunk
    assert len(c_ticks) == len(py_ticks) >= 60
    assert any(t[5] for t in c_ticks)  # the filter did intervene (velocity limits toward the chunk)
    for k, (c, p) in enumerate(zip(c_ticks, py_ticks)):
        assert c[:4] == p[:4] and c[5] == p[5], (k, c, p)
        np.testing.assert_allclose(c[4], p[4], rtol=0, atol=1e-9, err_msg=f"tick {k}")


PROBE = r"""
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "vla_edge_policy.h"
/* argv: good pack, corrupted pack, pack without the x86 target. Each bad call prints "<case> rc: last_error". */
static void report(const char* what, int rc) { printf("%s %d: %s\n", what, rc, vla_edge_policy_last_error()); }
int main(int argc, char** argv) {
    if (argc != 4) return 9;
    vla_edge_policy* p = NULL;
    vla_edge_policy_options o; vla_edge_policy_default_options(&o); o.n_threads = 1;
    report("missing", vla_edge_policy_open("/nonexistent/pack", &o, &p));
    report("corrupt", vla_edge_policy_open(argv[2], &o, &p));
    report("notlisted", vla_edge_policy_open(argv[3], &o, &p));
    o.target = "orin"; report("target", vla_edge_policy_open(argv[1], &o, &p)); o.target = "x86";
    o.check = "maybe"; report("check", vla_edge_policy_open(argv[1], &o, &p)); o.check = "sha256";
    int rc = vla_edge_policy_open(argv[1], &o, &p);
    if (rc) { report("open", rc); return 1; }
    vla_edge_policy_info info; vla_edge_policy_describe(p, &info);
    printf("info %s %d %d %d %d %s %s %s %d\n", info.name, info.horizon, info.action_dim, info.state_dim, info.n_cameras,
           vla_edge_policy_camera(p, 0), vla_edge_policy_camera_slot(p, 1), vla_edge_policy_action_unit(p, 5),
           vla_edge_policy_camera_required(p, 1));
    unsigned char* rgb = calloc(120 * 160 * 3, 1);
    for (int i = 0; i < 120 * 160 * 3; ++i) rgb[i] = (unsigned char)(i * 7);
    double state[6] = {0.1, -1.5, 1.5, -1.5, -1.5, 0.0};
    float actions[60]; for (int i = 0; i < 60; ++i) actions[i] = 12345.0f;
    vla_edge_camera_image good = {"base", rgb, 120, 160};
    vla_edge_camera_image flat = {"base", rgb, 0, 160};
    vla_edge_camera_image unknown[2] = {{"base", rgb, 120, 160}, {"front", rgb, 120, 160}};
    vla_edge_camera_image wrist = {"wrist", rgb, 120, 160};
    report("shape", vla_edge_policy_infer(p, &flat, 1, state, 6, "go", NULL, actions, 60, NULL, 0, NULL));
    report("unknown", vla_edge_policy_infer(p, unknown, 2, state, 6, "go", NULL, actions, 60, NULL, 0, NULL));
    report("required", vla_edge_policy_infer(p, &wrist, 1, state, 6, "go", NULL, actions, 60, NULL, 0, NULL));
    report("state", vla_edge_policy_infer(p, &good, 1, state, 5, "go", NULL, actions, 60, NULL, 0, NULL));
    state[2] = NAN;
    report("nan", vla_edge_policy_infer(p, &good, 1, state, 6, "go", NULL, actions, 60, NULL, 0, NULL));
    state[2] = 1.5;
    report("prompt", vla_edge_policy_infer(p, &good, 1, state, 6, "  ", NULL, actions, 60, NULL, 0, NULL));
    float noise[320]; for (int i = 0; i < 320; ++i) noise[i] = 0.5f; noise[7] = INFINITY;
    report("noise", vla_edge_policy_infer(p, &good, 1, state, 6, "go", noise, actions, 60, NULL, 0, NULL));
    report("capacity", vla_edge_policy_infer(p, &good, 1, state, 6, "go", NULL, actions, 59, NULL, 0, NULL));
    int untouched = 1; for (int i = 0; i < 60; ++i) untouched &= actions[i] == 12345.0f;
    printf("untouched %d\n", untouched);
    rc = vla_edge_policy_infer(p, &good, 1, state, 6, "go", NULL, actions, 60, NULL, 0, NULL);
    printf("ok %d %d\n", rc, isfinite(actions[59]) && actions[59] != 12345.0f);
    free(rgb);
    vla_edge_policy_close(p);
    return 0;
}
"""


def test_bad_inputs_get_named_error_codes(tiny_pack_dir, tiny_pack_copy, tmp_path):
    (tmp_path / "probe.c").write_text(PROBE)
    probe = _build(tmp_path / "probe.c", tmp_path / "probe", cxx=False)
    tok = tiny_pack_copy / "tokenizer.model"
    data = bytearray(tok.read_bytes())
    data[100] ^= 0xFF
    tok.write_bytes(bytes(data))
    reference_only = tmp_path / "reference_only"
    shutil.copytree(tiny_pack_dir, reference_only)
    manifest = reference_only / "pack.yaml"
    manifest.write_text(manifest.read_text().replace("targets:\n- reference\n- x86\n", "targets:\n- reference\n"))
    out = subprocess.run([str(probe), str(tiny_pack_dir), str(tiny_pack_copy), str(reference_only)],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, (out.stdout, out.stderr)
    lines = dict(line.split(" ", 1) for line in out.stdout.strip().splitlines())
    assert lines["missing"] == "-2: /nonexistent/pack: pack directory does not exist"
    assert lines["corrupt"].startswith(f"-2: {tok}: sha256 ") and "does not match pack.yaml" in lines["corrupt"]
    assert lines["notlisted"] == "-5: pack 'pi05-tiny-synthetic-seed0' does not list target 'x86' (it supports ['reference'])"
    assert lines["target"].startswith("-5: target 'orin' is not available through the C ABI")
    assert lines["check"].startswith("-1: check must be 'auto', 'sha256' or 'size'")
    assert lines["info"] == "pi05-tiny-synthetic-seed0 10 6 6 2 base left_wrist_0_rgb rad 0"
    assert lines["shape"].startswith("-4: observation field 'cameras.base': expected HxWx3 uint8 RGB array, got shape (0, 160, 3)")
    assert lines["unknown"].startswith("-4: observation field 'cameras.front': expected a camera the pack maps (one of ['base', 'wrist'])")
    assert lines["required"].startswith("-4: observation field 'cameras.base': expected a required camera image, got missing")
    assert lines["state"] == "-4: observation field 'state': expected length 6, got length 5"
    assert lines["nan"] == "-4: observation field 'state': expected finite values, got non-finite value nan at index 2"
    assert lines["prompt"].startswith("-4: observation field 'prompt': expected non-empty instruction text")
    assert lines["noise"] == "-4: observation field 'noise': expected finite float32 (10, 32), got non-finite value at index 7"
    assert lines["capacity"] == "-1: actions holds 59 floats, a chunk is 10 x 6 = 60"
    assert lines["untouched"] == "1"  # nothing written on error
    assert lines["ok"] == "0 1"


@pytest.mark.slow
def test_control_loop_builds_with_find_package_from_a_cmake_install(control_loop, tiny_pack_dir, tmp_path):
    """The whole vendor path: `cmake --install` of the native build (runtime + policy I/O +
    safety), examples/ configured as a consumer with find_package(vla_edge CONFIG), its
    control_loop run: the same output as the program built against the pip-shipped library."""
    import sys

    cmake = shutil.which("cmake")
    if cmake is None:
        pytest.skip("cmake not installed")
    build, prefix, consumer = tmp_path / "build", tmp_path / "prefix", tmp_path / "consumer"

    def run(*cmd):
        out = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=3000)
        assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
        return out

    run(cmake, "-S", REPO, "-B", build, "-DVLA_EDGE_PYTHON=OFF", "-DCMAKE_BUILD_TYPE=Release",
        f"-DPython3_EXECUTABLE={sys.executable}")
    run(cmake, "--build", build, "-j", "2", "--target", "vla_edge", "vla_edge_safety")
    run(cmake, "--install", build, "--prefix", prefix)
    assert (prefix / "include" / "vla_edge_policy.h").is_file()
    run(cmake, "-S", REPO / "examples", "-B", consumer, f"-DCMAKE_PREFIX_PATH={prefix}", "-DCMAKE_BUILD_TYPE=Release")
    run(cmake, "--build", consumer)
    _, _, ppm, noise_file, filter_file = _write_inputs(tmp_path, np.random.default_rng())
    args = [str(tiny_pack_dir), str(filter_file), str(ppm), ",".join(map(repr, UR3_HOME)), PROMPT, str(noise_file)]
    installed = run(consumer / "control_loop", *args).stdout
    shipped = run(control_loop, *args).stdout
    assert "tick 0 " in installed
    strip = [line for line in installed.splitlines() if not line.startswith("timing")]
    assert strip == [line for line in shipped.splitlines() if not line.startswith("timing")]
