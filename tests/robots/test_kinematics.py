"""Forward kinematics against hand-derived poses and an independent formulation, on random inputs.

Tolerances: 1e-12 m where both sides are exact float math; 1e-4 m for the ARX5 chain, whose URDF
writes pi as 3.1416 (7e-6 rad off, times < 0.3 m of lever).
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from vla_edge.robots.config import ArmKinematics, ChainJoint, KinematicsConfig
from vla_edge.robots.kinematics import DH_PRESETS, RobotKinematics

PI = math.pi
RNG = np.random.default_rng(20261125)


def arm(**kw) -> RobotKinematics:
    return RobotKinematics(KinematicsConfig(arms=[ArmKinematics(joint_indices=list(range(6)), **kw)]))


def rot_z(theta: float) -> np.ndarray:
    c, s = math.cos(theta), math.sin(theta)
    return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1.0]])


def rot_y(theta: float) -> np.ndarray:
    c, s = math.cos(theta), math.sin(theta)
    return np.array([[c, 0, s], [0, 1.0, 0], [-s, 0, c]])


@pytest.mark.parametrize("preset", ["ur3", "ur3e"])
def test_ur_zero_configuration_matches_published_geometry(preset):
    """At q = 0 a UR arm lies stretched along -x: x = a2 + a3, y = -(d4 + d6), z = d1 - d5, and the
    flange axes are x0, z0, -y0 (derived by hand from the DH table)."""
    p = DH_PRESETS[preset]
    d1, a2, a3, d4, d5, d6 = p.d[0], p.a[1], p.a[2], p.d[3], p.d[4], p.d[5]
    pose = arm(preset=preset).tcp_poses(np.zeros(6))[0][0]
    np.testing.assert_allclose(pose[:3, 3], [a2 + a3, -(d4 + d6), d1 - d5], atol=1e-12)
    np.testing.assert_allclose(pose[:3, :3], [[1, 0, 0], [0, 0, -1], [0, 1, 0]], atol=1e-12)
    if preset == "ur3":
        np.testing.assert_allclose(pose[:3, 3], [-0.4569, -0.19425, 0.06655], atol=1e-12)


def test_ur3_upright_pose():
    """q = [0, -pi/2, 0, -pi/2, 0, 0]: upper arm and forearm point straight up, wrist 2 flips d5 up."""
    p = DH_PRESETS["ur3"]
    pose = arm(preset="ur3").tcp_poses(np.array([0, -PI / 2, 0, -PI / 2, 0, 0]))[0][0]
    z = p.d[0] - p.a[1] - p.a[2] + p.d[4]
    np.testing.assert_allclose(pose[:3, 3], [0.0, -(p.d[3] + p.d[5]), z], atol=1e-12)
    assert z == pytest.approx(0.69415)


def test_ur3_dh_matches_independent_urdf_style_chain_on_random_configurations():
    """The same arm written the way ur_description's URDF does (origin xyz/rpy then z rotation)."""
    p = DH_PRESETS["ur3"]
    d1, a2, a3, d4, d5, d6 = p.d[0], p.a[1], p.a[2], p.d[3], p.d[4], p.d[5]
    z = [0.0, 0.0, 1.0]
    chain = [
        ChainJoint(xyz=[0, 0, d1], axis=z),
        ChainJoint(xyz=[0, 0, 0], rpy=[PI / 2, 0, 0], axis=z),
        ChainJoint(xyz=[a2, 0, 0], axis=z),
        ChainJoint(xyz=[a3, 0, d4], axis=z),
        ChainJoint(xyz=[0, -d5, 0], rpy=[PI / 2, 0, 0], axis=z),
        ChainJoint(xyz=[0, d6, 0], rpy=[PI / 2, PI, PI], axis=z),
    ]
    q = RNG.uniform(-2 * PI, 2 * PI, size=(200, 6))
    np.testing.assert_allclose(arm(chain=chain).tcp_poses(q)[0], arm(preset="ur3").tcp_poses(q)[0], atol=1e-12)


