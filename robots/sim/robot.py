"""`ur3-sim`, `arx5-sim`, `arx5-bimanual-sim`: a Robot backed by a MuJoCo world.

Clock: with `realtime: true` (default, for `vla-edge run`) a thread advances the world one control
period per wall-clock period and the arm holds its last target between commands, like a real
streaming controller. With `realtime: false` (tests) nothing runs in the background: each
`command_joints` advances exactly one control period, `step(n)` advances n periods, and
`sim_time` is the clock. State timestamps are time.monotonic() in real time and
`connect-time monotonic + sim_time` in fast mode, so they stay in the monotonic domain.
"""

from __future__ import annotations

import logging
import threading
import time

import numpy as np

from ...errors import VlaEdgeError
from ..base import JointState, MotionPort, Robot, RobotCapabilities
from ..config import RobotConfig
from .mjcf import sim_camera_names
from .render import CameraRenderer, select_gl_backend
from .settings import SimSettings, parse_sim_settings

log = logging.getLogger(__name__)


class SimMotionPort(MotionPort):
    """Sets joint position targets of the simulated arm; e-stop latches until a new port is opened."""

    def __init__(self, robot: "SimRobot"):
        self._robot = robot
        self._estopped = False
        self.last_sent: np.ndarray | None = None  # what the sim was actually told (after range clip)

    def command_joints(self, q_target: np.ndarray) -> None:
        world = self._robot._require_world()
        q = np.asarray(q_target, dtype=float)
        if q.shape != (world.dof,) or not np.all(np.isfinite(q)):
            self.stop()
            raise VlaEdgeError(
                f"{self._robot.name}: joint target must be {world.dof} finite values, got shape {q.shape}; arm stopped"
            )
        if self._estopped:
            raise VlaEdgeError(f"{self._robot.name}: emergency stop is latched; open a new motion port to move again")
        world.set_target(q)
        self.last_sent = np.clip(q, world.q_min, world.q_max)
        if not self._robot.settings.realtime:
            world.advance(1)

    def stop(self) -> None:
        if self._robot._world is not None:
            self._robot._world.hold()

    def emergency_stop(self) -> None:
        self._estopped = True
        if self._robot._world is not None:
            self._robot._world.halt()


class SimRobot(Robot):
    """A simulated arm (or pair); `shadow=True` makes `open_motion` refuse, as for real arms."""

    def __init__(self, config: RobotConfig, shadow: bool):
        self.name = config.name
        self.config = config
        self.shadow = shadow
        self.settings: SimSettings = parse_sim_settings(config.connection, config.dof)
        self._caps = RobotCapabilities(
            joint_names=tuple(config.joints),
            control_rate_hz=config.control_rate_hz,
            gripper_indices=config.gripper_indices,
            arms=len(config.kinematics.arms),
            camera_names=sim_camera_names(config),
        )
        self._world = None
        self.operator = None  # the scripted demonstration moving the arm in shadow mode, if any
        self._renderer: CameraRenderer | None = None
        self._port: SimMotionPort | None = None
        self._thread: threading.Thread | None = None
        self._running = threading.Event()
        self._t0 = 0.0

    @property
    def capabilities(self) -> RobotCapabilities:
        return self._caps

    @property
    def sim_time(self) -> float:
        """Seconds of simulated time since connect."""
        return self._require_world().sim_time

    @property
    def world(self):
        """The MuJoCo world (model, data, xml) for viewers and tests; None before connect."""
        return self._world

    def connect(self) -> None:
        if self._world is not None:
            return
        if self.settings.render != "off":
            select_gl_backend()
        try:
            from .world import SimWorld
        except ImportError as exc:
            raise VlaEdgeError(f"{self.name}: the simulator needs the 'mujoco' package ({exc})") from None
        self._world = SimWorld(self.config, self.settings)
        self._renderer = CameraRenderer(
            self._world.model, self._caps.camera_names, self.settings.image_height, self.settings.image_width,
            self.settings.render,
        )
        self._t0 = time.monotonic()
        self.operator = None
        if self.settings.operator == "demo" and self.shadow:
            from .operator import demo_loop

            self.operator = demo_loop(self.config, self._world.q.copy(), self._world.body_position("object0"))
            self._world.driver = self.operator.position
        if self.settings.realtime:
            self._running.set()
            self._thread = threading.Thread(target=self._run_realtime, name=f"{self.name}-clock", daemon=True)
            self._thread.start()

    def _run_realtime(self) -> None:
        """Advance one period per wall-clock period; if the host falls behind by more than a few
        periods, skip ahead instead of fast-forwarding (a real arm would not catch up either)."""
        world, period = self._world, self._world.period
        next_t = time.monotonic() + period
        while self._running.is_set():
            delay = next_t - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            world.advance(1)
            next_t += period
            behind = time.monotonic() - next_t
            if behind > 5 * period:
                log.warning("%s: simulator fell %.1f ms behind real time; skipping ahead", self.name, behind * 1e3)
                next_t = time.monotonic() + period

    def disconnect(self) -> None:
        if self._port is not None:
            self._port.stop()
            self._port = None
        self._running.clear()
        if self._thread is not None:
            self._thread.join(timeout=2.0)
            self._thread = None
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None
        self._world = None

    def _require_world(self):
        if self._world is None:
            raise VlaEdgeError(f"{self.name}: simulator not connected; call connect() first")
        return self._world

    def step(self, periods: int = 1) -> None:
        """Fast mode only: advance the world by `periods` control periods (holding the target)."""
        if self.settings.realtime:
            raise VlaEdgeError(f"{self.name}: step() is for realtime: false; the realtime clock thread steps the sim")
        self._require_world().advance(periods)

    def clock(self) -> float:
        """Now, in the domain of this robot's state timestamps (give it to the safety filter in
        fast mode so staleness is judged in simulated time)."""
        if self.settings.realtime:
            return time.monotonic()
        return self._t0 + self._require_world().sim_time

    def read_state(self) -> JointState:
        world = self._require_world()
        with world.lock:
            q, v, t_sim = world.q.copy(), world.v.copy(), world.sim_time
            tcp = world.tcp_poses()
        stamp = time.monotonic() if self.settings.realtime else self._t0 + t_sim  # == self.clock()
        source = "off" if self.settings.render == "off" else ("synthetic" if self._renderer.synthetic else "mujoco")
        return JointState(
            q=q, qd=v, timestamp=stamp, tcp_pose=tcp,
            status={"sim_time": t_sim, "camera_source": source, "motion_open": self._port is not None},
        )

    def read_cameras(self) -> dict[str, np.ndarray]:
        """Renders from a snapshot of the world, so the realtime clock keeps stepping meanwhile
        (software GL takes tens of ms per camera)."""
        world = self._require_world()
        if self.settings.render == "off":
            return {}
        return self._renderer.render(world.snapshot())

    def open_motion(self) -> MotionPort:
        if self.shadow:
            raise VlaEdgeError(f"{self.name}: opened in shadow mode, which has no motion path")
        world = self._require_world()
        world.driver = None  # the filter is the only thing that moves the arm from now on
        self._port = SimMotionPort(self)
        return self._port


def make_robot(config: RobotConfig, shadow: bool) -> Robot:
    """Registry entry point for the *-sim robots."""
    return SimRobot(config, shadow)
