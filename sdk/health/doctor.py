"""`vla-edge doctor`: what will and will not work on this machine, and why.

Each check returns a `Check` (status ok / warn / fail / info, a one-line summary, details). The
verdict (`can_run`) is about the requested combination only: the target is available here and,
when a robot is named, its driver is installed and it is reachable within the timeout. Other
findings (no GPU, no TensorRT, no cameras) are reported but do not fail a CPU target.
Everything the checks touch is injectable (`DoctorEnv`), so tests run them on fake machines.
"""

from __future__ import annotations

import ctypes.util
import importlib.util
import platform
import socket
import struct
import threading
from dataclasses import dataclass, field
from typing import Any, Callable

from .nvml import NvmlSession, describe_devices
from .sample import SensorError
from .select import MONITOR_NAMES, MachineProbe, auto_monitor_names, build_monitor
from .sysfs import SysfsTree

# Targets named in the docs/roadmap but not in this build's registry.
PLANNED_TARGETS = {"thor": "Jetson Thor"}
GPU_TARGETS = ("cuda", "gb10", "orin")
# ggml build feature -> /proc/cpuinfo flag (x86 "flags", ARM "Features").
GGML_CPU_FLAGS = {"AVX": "avx", "AVX2": "avx2", "AVX512F": "avx512f", "FMA": "fma", "F16C": "f16c", "NEON": "asimd"}
CPU_FLAGS_SHOWN = ("sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile",
                   "asimd", "asimdhp", "asimddp", "i8mm", "sve", "sve2", "bf16")


@dataclass(frozen=True)
class Check:
    name: str
    status: str  # "ok" | "warn" | "fail" | "info"
    summary: str
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "status": self.status, "summary": self.summary, "details": self.details}


def _tcp_connect(host: str, port: int, timeout_s: float) -> None:
    with socket.create_connection((host, port), timeout=timeout_s):
        pass


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        part = sock.recv(n - len(data))
        if not part:
            raise ConnectionError("connection closed by the peer")
        data += part
    return data


def rtde_handshake(host: str, port: int, timeout_s: float) -> bool:
    """RTDE 'request protocol version 2' (what every RTDE client sends first; read-only) and the
    controller's answer: True if accepted. An open port proves little (NAT, proxies and some
    sandboxes accept any TCP connection); an RTDE answer proves a UR controller is there."""
    with socket.create_connection((host, port), timeout=timeout_s) as sock:
        sock.settimeout(timeout_s)
        sock.sendall(struct.pack(">HBH", 5, ord("V"), 2))
        size, kind = struct.unpack(">HB", _recv_exact(sock, 3))
        body = _recv_exact(sock, max(0, size - 3))
    if kind != ord("V") or not body:
        raise ConnectionError(f"not an RTDE answer (message type {kind})")
    return bool(body[0])


@dataclass
class DoctorEnv:
    probe: MachineProbe
    native: Callable[[], Any]
    find_library: Callable[[str], str | None] = ctypes.util.find_library
    has_module: Callable[[str], bool] = lambda name: importlib.util.find_spec(name) is not None
    connect: Callable[[str, int, float], None] = _tcp_connect
    rtde: Callable[[str, int, float], bool] = rtde_handshake
    target_status: Callable[[], dict[str, tuple[bool, str]]] | None = None
    machine: str = field(default_factory=platform.machine)
    gpu_facts: Callable[[], Any] | None = None  # -> targets.gpu.facts.DeviceFacts (tests pass fakes)

    @classmethod
    def local(cls) -> "DoctorEnv":
        def native():
            from vla_edge import _native  # noqa: PLC0415

            return _native

        return cls(MachineProbe.local(), native)

    def device_facts(self) -> Any:
        if self.gpu_facts is not None:
            return self.gpu_facts()
        from vla_edge.targets.gpu.facts import probe  # noqa: PLC0415

        return probe(self.probe.tree, NvmlSession(), lambda: str(self.native().system_info()))

    def targets(self) -> dict[str, tuple[bool, str]]:
        if self.target_status is not None:
            return self.target_status()
        from vla_edge.targets.registry import target_status  # noqa: PLC0415

        return target_status()


# ---------------------------------------------------------------------------------------- CPU


def cpu_flags(tree: SysfsTree) -> tuple[str, set[str]]:
    """(model name, flag set) from /proc/cpuinfo (x86 'flags', ARM 'Features')."""
    text = tree.text("proc/cpuinfo")
    model, flags = "", set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip().lower()
        if key in ("model name", "hardware", "cpu model") and not model:
            model = value.strip()
        elif key in ("flags", "features") and not flags:
            flags = set(value.split())
    return model, flags


