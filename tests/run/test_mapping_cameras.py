"""Name mapping between a policy and a robot, and camera sources with frame accounting."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from vla_edge.errors import ConfigError
from vla_edge.run.cameras import CameraError, FrameStats, OpenCVCamera, SyntheticCamera, build_sources, parse_camera_spec
from vla_edge.run.clock import ManualClock
from vla_edge.run.mapping import JointMapping

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run_fakes import FakeRobot, ur3_config  # noqa: E402

JOINTS = ("shoulder_pan", "shoulder_lift", "elbow", "wrist_1", "wrist_2", "wrist_3")


def test_mapping_reorders_drops_and_fills_against_a_permutation_reference():
    rng = np.random.default_rng()
    policy_names = tuple(rng.permutation(list(JOINTS) + ["gripper"]))
    fill = rng.normal(size=7)
    m = JointMapping.build(policy_names, policy_names, JOINTS, fill)
    actions = rng.normal(size=(12, 7))
    out = m.actions_for_robot(actions)
    for k, joint in enumerate(JOINTS):
        np.testing.assert_array_equal(out[:, k], actions[:, policy_names.index(joint)])
    assert m.dropped_actions == ("gripper",) and m.filled_state == ("gripper",)
    q = rng.normal(size=6)
    state = m.state_for_policy(q)
    for i, name in enumerate(policy_names):
        expected = fill[i] if name == "gripper" else q[JOINTS.index(name)]
        assert state[i] == pytest.approx(expected, abs=1e-6)  # float32 state


def test_mapping_refuses_a_robot_joint_the_policy_does_not_drive():
    with pytest.raises(ConfigError, match=r"\['wrist_3'\] are not among the policy's actions"):
        JointMapping.build(JOINTS[:5] + ("gripper",), JOINTS, JOINTS)
    with pytest.raises(ConfigError, match="duplicate"):
        JointMapping.build(JOINTS + ("elbow",), JOINTS, JOINTS)


def test_frame_stats_count_gaps_at_the_nominal_rate_and_repeats():
    stats = FrameStats()
    for t in [0.0, 0.033, 0.066, 0.165, 0.165, 0.198]:  # one gap of 3 periods, one repeat
        stats.record(t, 0.033)
    assert stats.frames == 6 and stats.dropped == 2 and stats.repeated == 1
    assert stats.max_gap_s == pytest.approx(0.099)


def test_synthetic_camera_moves_and_is_reproducible():
    clock = ManualClock()
    a, b = SyntheticCamera("base", clock.now, 32, 40, seed=1), SyntheticCamera("base", clock.now, 32, 40, seed=1)
    frames = []
    for _ in range(3):
        (img_a, t), (img_b, _) = a.read(), b.read()
        np.testing.assert_array_equal(img_a, img_b)
        assert img_a.shape == (32, 40, 3) and img_a.dtype == np.uint8 and t == clock.now()
        frames.append(img_a)
        clock.advance(0.1)
    assert not np.array_equal(frames[0], frames[1])


def test_build_sources_prefers_explicit_specs_and_refuses_missing_required_cameras():
    clock = ManualClock()
    robot = FakeRobot(ur3_config(), clock, shadow=True, cameras=("base",))
    wanted = {"base_0_rgb": "base", "left_wrist_0_rgb": "wrist"}
    src = build_sources(wanted, ("base",), {}, robot, clock.now)
    assert set(src) == {"base"} and src["base"].kind == "robot"  # optional wrist camera absent: skipped
    src = build_sources(wanted, ("base",), {"wrist": "synthetic"}, robot, clock.now)
    assert src["wrist"].kind == "synthetic"
    with pytest.raises(ConfigError, match="requires it but robot 'fake-ur3' provides"):
        build_sources(wanted, ("base", "wrist"), {}, robot, clock.now)
    with pytest.raises(ConfigError, match="not used by the policy"):
        build_sources(wanted, ("base",), {"front": "0"}, robot, clock.now)
    with pytest.raises(ConfigError, match="NAME=SPEC"):
        parse_camera_spec("base")


def test_opencv_camera_without_opencv_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "cv2", None)  # import cv2 -> ImportError
    cam = OpenCVCamera("base", 0, ManualClock().now)
    with pytest.raises(CameraError, match=r"install vla-edge\[cameras\]"):
        cam.open()
