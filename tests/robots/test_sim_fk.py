"""The safety filter's forward kinematics (vla_edge.robots.kinematics) against the MuJoCo models.

Two independent computations of the TCP pose: MuJoCo composes body frames from the generated
MJCF; RobotKinematics multiplies DH / URDF-chain transforms in numpy. Fresh random joint vectors
over the full hardware range; tolerance 1e-8 m and 1e-8 on rotation-matrix entries (the MJCF
stores 12 significant digits).
"""

from __future__ import annotations

import numpy as np
import pytest

from vla_edge.robots.sim.render import select_gl_backend  # noqa: E402

select_gl_backend()  # MUJOCO_GL must be chosen before MuJoCo is first imported
mujoco = pytest.importorskip("mujoco")

from vla_edge.robots.config import parse_robot_config  # noqa: E402
from vla_edge.robots.kinematics import RobotKinematics  # noqa: E402
from vla_edge.robots.registry import load_registered_config  # noqa: E402
from vla_edge.robots.sim.world import SimWorld  # noqa: E402
from vla_edge.robots.sim.settings import parse_sim_settings  # noqa: E402


@pytest.mark.parametrize("name", ["ur3-sim", "arx5-sim", "arx5-bimanual-sim"])
def test_fk_matches_mujoco_tcp_sites(name):
    data = load_registered_config(name).model_dump()
    data["connection"] = {"realtime": False, "render": "off"}
    cfg = parse_robot_config(data, name)
    world = SimWorld(cfg, parse_sim_settings(cfg.connection, cfg.dof))
    kin = RobotKinematics(cfg.kinematics)
    rng = np.random.default_rng()
    lo, hi = np.array(cfg.hardware_limits.position_min), np.array(cfg.hardware_limits.position_max)
    for _ in range(25):
        q = rng.uniform(lo, hi)
        world._write_qpos(q)
        mujoco.mj_kinematics(world.model, world.data)
        poses = kin.tcp_poses(q)
        for arm, sid in enumerate(world.site_ids):
            np.testing.assert_allclose(world.data.site_xpos[sid], poses[arm][0, :3, 3], atol=1e-8)
            np.testing.assert_allclose(world.data.site_xmat[sid].reshape(3, 3), poses[arm][0, :3, :3], atol=1e-8)
