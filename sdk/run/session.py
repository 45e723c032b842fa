"""Build a run in an order that fails before anything can move, then run it.

Order (each step can refuse with a VlaEdgeError naming the problem): robot config -> pack and
target -> action/state names vs robot joints -> robot driver (shadow unless live) and connection
-> cameras opened and test-read -> one warm-up inference on a real observation -> run directory
-> safety filter (the only step that opens the motion path, and only in live mode).
"""

from __future__ import annotations

import datetime as _dt
import platform
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ..errors import ConfigError
from .cameras import CameraSource, build_sources, disconnect_robot, open_sources
from .clock import MonotonicClock, SimStepClock
from .config import LoopConfig
from .loop import LoopSettings, RunLoop, RunOutcome
from .mapping import JointMapping
from .rundir import RunDirectory, check_run_dir


@dataclass
class RunRequest:
    robot: str | None = None
    robot_config: Path | None = None
    pack: str | None = None
    target: str = "auto"
    prompt: str | None = None
    duration_s: float = 10.0
    live: bool = False
    run_dir: Path | None = None
    seed: int | None = None
    cameras: dict[str, str] = field(default_factory=dict)
    loop: LoopConfig = field(default_factory=LoopConfig)
    health: dict[str, Any] = field(default_factory=dict)
    view: str | None = None  # --view: rerun destination (spawn, rerun+http://..., file.rrd); None = off


@dataclass
class PreparedRun:
    request: RunRequest
    robot_config: Any
    policy: Any
    robot: Any
    cameras: dict[str, CameraSource]
    mapping: JointMapping
    clock: Any
    safety: Any
    rundir: RunDirectory
    settings: LoopSettings
    health: Any
    warmup_ms: float

    def close(self) -> None:
        try:
            disconnect_robot(self.robot, self.cameras)
        finally:
            self.rundir.close()
            self.policy.close()
            if self.health is not None:
                self.health.close()


def resolve_robot_config(robot: str | None, robot_config: Path | None):
    from ..robots.config import load_robot_config  # noqa: PLC0415
    from ..robots.registry import load_overlay_config  # noqa: PLC0415

    if robot_config is not None:
        cfg = load_overlay_config(Path(robot_config))
        if robot is not None and cfg.name != robot:
            raise ConfigError("--robot", f"{robot!r} differs from robot {cfg.name!r} named in {robot_config}")
        return cfg
    if robot is None:
        raise ConfigError("--robot", "name the robot (e.g. --robot ur3-sim) or give --robot-config FILE")
    return load_robot_config(robot)


def _state_fill(policy, user_fill: dict[str, float]) -> np.ndarray:
    names = policy.info.state_names
    unknown = sorted(set(user_fill) - set(names))
    if unknown:
        raise ConfigError("loop.state_fill", f"{unknown} are not state entries of the policy ({list(names)})")
    mean = np.asarray(policy.pack.norm_stats.state.mean, dtype=float)
    fill = np.array([mean[i] if i < mean.shape[0] else 0.0 for i in range(len(names))])
    for name, value in user_fill.items():
        fill[names.index(name)] = float(value)
    return fill


def _health_provider(config: dict[str, Any], target: str):
    """The health module's governor when it is available; else nominal limits (and a health
    section in the config is an error, because it would silently do nothing)."""
    try:
        from ..health import governor  # noqa: PLC0415
    except ImportError:
        if config:
            raise ConfigError("health", "this build has no health governor (vla_edge.health.governor); remove the section")
        return None, "nominal (no health governor in this build)"
    provider = governor.from_run_config(config, target=target)
    return provider, provider.describe() if provider is not None else "nominal (health.enabled: false)"


def default_run_dir(robot_name: str) -> Path:
    stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    return Path("runs") / f"{stamp}-{robot_name}"


def prepare(req: RunRequest) -> PreparedRun:
    """Everything up to (and, in live mode, including) opening the motion path."""
    from ..packs.demo import is_demo, resolve_pack  # noqa: PLC0415
    from ..policy import load_policy  # noqa: PLC0415
    from ..robots.registry import create_robot  # noqa: PLC0415
    from ..robots.safety import SafetyFilter  # noqa: PLC0415
    from ..types import Observation  # noqa: PLC0415

    if not req.duration_s > 0:
        raise ConfigError("--duration", f"expected seconds > 0, got {req.duration_s}")
    cfg = resolve_robot_config(req.robot, req.robot_config)
    if is_demo(req.pack) and not req.live and _is_simulator(cfg) and "operator" not in (cfg.connection or {}):
        # The demo: the simulated operator repeats the demonstration the demo policy was fitted
        # to, and the policy runs beside it in shadow mode (robots/sim/operator.py).
        cfg = cfg.model_copy(update={"connection": {**dict(cfg.connection or {}), "operator": "demo"}})
    run_dir = check_run_dir(req.run_dir or default_run_dir(cfg.name))
    policy = load_policy(resolve_pack(req.pack, robot=cfg.name), target=req.target, seed=req.seed)
    robot, health = None, None
    cameras: dict[str, CameraSource] = {}
    try:
        health, health_kind = _health_provider(req.health, policy.target)
        info = policy.info
        mapping = JointMapping.build(info.action_names, info.state_names, tuple(cfg.joints),
                                     _state_fill(policy, dict(req.loop.state_fill)), where=f"pack {info.pack_name}")
        prompt = req.prompt or policy.pack.manifest.default_prompt
        if not prompt:
            raise ConfigError("--prompt", "this pack has no default prompt; give --prompt TEXT")
        robot = create_robot(cfg, shadow=not req.live)
        fast_sim = getattr(getattr(robot, "settings", None), "realtime", True) is False
        clock = SimStepClock(robot, cfg.control_period_s) if fast_sim else MonotonicClock()
        if req.loop.simulated_latency_s is not None and clock.realtime:
            raise ConfigError("loop.simulated_latency_s", "only applies to a simulator with connection.realtime: false")
        # Camera mapping is checked from the robot's capabilities, before connecting to anything.
        sources = build_sources(info.cameras, info.required_cameras, req.cameras, robot, clock.now,
                                seed=req.seed or 0)
        robot.connect()
        cameras = sources
        skipped = open_sources(cameras, info.required_cameras)
        warm = _warmup(policy, robot, cameras, mapping, prompt, clock, Observation)
        settings = _loop_settings(req, policy, prompt, warm, health)
        rundir = RunDirectory(run_dir)
        try:
            described = _describe(req, cfg, policy, mapping, cameras, settings, clock, health_kind, warm)
            described["cameras_skipped"] = skipped
            rundir.write_config(described)
            safety = SafetyFilter(robot, cfg, shadow=not req.live, clock=clock.now)
        except BaseException:
            rundir.close()
            raise
    except BaseException:
        try:
            if robot is not None:
                disconnect_robot(robot, cameras)
        finally:
            policy.close()
            if health is not None:
                health.close()
        raise
    return PreparedRun(req, cfg, policy, robot, cameras, mapping, clock, safety, rundir, settings, health, warm)