@pytest.mark.parametrize("preset", ["ur3", "ur3e", "arx5"])
def test_base_joint_rotates_tcp_about_vertical_axis(preset):
    kin = arm(preset=preset)
    for _ in range(50):
        q = RNG.uniform(-PI, PI, size=6)
        theta = RNG.uniform(-PI, PI)
        moved = q.copy()
        moved[0] += theta
        np.testing.assert_allclose(kin.tcp_positions(moved)[0, 0], rot_z(theta) @ kin.tcp_positions(q)[0, 0], atol=1e-12)


@pytest.mark.parametrize("preset", ["ur3", "arx5"])
def test_last_joint_spins_tool_in_place(preset):
    """The TCP lies on the last joint's axis (no tool offset sideways), so rotating it keeps the TCP."""
    kin = arm(preset=preset)
    q = RNG.uniform(-PI, PI, size=(100, 6))
    spun = q.copy()
    spun[:, 5] += RNG.uniform(-PI, PI, size=100)
    np.testing.assert_allclose(kin.tcp_positions(spun), kin.tcp_positions(q), atol=1e-12)


def test_arx5_folded_pose_from_urdf_offsets():
    """q = 0: sum of the URDF joint origins, with the two 180 deg flips about x (joint3, joint6)
    mirroring y and z of the offsets in between; TCP = 0.145 m along the last link."""
    x = 0.02 - 0.264 + 0.245 + 0.06575 + 0.02845 + 0.145
    y = 0.001  # joint5's -0.001 y offset, mirrored by the joint3 flip
    z = 0.0603 + 0.0402 + 0.056 + 0.0825 - 0.0825
    np.testing.assert_allclose(arm(preset="arx5").tcp_positions(np.zeros(6))[0, 0], [x, y, z], atol=1e-4)


def test_arx5_shoulder_rotates_everything_after_it_about_its_pivot():
    kin = arm(preset="arx5")
    pivot = np.array([0.02, 0.0, 0.0603 + 0.0402])  # joint2 origin, axis +y
    tcp0 = kin.tcp_positions(np.zeros(6))[0, 0]
    for theta in RNG.uniform(-0.05, 3.14, size=20):
        q = np.zeros(6)
        q[1] = theta
        expected = pivot + rot_y(theta) @ (tcp0 - pivot)
        np.testing.assert_allclose(kin.tcp_positions(q)[0, 0], expected, atol=1e-12)


def test_bimanual_arms_are_offset_by_their_bases():
    from vla_edge.robots.config import load_robot_config

    cfg = load_robot_config("arx5-bimanual")
    kin = RobotKinematics(cfg.kinematics)
    single = arm(preset="arx5")
    q = RNG.uniform(-1, 1, size=(30, 14))
    both = kin.tcp_positions(q)
    for k, arm_cfg in enumerate(cfg.kinematics.arms):
        own = single.tcp_positions(q[:, arm_cfg.joint_indices])[:, 0]
        np.testing.assert_allclose(both[:, k], own + np.array(arm_cfg.base_xyz), atol=1e-12)


def test_batched_and_single_evaluation_agree():
    kin = arm(preset="ur3e")
    q = RNG.uniform(-PI, PI, size=(64, 6))
    batched = kin.tcp_poses(q)[0]
    for i in range(0, 64, 9):
        np.testing.assert_allclose(kin.tcp_poses(q[i])[0][0], batched[i], atol=1e-15)


def test_tool_offset_defaults_to_the_preset_and_can_be_overridden():
    q = RNG.uniform(-1, 1, size=(10, 6))
    flange = arm(preset="arx5", tool_xyz=[0.0, 0.0, 0.0]).tcp_poses(q)[0]
    default = arm(preset="arx5").tcp_poses(q)[0]
    # The preset TCP is 0.145 m along the flange x axis.
    np.testing.assert_allclose(default[:, :3, 3], flange[:, :3, 3] + 0.145 * flange[:, :3, 0], atol=1e-12)
    ur_tool = arm(preset="ur3", tool_xyz=[0.0, 0.0, 0.1]).tcp_poses(q)[0]
    ur_flange = arm(preset="ur3").tcp_poses(q)[0]
    np.testing.assert_allclose(ur_tool[:, :3, 3], ur_flange[:, :3, 3] + 0.1 * ur_flange[:, :3, 2], atol=1e-12)