def check_cpu(env: DoctorEnv) -> tuple[Check, set[str] | None]:
    try:
        model, flags = cpu_flags(env.probe.tree)
    except SensorError as exc:
        return Check("cpu", "warn", f"{env.machine}: cannot read CPU features ({exc})"), None
    shown = [f for f in CPU_FLAGS_SHOWN if f in flags]
    return Check("cpu", "info", f"{env.machine} {model}: {' '.join(shown) or 'no SIMD features listed'}",
                 {"machine": env.machine, "model": model, "features": shown}), flags


def check_native(env: DoctorEnv, cpu: set[str] | None) -> Check:
    """Native module present, its ggml build features, and whether this CPU has all of them (a
    build for a newer CPU dies with SIGILL on the first matmul)."""
    try:
        info = str(env.native().system_info())
    except Exception as exc:  # noqa: BLE001 - ImportError, or a broken .so
        return Check("native", "fail", f"native module vla_edge._native not available ({exc}); the x86 target "
                     "cannot run. Reinstall with a C++ compiler and cmake (VLA_EDGE_BUILD_NATIVE=1)")
    built = info.split(":", 1)[1].split("|")[0].split() if ":" in info else []
    details = {"system_info": info, "ggml_features": built, "cuda_backend": "CUDA backend built" in info}
    missing = [f for f in built if cpu is not None and GGML_CPU_FLAGS.get(f) and GGML_CPU_FLAGS[f] not in cpu]
    if missing:
        details["missing_on_this_cpu"] = missing
        return Check("native", "fail", f"native build uses {', '.join(missing)} which this CPU lacks: rebuild on "
                     "this machine (pip install --force-reinstall --no-binary vla-edge vla-edge)", details)
    return Check("native", "ok", f"present; {info}", details)


# ---------------------------------------------------------------------------------------- GPU


def check_cuda(env: DoctorEnv) -> Check:
    session: NvmlSession = env.probe.nvml
    devices = describe_devices(session)
    if not devices:
        return Check("cuda", "info", f"no CUDA device: {session.error or 'NVML found no NVIDIA GPU'}",
                     {"devices": []})
    names = ", ".join(f"gpu{d['index']} {d.get('name', '?')} (compute {d.get('compute_capability', '?')})"
                      for d in devices)
    return Check("cuda", "ok", names, {"devices": devices})


def check_tensorrt(env: DoctorEnv, facts: Any) -> Check:
    """Both flavours: TensorRT-RTX (gb10; builds engines on any machine) and TensorRT 10 (orin)."""
    lib = env.find_library("nvinfer")
    details = {"libnvinfer": lib, "modules": dict(facts.tensorrt), "import_errors": dict(facts.tensorrt_errors)}
    found = [f"{m} {v}" for m, v in facts.tensorrt.items() if v]
    if lib:
        found.append(f"libnvinfer ({lib})")
    summary = (", ".join(found) + " found" if found else "no TensorRT flavour found") + (
        "; gb10 engines build here with TensorRT-RTX (`vla-edge pack build-engine PACK --target gb10`), orin engines "
        "on the Orin (pip install 'vla-edge[trt]' for TensorRT-RTX)")
    return Check("tensorrt", "info", summary, details)


def check_gpu_targets(env: DoctorEnv, facts: Any) -> Check:
    """cuda / gb10 / orin: would each run here, on which path, and why not."""
    from vla_edge.targets.gpu.selection import availability  # noqa: PLC0415

    per = {}
    for name in GPU_TARGETS:
        ok, why = availability(name, facts)
        path = ("ggml-CUDA" if name == "cuda" else "development fallback (ggml-CUDA)" if "DEVELOPMENT" in why
                else "engines, else ggml-CUDA fallback") if ok else None
        per[name] = {"would_run": ok, "path": path, "why": why}
    details: dict[str, Any] = {"targets": per, "facts": facts.to_dict()}
    if facts.tegra_release is not None:
        details["jetson"] = {"release": facts.tegra_release, "model": facts.jetson_model, "power_mode": facts.power_mode,
                             "clocks": "jetson_clocks state is not read (no status file); not run here"}
    summary = "; ".join(f"{n}: {'yes, ' + d['path'] if d['would_run'] else 'no'}" for n, d in per.items())
    if facts.power_mode:
        summary += f"; Jetson power mode {facts.power_mode}"
    return Check("gpu targets", "info", summary, details)


# ---------------------------------------------------------------------------------------- health


