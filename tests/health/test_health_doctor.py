"""`vla-edge doctor`: checks on fake machines (fixture trees, fake NVML, fake native module), robot
reachability against the UR controller emulator and a silent port, and the CLI's exit codes."""

from __future__ import annotations

import json
import socket
import sys
import time
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(TESTS))
from cli_runner import run_cli  # noqa: E402
from health_fakes import FIXTURES, FakeNvml, FakePsutil, copy_tree, write  # noqa: E402

from vla_edge.health.doctor import DoctorEnv, rtde_handshake, run_doctor  # noqa: E402
from vla_edge.health.nvml import NvmlSession  # noqa: E402
from vla_edge.health.select import MachineProbe  # noqa: E402
from vla_edge.health.sysfs import SysfsTree  # noqa: E402
from vla_edge.robots.registry import load_registered_config  # noqa: E402
from vla_edge.targets.gpu.facts import probe as facts_probe  # noqa: E402

NO_GPU = "NVML Shared Library Not Found"


class FakeNative:
    def __init__(self, info: str):
        self.info = info

    def system_info(self) -> str:
        return self.info


def env(root: Path, native: str | None = "ggml cpu: AVX AVX2 FMA F16C", nvml: FakeNvml | None = None,
        modules=("mujoco", "rtde_receive", "can"), nvinfer: str | None = None) -> DoctorEnv:
    def load_native():
        if native is None:
            raise ImportError("No module named 'vla_edge._native'")
        return FakeNative(native)

    def targets():
        return {"reference": (True, "numpy"), "x86": (native is not None, native or "not built")}

    probe = MachineProbe(SysfsTree(root), NvmlSession(nvml or FakeNvml(init_error=NO_GPU)), lambda: False, FakePsutil())

    def gpu_facts():  # the real probe, reading the fake tree, NVML and native module
        return facts_probe(SysfsTree(root), NvmlSession(nvml or FakeNvml(init_error=NO_GPU)),
                           lambda: load_native().system_info())

    return DoctorEnv(probe, load_native, find_library=lambda name: nvinfer, has_module=lambda name: name in modules,
                     target_status=targets, machine="x86_64", gpu_facts=gpu_facts)


def by_name(report):
    return {c.name: c for c in report.checks}


def test_cpu_features_vs_the_native_build():
    ok = run_doctor("x86", env=env(FIXTURES / "x86"))
    c = by_name(ok)
    assert ok.can_run and c["native"].status == "ok"
    assert c["cpu"].details["features"] == ["sse4_2", "avx", "avx2", "fma", "f16c"]
    assert "Intel(R) Core(TM) i7-12700" in c["cpu"].summary
    # A native build for AVX-512 on a CPU without it dies with SIGILL: the x86 target cannot run.
    bad = run_doctor("x86", env=env(FIXTURES / "x86", native="ggml cpu: AVX AVX2 AVX512F FMA F16C"))
    assert not bad.can_run and "AVX512F which this CPU lacks" in bad.verdict
    assert run_doctor("reference", env=env(FIXTURES / "x86", native="ggml cpu: AVX512F")).can_run
    arm = by_name(run_doctor("reference", env=env(FIXTURES / "orin", native="ggml cpu: NEON")))
    assert arm["native"].status == "ok" and "asimddp" in arm["cpu"].details["features"]


def test_missing_native_module_fails_only_the_x86_target():
    report = run_doctor("x86", env=env(FIXTURES / "x86", native=None))
    c = by_name(report)
    assert not report.can_run and c["native"].status == "fail" and c["target"].status == "fail"
    assert run_doctor("reference", env=env(FIXTURES / "x86", native=None)).can_run


def test_cuda_tensorrt_and_monitors():
    c = by_name(run_doctor("reference", env=env(FIXTURES / "x86")))
    assert c["cuda"].status == "info" and NO_GPU in c["cuda"].summary
    assert "gb10 engines build here with TensorRT-RTX" in c["tensorrt"].summary
    gpu = c["gpu targets"].details["targets"]
    assert not any(t["would_run"] for t in gpu.values()) and NO_GPU in gpu["cuda"]["why"]
    assert c["health monitors"].details["auto"] == ["generic"] and c["health monitors"].status == "ok"
    c = by_name(run_doctor("gb10", env=env(FIXTURES / "x86", nvml=FakeNvml(), nvinfer="libnvinfer.so.10")))
    assert c["cuda"].summary == "gpu0 NVIDIA H100 80GB HBM3 (compute 9.0)"
    assert "libnvinfer (libnvinfer.so.10) found" in c["tensorrt"].summary
    assert c["health monitors"].details["auto"] == ["nvml", "generic"]
    gpu = c["gpu targets"].details["targets"]
    # an H100 with a CPU-only native build: no ggml-CUDA, and not a GB10 (compute capability 9.0)
    assert not gpu["cuda"]["would_run"] and "VLA_EDGE_CUDA=1" in gpu["cuda"]["why"]
    assert "gb10 runs on NVIDIA GB10 (DGX Spark) only and gpu0 is NVIDIA H100 80GB HBM3 (compute capability 9.0)" \
        in gpu["gb10"]["why"]
    cuda_build = by_name(run_doctor("cuda", env=env(FIXTURES / "x86", nvml=FakeNvml(), native="ggml cpu: AVX | CUDA backend built")))
    gpu = cuda_build["gpu targets"].details["targets"]
    assert gpu["cuda"] == {"would_run": True, "path": "ggml-CUDA", "why": "ggml-CUDA on gpu0 NVIDIA H100 80GB HBM3"}
    assert not gpu["gb10"]["would_run"] and "use --target cuda" in gpu["gb10"]["why"]
    orin = by_name(run_doctor("reference", env=env(FIXTURES / "orin")))
    assert orin["health monitors"].details["monitors"]["jetson"]["available"]
    # a Jetson Orin (release file, device-tree model, no NVML) with a ggml-CUDA build: orin would run,
    # its power mode is shown
    jetson = by_name(run_doctor("reference", env=env(FIXTURES / "orin", native="ggml cpu: NEON | CUDA backend built")))
    assert jetson["gpu targets"].details["targets"]["orin"]["would_run"]
    assert "Jetson power mode" in jetson["gpu targets"].summary