def _is_simulator(cfg) -> bool:
    from ..robots.registry import is_simulator  # noqa: PLC0415

    return is_simulator(cfg.name)


def _loop_settings(req: RunRequest, policy, prompt: str, warmup_ms: float, health=None) -> LoopSettings:
    """Defaults: replan every half chunk (the demo pack: every DEMO_REPLAN_S, cross-faded over
    the same time, since its chunk is one target pose); the inference watchdog trips after 4
    replan periods or 3x the warm-up latency, whichever is longer (a slow target should hold,
    not trip constantly)."""
    from ..packs.demo import DEMO_REPLAN_S, is_demo  # noqa: PLC0415

    span = policy.info.horizon * policy.info.control_period_s
    demo = is_demo(req.pack)
    replan = req.loop.replan_s or (DEMO_REPLAN_S if demo else span / 2.0)
    # the fade ends before the next chunk can arrive (a fade cut short would be a velocity step)
    blend = req.loop.blend_s if req.loop.blend_s is not None else (0.8 * replan if demo else 0.0)
    timeout = req.loop.inference_timeout_s or max(4.0 * replan, 3.0 * warmup_ms / 1e3)
    return LoopSettings(req.duration_s, prompt, replan, timeout, blend,
                        simulated_latency_s=req.loop.simulated_latency_s, control_timeout_s=req.loop.control_timeout_s,
                        critical_wait_s=getattr(health, "recovery_wait_s", 0.0),
                        record_obs_every=req.loop.record_obs_every or 0)


def _warmup(policy, robot, cameras, mapping, prompt, clock, observation_cls) -> float:
    """One inference on a real observation: any image/state/policy problem surfaces now."""
    from .cameras import capture  # noqa: PLC0415

    images, t = capture(cameras, clock.now)
    state = robot.read_state()
    chunk = policy.infer(observation_cls(images, mapping.state_for_policy(state.q), prompt, t))
    return float(chunk.latency_ms.get("total", 0.0))


def _describe(req, cfg, policy, mapping, cameras, settings, clock, health_kind, warm_ms) -> dict[str, Any]:
    info = policy.info.to_dict()
    info.pop("memory", None)
    return {
        "mode": "live" if req.live else "shadow",
        "robot": cfg.model_dump(mode="json"),
        "pack": {"dir": info["pack_dir"], "name": info["pack_name"]},
        "target": policy.target, "target_reason": policy.target_reason, "seed": req.seed, "prompt": settings.prompt,
        "duration_s": req.duration_s,
        "policy": info,
        "mapping": mapping.describe(),
        "cameras": {name: {"kind": src.kind, "spec": req.cameras.get(name, "robot")} for name, src in cameras.items()},
        "loop": {"replan_s": settings.replan_s, "inference_timeout_s": settings.inference_timeout_s,
                 "blend_s": settings.blend_s, "control_rate_hz": cfg.control_rate_hz,
                 "simulated_latency_s": settings.simulated_latency_s,
                 "control_timeout_s": settings.control_timeout_s, "record_obs_every": settings.record_obs_every,
                 "clock": type(clock).__name__, "warmup_inference_ms": warm_ms},
        "health": {"provider": health_kind, "config": req.health},
        "host": {"python": platform.python_version(), "machine": platform.machine()},
    }


def execute(prepared: PreparedRun, on_status: Callable[[dict[str, Any]], None] | None = None,
            loop_hook: Callable[[RunLoop], None] | None = None) -> RunOutcome:
    """Run the loop; always closes cameras, robot, run directory and policy."""
    from ..health.metrics import RunMetrics  # noqa: PLC0415

    p = prepared
    view = None
    try:
        metrics = RunMetrics.for_robot(p.robot_config, p.cameras, p.rundir.path / "metrics.jsonl")
        if p.request.view:
            from .live_view import LiveView  # noqa: PLC0415 - optional (rerun extra)

            view = LiveView(p.request.view, list(p.robot_config.joints), p.rundir.path.name)
        loop = RunLoop(p.robot, p.safety, p.policy.infer, p.mapping, p.cameras, p.clock, p.settings, p.rundir,
                       health=p.health, on_status=on_status, stats=metrics, view=view)
        if loop_hook is not None:
            loop_hook(loop)
        return loop.run()
    finally:
        try:
            if view is not None:
                view.close()
        finally:
            p.close()
