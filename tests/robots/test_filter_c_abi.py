"""The safety filter from C, as vendor software uses it: `cmake --install` into a temporary prefix,
then examples/filter_replay.c built by a consumer project with find_package(vla_edge CONFIG) and
by a plain compiler with pkg-config. The same random tick streams (thousands of ticks: targets
anywhere in the hardware range, NaN/Inf/1e30, missing/stale/future times, missing/stale/NaN
state, pushed arms, velocity_scale drops, resumes, watchdog checks, stops, an e-stop) go through that program and through Python's
SafetyFilter; every tick's state, sent/held flags, driver stop, command (bit for bit) and
intervention codes must be identical."""

from __future__ import annotations

import os
import shutil
import subprocess
import zlib
from pathlib import Path

import numpy as np
import pytest
from safety_fakes import FakeClock, FakeRobot

from vla_edge.robots.config import load_robot_config
from vla_edge.robots.safety import SafetyError, SafetyFilter
from vla_edge.robots.safety.export import filter_config_text

REPO = Path(__file__).resolve().parents[2]
CMAKE, CC, PKG_CONFIG = shutil.which("cmake"), shutil.which("cc") or shutil.which("gcc"), shutil.which("pkg-config")
pytestmark = pytest.mark.skipif(not (CMAKE and CC and PKG_CONFIG), reason="needs cmake, a C compiler and pkg-config")

HOME = {
    "ur3": np.array([0.0, -1.571, 1.571, -1.571, -1.571, 0.0]),
    "arx5": np.array([0.0, 0.6, 0.6, 0.0, 0.0, 0.0, 0.03]),
    "arx5-bimanual": np.array([0.0, 0.6, 0.6, 0.0, 0.0, 0.0, 0.03] * 2),
}
CONSUMER_CMAKE = """cmake_minimum_required(VERSION 3.20)
project(filter_consumer C)
find_package(vla_edge 0.1 CONFIG REQUIRED)
add_executable(filter_replay filter_replay.c)
target_compile_options(filter_replay PRIVATE -Wall -Wextra -Werror)
target_link_libraries(filter_replay PRIVATE vla_edge::safety m)
"""


def _run(cmd: list, **kw) -> subprocess.CompletedProcess:
    out = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, **kw)
    assert out.returncode == 0, f"{' '.join(map(str, cmd))}\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}"
    return out


@pytest.fixture(scope="module")
def prefix(tmp_path_factory) -> Path:
    """The safety filter library installed by `cmake --install` (no ggml, no Python module)."""
    root = tmp_path_factory.mktemp("vla_edge_install")
    build, prefix = root / "build", root / "prefix"
    _run([CMAKE, "-S", REPO, "-B", build, "-DVLA_EDGE_RUNTIME=OFF", "-DVLA_EDGE_POLICY_IO=OFF", "-DVLA_EDGE_PYTHON=OFF",
          "-DCMAKE_BUILD_TYPE=Release"])
    _run([CMAKE, "--build", build, "-j", "2"])
    _run([CMAKE, "--install", build, "--prefix", prefix])
    return prefix


@pytest.fixture(scope="module")
def replay(prefix, tmp_path_factory) -> dict[str, Path]:
    """filter_replay built against the installed package, once per discovery mechanism."""
    root = tmp_path_factory.mktemp("consumer")
    src = root / "src"
    src.mkdir()
    for name in ("filter_replay.c", "filter_config.h"):
        shutil.copy(REPO / "examples" / name, src / name)
    (src / "CMakeLists.txt").write_text(CONSUMER_CMAKE)
    _run([CMAKE, "-S", src, "-B", root / "build", f"-DCMAKE_PREFIX_PATH={prefix}", "-DCMAKE_BUILD_TYPE=Release"])
    _run([CMAKE, "--build", root / "build"])
    pc_dir = next(prefix.glob("lib*/pkgconfig"))
    env = {**os.environ, "PKG_CONFIG_PATH": str(pc_dir)}
    flags = _run([PKG_CONFIG, "--cflags", "--libs", "vla_edge_safety"], env=env).stdout.split()
    libdir = next(f[2:] for f in flags if f.startswith("-L"))
    binary = root / "replay_pkgconfig"
    _run([CC, "-std=c99", "-O2", "-Wall", "-Wextra", "-Werror", src / "filter_replay.c", *flags, f"-Wl,-rpath,{libdir}",
          "-lm", "-o", binary])
    return {"find_package": root / "build" / "filter_replay", "pkg-config": binary}