def test_no_sensor_machine_is_a_warning_not_a_failure(tmp_path):
    empty = tmp_path / "empty"
    write(empty, "proc/cpuinfo", "flags\t: avx avx2 fma f16c\n")
    report = run_doctor("reference", env=env(empty))
    mon = by_name(report)["health monitors"]
    assert report.can_run and mon.status == "warn" and "never 'nominal'" in mon.summary


def test_arx5_can_interface_state(tmp_path):
    root = copy_tree("x86", tmp_path)
    cfg = load_registered_config("arx5")  # connection.interface: can0
    robot = by_name(run_doctor("reference", cfg, env=env(root)))["robot"]
    assert robot.status == "fail" and "can0 missing" in robot.summary
    write(root, "sys/class/net/can0/flags", "0x80\n")
    robot = by_name(run_doctor("reference", cfg, env=env(root)))["robot"]
    assert robot.status == "fail" and "down (sudo ip link set can0 up" in robot.summary
    write(root, "sys/class/net/can0/flags", "0x40081\n")
    report = run_doctor("reference", cfg, env=env(root))
    assert report.can_run and by_name(report)["robot"].status == "ok"
    no_can = run_doctor("reference", cfg, env=env(root, modules=("mujoco",)))
    assert not no_can.can_run and "python-can is not installed" in no_can.verdict


def test_sim_robot_needs_mujoco_only():
    cfg = load_registered_config("ur3-sim")
    assert run_doctor("reference", cfg, env=env(FIXTURES / "x86")).can_run
    report = run_doctor("reference", cfg, env=env(FIXTURES / "x86", modules=()))
    assert not report.can_run and "MuJoCo" in report.verdict


def test_cameras_listed_and_opencv_missing_is_said(tmp_path):
    root = copy_tree("x86", tmp_path)
    write(root, "dev/video0", "")
    write(root, "sys/class/video4linux/video0/name", "HD Webcam\n")
    cams = by_name(run_doctor("reference", env=env(root)))["cameras"]
    assert cams.status == "warn" and cams.details["devices"] == {"/dev/video0": "HD Webcam"}
    assert "pip install vla-edge[cameras]" in cams.summary


# ------------------------------------------------------------------------------ UR3 reachability


def _ur3(host: str):
    return load_registered_config("ur3").model_copy(update={"connection": {"host": host}})


def _loopback_host():
    sys.path.insert(0, str(TESTS / "robots"))
    from ur_emulator import free_loopback_host  # noqa: PLC0415

    return free_loopback_host()


def test_ur3_controller_emulator_answers_rtde():
    pytest.importorskip("rtde_receive")
    sys.path.insert(0, str(TESTS / "robots"))
    from ur_emulator import EmulatorHandle  # noqa: PLC0415

    with EmulatorHandle() as emu:
        assert rtde_handshake(emu.host, 30004, 2.0) is True
        report = run_doctor("reference", _ur3(emu.host), 2.0, env=env(FIXTURES / "x86"))
        robot = by_name(report)["robot"]
        assert report.can_run and robot.status == "ok", robot.summary
        assert robot.details["ports"]["RTDE (30004)"] == "answers (protocol 2 accepted)"
        assert emu.commands(kind="motion") == [] and emu.commands(kind="stop") == []  # doctor moved nothing


def test_ur3_unreachable_and_silent_controllers_fail_within_the_timeout():
    host = _loopback_host()
    t0 = time.monotonic()
    report = run_doctor("reference", _ur3(host), 0.5, env=env(FIXTURES / "x86"))
    assert not report.can_run and "no UR controller at" in report.verdict and "refused" in report.verdict
    # A port that accepts TCP but never speaks RTDE (a proxy, a firewall, another service) is not a robot.
    silent = socket.socket()
    silent.bind((host, 30004))
    silent.listen(1)
    try:
        report = run_doctor("reference", _ur3(host), 0.5, env=env(FIXTURES / "x86"))
    finally:
        silent.close()
    robot = by_name(report)["robot"]
    assert not report.can_run and "RTDE no answer (timed out) within 0.5 s" in robot.summary
    assert time.monotonic() - t0 < 5.0


# ------------------------------------------------------------------------------ CLI


def test_cli_json_and_exit_codes():
    r = run_cli("doctor", "--json", "--robot", "ur3-sim")
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    assert report["can_run"] and report["target"] == "reference" and report["robot"] == "ur3-sim"
    assert [c["name"] for c in report["checks"]] == ["cpu", "native", "cuda", "tensorrt", "gpu targets",
                                                     "health monitors", "target", "robot", "cameras"]
    r = run_cli("doctor", "--target", "orin")
    assert r.returncode == 1 and "orin: cannot run here: orin: unavailable (orin runs on Jetson Orin (JetPack 6) only" \
        in " ".join(r.stdout.split())
    r = run_cli("doctor", "--robot", "nosuchbot")
    assert r.returncode == 2 and "unknown robot 'nosuchbot'" in r.stderr
    r = run_cli("doctor", "--timeout", "0")
    assert r.returncode == 2 and "--timeout" in r.stderr