def check_monitors(env: DoctorEnv, target: str | None) -> Check:
    per: dict[str, dict[str, Any]] = {}
    for name in MONITOR_NAMES:
        try:
            ok, why = build_monitor(name, env.probe).available()
        except Exception as exc:  # noqa: BLE001 - doctor reports, never crashes
            ok, why = False, f"failed: {exc}"
        per[name] = {"available": ok, "detail": why}
    chosen, notes = auto_monitor_names(target, env.probe)
    readable = [n for n in chosen if per[n]["available"]]
    status = "ok" if readable else "warn"
    summary = (f"run would use {', '.join(chosen)}" + ("" if readable else
               " but none can read a sensor here: health stays 'warm' (unknown), never 'nominal'"))
    return Check("health monitors", status, summary, {"monitors": per, "auto": chosen, "selection": notes})


# ---------------------------------------------------------------------------------------- targets


def check_target(env: DoctorEnv, target: str) -> Check:
    status = env.targets()
    details = {"requested": target, "targets": {n: {"available": ok, "detail": why} for n, (ok, why) in status.items()}}
    if target in status:
        ok, why = status[target]
        return Check("target", "ok" if ok else "fail", f"{target}: {'available' if ok else 'unavailable'} ({why})", details)
    known = ", ".join(status)
    if target in PLANNED_TARGETS:
        return Check("target", "fail", f"{target} ({PLANNED_TARGETS[target]}) is planned, not in this build; "
                     f"targets in this build: {known}", details)
    return Check("target", "fail", f"unknown target {target!r}; known: {known}", details)


# ---------------------------------------------------------------------------------------- robot


def _os_reason(exc: OSError) -> str:
    return "no answer (timed out)" if isinstance(exc, socket.timeout) else (exc.strerror or str(exc))


def _probe_ports(env: DoctorEnv, host: str, ports: dict[int, str], timeout_s: float) -> dict[str, str]:
    out = {}
    for port, what in ports.items():
        try:
            env.connect(host, port, timeout_s)
            out[f"{what} ({port})"] = "accepts connections"
        except OSError as exc:
            out[f"{what} ({port})"] = _os_reason(exc)
    return out


def _check_ur3(env: DoctorEnv, cfg: Any, timeout_s: float) -> Check:
    from vla_edge.robots.ur3.connection import (  # noqa: PLC0415
        DASHBOARD_PORT, RTDE_PORT, SCRIPT_PORT, parse_connection)

    conn = parse_connection(cfg.connection, cfg.control_rate_hz)
    if not env.has_module("rtde_receive"):
        return Check("robot", "fail", f"{cfg.name}: ur_rtde is not installed (pip install ur-rtde)", {"host": conn.host})
    try:
        rtde = "answers (protocol 2 accepted)" if env.rtde(conn.host, RTDE_PORT, timeout_s) else "answers, refused protocol 2"
    except OSError as exc:
        rtde = _os_reason(exc)
    ports = {f"RTDE ({RTDE_PORT})": rtde,
             **_probe_ports(env, conn.host, {DASHBOARD_PORT: "dashboard", SCRIPT_PORT: "script"}, timeout_s)}
    details = {"host": conn.host, "ports": ports, "timeout_s": timeout_s}
    if not rtde.startswith("answers (protocol"):
        return Check("robot", "fail", f"{cfg.name}: no UR controller at {conn.host}: RTDE {rtde} within "
                     f"{timeout_s:g} s; check connection.host, power and network", details)
    if any(v != "accepts connections" for k, v in ports.items() if not k.startswith("RTDE")):
        return Check("robot", "warn", f"{cfg.name}: {conn.host} answers RTDE (shadow runs work); live mode also "
                     f"needs the dashboard and script ports: {ports}", details)
    return Check("robot", "ok", f"{cfg.name}: controller {conn.host} answers RTDE; dashboard and script ports "
                 "accept connections", details)


def _check_arx5(env: DoctorEnv, cfg: Any) -> Check:
    from vla_edge.robots.arx5.settings import parse_arx_settings  # noqa: PLC0415

    s = parse_arx_settings(cfg.connection, len(cfg.kinematics.arms))
    if not env.has_module("can"):
        return Check("robot", "fail", f"{cfg.name}: python-can is not installed (pip install python-can)")
    details: dict[str, Any] = {"can_backend": s.can_backend, "interfaces": {}}
    if s.can_backend != "socketcan":
        return Check("robot", "warn", f"{cfg.name}: CAN backend {s.can_backend!r} cannot be checked here; "
                     f"interfaces {', '.join(s.channels)}", details)
    tree = env.probe.tree
    bad = []
    for ch in s.channels:
        try:
            up = int(tree.text(f"sys/class/net/{ch}/flags"), 16) & 0x1
            state = "up" if up else f"down (sudo ip link set {ch} up type can bitrate 1000000)"
        except (SensorError, ValueError):
            state = "missing (no such network interface)"
        details["interfaces"][ch] = state
        if state != "up":
            bad.append(f"{ch} {state}")
    if bad:
        return Check("robot", "fail", f"{cfg.name}: CAN interface {'; '.join(bad)}", details)
    return Check("robot", "ok", f"{cfg.name}: CAN {', '.join(s.channels)} up (motors answer only when addressed; "
                 "not probed)", details)


