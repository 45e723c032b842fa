"""The LIBERO observation mapping (openpi's conventions) and the space checks, on the fake
environment's observations and fresh random quaternions."""

from __future__ import annotations

import numpy as np
import pytest
from fake_libero import FakeLiberoEnv

from vla_edge.errors import ConfigError
from vla_edge.eval import conventions as C
from vla_edge.eval.observation import camera_images, check_spaces, state_vector, to_observation, to_openpi_request


def _quat_xyzw(axis: np.ndarray, angle: float) -> np.ndarray:
    axis = axis / np.linalg.norm(axis)
    return np.concatenate([axis * np.sin(angle / 2), [np.cos(angle / 2)]])


def test_axis_angle_recovers_axis_and_angle_of_random_rotations():
    rng = np.random.default_rng()
    for _ in range(50):
        axis, angle = rng.standard_normal(3), rng.uniform(0.01, np.pi - 0.01)
        got = C.quat_to_axis_angle(_quat_xyzw(axis, angle))
        np.testing.assert_allclose(got, axis / np.linalg.norm(axis) * angle, rtol=1e-9, atol=1e-9)
    np.testing.assert_array_equal(C.quat_to_axis_angle(np.array([0.0, 0.0, 0.0, 1.0])), np.zeros(3))


def test_images_are_rotated_180_degrees_and_resized_to_224():
    env = FakeLiberoEnv()
    raw = env.reset("libero_spatial", 0, 0, 7, 256)
    images = camera_images(raw)
    assert set(images) == {C.AGENTVIEW, C.WRIST}
    for img in images.values():
        assert img.shape == (224, 224, 3) and img.dtype == np.uint8
        # the red marker LIBERO renders top-left must end bottom-right (upright, as in training)
        assert img[-10:, -10:, 0].min() > 200 and img[:10, :10, 0].max() < 50
    # exactly a 180 degree rotation when no resize is needed
    raw224 = env.reset("libero_spatial", 0, 0, 7, 224)
    np.testing.assert_array_equal(camera_images(raw224)[C.AGENTVIEW], np.rot90(raw224["agentview_image"], 2))


def test_state_is_eef_pos_axis_angle_gripper_and_request_uses_openpi_keys():
    env = FakeLiberoEnv()
    raw = env.reset("libero_spatial", 1, 2, 3, 256)
    for _ in range(4):
        raw = env.step(np.array([0.2, -0.1, 0.3, 0, 0, 0, -1.0])).raw
    state = state_vector(raw)
    expected = np.concatenate([raw["robot0_eef_pos"], C.quat_to_axis_angle(raw["robot0_eef_quat"]), raw["robot0_gripper_qpos"]])
    assert state.dtype == np.float32 and state.shape == (8,)
    np.testing.assert_allclose(state, expected, rtol=1e-6)
    obs = to_observation(raw, "reach up", 1.0)
    obs.validate((C.AGENTVIEW,), 8)
    request = to_openpi_request(obs)
    assert set(request) == {"observation/image", "observation/wrist_image", "observation/state", "prompt"}


def test_check_spaces_refuses_a_joint_space_pack():
    check_spaces("ok", C.STATE_NAMES, C.ACTION_NAMES + ("pad",), dict(C.CAMERA_SLOTS), (C.AGENTVIEW,))
    with pytest.raises(ConfigError, match="--robot libero"):
        check_spaces("ur3", ("shoulder_pan",) * 8, C.ACTION_NAMES, {}, ())
    with pytest.raises(ConfigError, match="actions"):
        check_spaces("ur3", C.STATE_NAMES, ("shoulder_pan",) * 7, {}, ())
    with pytest.raises(ConfigError, match="cameras"):
        check_spaces("x", C.STATE_NAMES, C.ACTION_NAMES, {"base_0_rgb": "base"}, ("base",))


def test_tiny_libero_pack_runs_on_a_mapped_observation(tmp_path):
    """The real Policy API on a `--robot libero` pack: the mapped observation is accepted and
    the chunk has LIBERO's 7 action columns."""
    from vla_edge.eval.policies import PackPolicy
    from vla_edge.families.pi05.synth import synth_pack

    path = synth_pack(tmp_path / "libero-tiny", robot="libero", golden=False)
    policy = PackPolicy(str(path), "reference", "tiny")
    raw = FakeLiberoEnv().reset("libero_spatial", 0, 0, 7, 256)
    rng = np.random.default_rng(1)
    out = policy.infer(to_observation(raw, "reach", 0.0), rng.standard_normal(policy.noise_shape).astype(np.float32))
    assert out.actions.shape == (10, 7) and np.all(np.isfinite(out.actions)) and out.latency_ms > 0
    policy.close()