def test_install_tree_has_headers_libraries_and_package_files(prefix):
    libdir = next(prefix.glob("lib*/libvla_edge_safety.so")).parent
    assert (prefix / "include" / "vla_edge_safety.h").is_file()
    assert (libdir / "cmake" / "vla_edge" / "vla_edgeConfig.cmake").is_file()
    assert (libdir / "cmake" / "vla_edge" / "vla_edgeConfigVersion.cmake").is_file()
    env = {**os.environ, "PKG_CONFIG_PATH": str(libdir / "pkgconfig")}
    inc = _run([PKG_CONFIG, "--variable=includedir", "vla_edge_safety"], env=env).stdout.strip()
    assert Path(inc).resolve() == (prefix / "include").resolve()  # relocatable: follows --prefix
    assert "-lvla_edge_safety" in _run([PKG_CONFIG, "--libs", "vla_edge_safety"], env=env).stdout


def _fmt(values) -> str:
    return " ".join(repr(float(v)) for v in values)


def _record(config, n_ticks: int, seed: int) -> tuple[list[str], list[tuple]]:
    """Run Python's filter on a random stream; return the stream as replay lines and every decision."""
    rng = np.random.default_rng(seed)
    clock = FakeClock()
    robot = FakeRobot(config, HOME[config.name])
    filt = SafetyFilter(robot, config, shadow=False, clock=clock)
    lim, dof, dt = filt.limits, config.dof, config.control_period_s
    goal = robot.q.copy()
    scale = 1.0
    lines: list[str] = []
    expected: list[tuple] = []
    for k in range(n_ticks):
        clock.advance(dt)
        now = clock.t
        extra = rng.random()
        if extra < 0.01:  # a timer thread's watchdog check, sometimes after a long silence
            when = now + float(rng.choice([0.0, 0.5, 3.0])) * lim.stale_after_s
            stops_before = robot.port.stops
            tripped = filt.check_watchdog(when)
            assert tripped == (robot.port.stops > stops_before)
            lines.append(f"W {when!r}")
            expected.append(("W", int(tripped)))
        elif extra < 0.013:
            stops_before = robot.port.stops
            filt.stop()
            lines.append("T")
            expected.append(("T", int(robot.port.stops > stops_before)))
        if k == n_ticks - 100:  # latched for the rest of the stream
            filt.emergency_stop()
            lines.append("E")
            expected.append(("E", 0))
        if filt.state in ("stopped", "estopped") and rng.random() < 0.2:
            state = robot.read_state(now)
            try:
                filt.resume(state)
                rc = 0
            except SafetyError:
                rc = -4
            lines.append(f"R {now!r} {now!r} {_fmt(state.q)}")
            expected.append(("R", rc))
        draw = rng.random()
        if draw < 0.04:
            goal = rng.uniform(lim.hardware_min, lim.hardware_max)  # anywhere: clamps, limits, workspace
        elif draw < 0.06:  # one DOF to an end of the hardware range: beyond the operating range
            goal = robot.q.copy()
            i = rng.integers(dof)
            goal[i] = lim.hardware_max[i] if rng.random() < 0.5 else lim.hardware_min[i]
        elif draw < 0.14:
            goal = robot.q + rng.normal(0.0, 0.05, dof)
        if rng.random() < 0.03:
            scale = float(rng.choice([1.0, 0.5, 0.1, rng.uniform(0.0, 1.0), 0.0, np.nan, 2.0]))
        target, t_time = goal.copy(), now
        fault = rng.random()
        if fault < 0.01:
            target[rng.integers(dof)] = rng.choice([np.nan, np.inf, 1e30, -1e30])
        elif fault < 0.02:
            target = None
        elif fault < 0.025:
            t_time = now - 3 * lim.stale_after_s
        elif fault < 0.03:
            t_time = now + 3 * lim.stale_after_s
        elif fault < 0.035:
            t_time = None
        state = robot.read_state(now)
        s_fault = rng.random()
        if s_fault < 0.005:
            state = None
        elif s_fault < 0.01:
            state = robot.read_state(now - 3 * lim.stale_after_s)
        elif s_fault < 0.013:
            q = robot.q.copy()
            q[rng.integers(dof)] = np.nan
            state = robot.read_state(now).__class__(q=q, qd=np.zeros(dof), timestamp=now)
        elif s_fault < 0.016:  # the arm was pushed: tracking error (live mode)
            q = robot.q.copy()
            q[rng.integers(dof)] += 0.5 * rng.choice([-1.0, 1.0])
            state = robot.read_state(now).__class__(q=q, qd=np.zeros(dof), timestamp=now)
        stops_before = robot.port.stops
        result = filt.step(target, t_time, state, velocity_scale=scale)
        if result.sent:
            robot.q = result.command.copy()
        has_t, has_s = target is not None, state is not None
        lines.append(" ".join([
            "S", repr(now), repr(float("nan") if t_time is None else t_time), repr(scale), str(int(has_t)),
            _fmt(target if has_t else np.zeros(dof)), str(int(has_s)), repr(state.timestamp if has_s else 0.0),
            _fmt(state.q if has_s else np.zeros(dof)),
        ]))
        command = result.command if result.command is not None else np.zeros(dof)
        expected.append(("S", result.state, int(result.sent), int(result.held), int(robot.port.stops > stops_before),
                         int(result.command is not None), [float(x) for x in command], result.codes))
    return lines, expected