def check_robot(env: DoctorEnv, cfg: Any, timeout_s: float) -> Check:
    """Driver installed and robot reachable. Config errors propagate (bad input, exit 2)."""
    if cfg.driver.endswith("-sim"):
        if not env.has_module("mujoco"):
            return Check("robot", "fail", f"{cfg.name}: simulator needs MuJoCo (pip install mujoco)")
        return Check("robot", "ok", f"{cfg.name}: simulator (MuJoCo), nothing to connect to")
    if cfg.driver == "ur3":
        return _check_ur3(env, cfg, timeout_s)
    if cfg.driver == "arx5":
        return _check_arx5(env, cfg)
    return Check("robot", "warn", f"{cfg.name}: driver {cfg.driver!r} has no reachability check")


# ---------------------------------------------------------------------------------------- cameras


def _try_open(cv2: Any, index: int, timeout_s: float) -> str:
    result: dict[str, str] = {}

    def attempt() -> None:
        cap = cv2.VideoCapture(index)
        try:
            ok, frame = cap.read() if cap.isOpened() else (False, None)
            result["r"] = f"delivers {frame.shape[1]}x{frame.shape[0]}" if ok and frame is not None else "opens, no frame"
        finally:
            cap.release()

    t = threading.Thread(target=attempt, daemon=True)
    t.start()
    t.join(timeout_s)
    return result.get("r", f"no answer within {timeout_s:g} s")


def check_cameras(env: DoctorEnv, timeout_s: float) -> Check:
    tree = env.probe.tree
    devices = {}
    for rel in tree.children("dev", r"video\d+"):
        dev = rel.rsplit("/", 1)[1]
        try:
            devices[f"/dev/{dev}"] = tree.text(f"sys/class/video4linux/{dev}/name")
        except SensorError:
            devices[f"/dev/{dev}"] = "?"
    has_cv2 = env.has_module("cv2")
    details: dict[str, Any] = {"devices": devices, "opencv": has_cv2}
    if not devices:
        return Check("cameras", "info", "no /dev/video* device (simulator and synthetic cameras still work)"
                     + ("" if has_cv2 else "; OpenCV not installed (pip install vla-edge[cameras])"), details)
    if not has_cv2:
        return Check("cameras", "warn", f"{len(devices)} device(s) {', '.join(devices)}; OpenCV not installed "
                     "(pip install vla-edge[cameras]) so they cannot be used or test-read", details)
    import cv2  # noqa: PLC0415 - optional extra

    details["read"] = {d: _try_open(cv2, int(d.removeprefix("/dev/video")), timeout_s) for d in devices}
    return Check("cameras", "ok", "; ".join(f"{d} ({devices[d]}): {r}" for d, r in details["read"].items()), details)


# ---------------------------------------------------------------------------------------- all


@dataclass
class DoctorReport:
    checks: list[Check]
    can_run: bool
    verdict: str
    target: str
    robot: str | None

    def to_dict(self) -> dict[str, Any]:
        return {"target": self.target, "robot": self.robot, "can_run": self.can_run, "verdict": self.verdict,
                "checks": [c.to_dict() for c in self.checks]}


def run_doctor(target: str, robot_cfg: Any = None, timeout_s: float = 2.0, env: DoctorEnv | None = None) -> DoctorReport:
    env = env or DoctorEnv.local()
    cpu, flags = check_cpu(env)
    cuda = check_cuda(env)
    facts = env.device_facts()
    checks = [cpu, check_native(env, flags), cuda, check_tensorrt(env, facts), check_gpu_targets(env, facts),
              check_monitors(env, target), check_target(env, target)]
    if robot_cfg is not None:
        checks.append(check_robot(env, robot_cfg, timeout_s))
    checks.append(check_cameras(env, timeout_s))
    deciding = [c for c in checks if c.name in ("target", "robot")]
    if target == "x86":
        deciding.append(next(c for c in checks if c.name == "native"))
    failed = [c for c in deciding if c.status == "fail"]
    combo = target + (f" + {robot_cfg.name}" if robot_cfg is not None else "")
    verdict = (f"{combo}: can run here" if not failed else
               f"{combo}: cannot run here: " + "; ".join(c.summary for c in failed))
    return DoctorReport(checks, not failed, verdict, target, None if robot_cfg is None else robot_cfg.name)
