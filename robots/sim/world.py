"""The MuJoCo world behind a simulated robot: DOF vector <-> qpos mapping and time stepping.

Arm joints and gripper fingers are moved kinematically (see motion_model.py) once per control
period; within the period MuJoCo integrates the free objects in physics sub-steps while the arm
qpos is interpolated, so the arm can push objects. The DOF vector is the robot's action layout:
hinge angles (rad) and gripper opening widths (m, split equally between the two fingers).
"""

from __future__ import annotations

import threading

import numpy as np

from ..config import RobotConfig
from .mjcf import ArmLayout, build_scene_xml
from .motion_model import braking_step, limited_step
from .settings import SimSettings


class SimWorld:
    """Owns MjModel/MjData; every access to `data` goes through `lock`."""

    def __init__(self, config: RobotConfig, settings: SimSettings):
        import mujoco

        self._mujoco = mujoco
        xml, self.layouts = build_scene_xml(config, settings.timestep, settings.seed)
        self.xml = xml
        self.model = mujoco.MjModel.from_xml_string(xml)
        self.data = mujoco.MjData(self.model)
        self.lock = threading.RLock()
        self.dof = config.dof
        self.period = config.control_period_s
        hw = config.hardware_limits
        self.q_min = np.array(hw.position_min, dtype=float)
        self.q_max = np.array(hw.position_max, dtype=float)
        self.v_max = np.array(hw.velocity, dtype=float)
        self.a_max = np.array(hw.acceleration, dtype=float)
        self.substeps = max(1, int(round(self.period / self.model.opt.timestep)))
        self._map_dofs()
        self.q = self._initial_q(config, settings)
        self.v = np.zeros(self.dof)
        self.target = self.q.copy()
        self.braking = False
        self.sim_time = 0.0
        self._render_data = None  # private MjData for rendering outside the lock (snapshot())
        # Shadow mode with a scripted operator: sim time -> joint target, applied every period.
        self.driver = None
        mujoco.mj_resetData(self.model, self.data)
        self._write_qpos(self.q)
        mujoco.mj_forward(self.model, self.data)

    def _map_dofs(self) -> None:
        """qpos addresses per DOF; a gripper DOF drives two finger slides."""
        adr: list[list[int]] = [[] for _ in range(self.dof)]
        self.gripper = np.zeros(self.dof, dtype=bool)
        for lay in self.layouts:
            for name, j in zip(lay.joint_names, lay.joint_indices):
                adr[j].append(int(self.model.joint(name).qposadr[0]))
            if lay.gripper_index is not None:
                self.gripper[lay.gripper_index] = True
                adr[lay.gripper_index] = [int(self.model.joint(n).qposadr[0]) for n in lay.finger_joints]
        missing = [i for i, a in enumerate(adr) if not a]
        if missing:
            raise ValueError(f"simulator model has no joint for DOF indices {missing}")  # config validation prevents this
        self._adr = adr
        jnt_of = {int(a): j for j, a in enumerate(self.model.jnt_qposadr)}
        self._vadr = [[int(self.model.jnt_dofadr[jnt_of[a]]) for a in adrs] for adrs in adr]
        self.site_ids = [int(self.model.site(f"{lay.prefix}tcp").id) for lay in self.layouts]

    def _initial_q(self, config: RobotConfig, settings: SimSettings) -> np.ndarray:
        if settings.initial_q is not None:
            return np.clip(np.array(settings.initial_q), self.q_min, self.q_max)
        lim = config.limits
        lo = np.array(lim.position_min if lim.position_min is not None else self.q_min, dtype=float)
        hi = np.array(lim.position_max if lim.position_max is not None else self.q_max, dtype=float)
        m = lim.position_margin + 0.01
        q = np.clip(np.zeros(self.dof), lo + m, hi - m)
        for g in config.grippers:  # grippers start half open, inside their configured range
            q[g.index] = 0.5 * (g.range[0] + g.range[1])
        return q

    def _write_qpos(self, q: np.ndarray, data=None) -> None:
        data = self.data if data is None else data
        for i, adrs in enumerate(self._adr):
            value = q[i] / 2.0 if self.gripper[i] else q[i]
            for a in adrs:
                data.qpos[a] = value

    def pose(self, data, q: np.ndarray) -> None:
        """Put the arm(s) of another MjData of this model at DOF vector q (kinematics only): how
        the report's video shows logged joint positions."""
        self._write_qpos(np.asarray(q, dtype=float), data)
        self._mujoco.mj_kinematics(self.model, data)
        self._mujoco.mj_camlight(self.model, data)  # cameras and lights follow the bodies

    def _write_qvel(self, v: np.ndarray) -> None:
        for i, adrs in enumerate(self._vadr):
            for a in adrs:
                self.data.qvel[a] = v[i] / 2.0 if self.gripper[i] else v[i]

    def set_target(self, target: np.ndarray) -> None:
        with self.lock:
            self.target = np.clip(target, self.q_min, self.q_max)
            self.braking = False

    def hold(self) -> None:
        """Controlled stop: decelerate at the acceleration limit, then hold where the arm stopped."""
        with self.lock:
            self.braking = True

    def halt(self) -> None:
        """Emergency stop: the simulated arm has no inertia to dissipate, so it stops in place."""
        with self.lock:
            self.v[:] = 0.0
            self.target = self.q.copy()
            self.braking = False

    def advance(self, periods: int = 1) -> None:
        """Advance the world by whole control periods."""
        mujoco = self._mujoco
        with self.lock:
            for _ in range(periods):
                if self.driver is not None:
                    self.target = np.clip(self.driver(self.sim_time + self.period), self.q_min, self.q_max)
                    self.braking = False
                q0 = self.q
                if self.braking:
                    self.v = braking_step(self.v, self.period, self.a_max)
                    self.q = np.clip(self.q + self.v * self.period, self.q_min, self.q_max)
                    self.target = self.q.copy()
                    self.braking = bool(np.any(self.v != 0.0))
                else:
                    self.q, self.v = limited_step(self.q, self.v, self.target, self.period, self.v_max, self.a_max)
                    self.q = np.clip(self.q, self.q_min, self.q_max)
                for s in range(1, self.substeps + 1):
                    self._write_qpos(q0 + (self.q - q0) * (s / self.substeps))
                    self._write_qvel(self.v)
                    mujoco.mj_step(self.model, self.data)
                self._write_qpos(self.q)
                mujoco.mj_forward(self.model, self.data)
                self.sim_time += self.period

    def snapshot(self):
        """A private MjData at the current state, for rendering outside the lock."""
        mujoco = self._mujoco
        if self._render_data is None:
            self._render_data = mujoco.MjData(self.model)
        with self.lock:
            self._render_data.qpos[:] = self.data.qpos
            self._render_data.time = self.data.time
        mujoco.mj_kinematics(self.model, self._render_data)
        mujoco.mj_camlight(self.model, self._render_data)
        return self._render_data

    def body_position(self, name: str) -> np.ndarray:
        """World position (m) of a body, e.g. 'object0' (the red cube)."""
        with self.lock:
            return self.data.xpos[self.model.body(name).id].copy()

    def tcp_poses(self) -> np.ndarray:
        """[x, y, z, rx, ry, rz] per arm (rotation vector), concatenated."""
        out = []
        with self.lock:
            for sid in self.site_ids:
                quat = np.zeros(4)
                self._mujoco.mju_mat2Quat(quat, self.data.site_xmat[sid])
                w, xyz = quat[0], quat[1:]
                angle = 2.0 * np.arctan2(np.linalg.norm(xyz), w)
                axis = xyz / np.linalg.norm(xyz) if np.linalg.norm(xyz) > 1e-12 else np.zeros(3)
                out.append(np.concatenate([self.data.site_xpos[sid].copy(), axis * angle]))
        return np.concatenate(out)