def _parse(out: str, dof: int) -> list[tuple]:
    decisions = []
    for line in out.splitlines():
        f = line.split()
        if f[0] in "RWTE":
            decisions.append((f[0], int(f[1])))
            continue
        command = [float(x) for x in f[6:6 + dof]]
        n = int(f[6 + dof])
        decisions.append(("S", f[1], int(f[2]), int(f[3]), int(f[4]), int(f[5]), command, tuple(f[7 + dof:7 + dof + n])))
    return decisions


@pytest.mark.parametrize("robot", ["ur3", "arx5", "arx5-bimanual"])
def test_c_abi_and_python_make_identical_decisions_on_random_ticks(robot, replay, tmp_path):
    config = load_robot_config(robot)
    lines, expected = _record(config, n_ticks=2500, seed=zlib.crc32(robot.encode()))
    codes = {c for e in expected if e[0] == "S" for c in e[7]}
    # The stream must reach the interesting paths, or equality would prove little.
    assert {"velocity_limited", "position_clamped", "missing_target", "non_finite_target", "stale_state"} <= codes, codes
    assert any(e[0] == "S" and e[1] == "braking" for e in expected) and any(e[0] == "R" for e in expected)
    assert any(e == ("W", 1) for e in expected) and any(e == ("T", 1) for e in expected)
    assert expected[-1][1] == "estopped" and not expected[-1][2]
    cfg_file = tmp_path / f"{robot}.filter"
    cfg_file.write_text(filter_config_text(config))
    ticks = "\n".join(lines) + "\n"
    for how, binary in replay.items():
        got = _parse(_run([binary, cfg_file], input=ticks).stdout, config.dof)
        assert len(got) == len(expected), how
        for k, (g, e) in enumerate(zip(got, expected)):
            assert g == e, f"{how}: decision {k} differs\nC:      {g}\nPython: {e}\ninput:  {lines[k]}"


def test_c_abi_refuses_a_config_that_loosens_the_hardware_limits(replay, tmp_path):
    text = filter_config_text(load_robot_config("ur3"))
    bad = "\n".join("tcp_speed 5.0" if line.startswith("tcp_speed ") else line for line in text.splitlines())
    (tmp_path / "bad.filter").write_text(bad + "\n")
    out = subprocess.run([str(replay["pkg-config"]), str(tmp_path / "bad.filter")], input="", capture_output=True, text=True)
    assert out.returncode == 2
    assert "limits.tcp_speed" in out.stderr and "exceeds the arm's hardware limit" in out.stderr


def test_export_filter_command_writes_the_file(tmp_path):
    from vla_edge.cli.main import app
    from typer.testing import CliRunner

    out = tmp_path / "arx5.filter"
    result = CliRunner().invoke(app, ["robot", "export-filter", "arx5", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert out.read_text() == filter_config_text(load_robot_config("arx5"))
    assert "arm_chain 0 1 2 3 4 5" in out.read_text() and "gripper 6 " in out.read_text()


@pytest.mark.slow
def test_c_abi_replay_is_clean_under_address_sanitizer(tmp_path):
    """The library and the replay program built with ASan + LeakSanitizer: a random stream with
    every fault kind runs without a memory error or leak, and still matches Python."""
    build = tmp_path / "build"
    _run([CMAKE, "-S", REPO, "-B", build, "-DVLA_EDGE_RUNTIME=OFF", "-DVLA_EDGE_POLICY_IO=OFF", "-DVLA_EDGE_PYTHON=OFF",
          "-DVLA_EDGE_SANITIZE=address", "-DCMAKE_BUILD_TYPE=RelWithDebInfo"])
    _run([CMAKE, "--build", build, "-j", "2"])
    binary = tmp_path / "replay_asan"
    _run([CC, "-std=c99", "-g", "-fsanitize=address", REPO / "examples" / "filter_replay.c", f"-I{REPO / 'native' / 'include'}",
          f"-L{build / 'native'}", "-lvla_edge_safety", f"-Wl,-rpath,{build / 'native'}", "-lm", "-o", binary])
    config = load_robot_config("arx5-bimanual")
    lines, expected = _record(config, n_ticks=2500, seed=99)
    (tmp_path / "robot.filter").write_text(filter_config_text(config))
    out = _run([binary, tmp_path / "robot.filter"], input="\n".join(lines) + "\n")
    assert "Sanitizer" not in out.stderr
    assert _parse(out.stdout, config.dof) == expected
