"""The built-in demo policy: a real pi0.5 pack whose forward lands on the fitted readout."""

from __future__ import annotations

import numpy as np
import pytest
import yaml

from vla_edge import Observation, load_policy
from vla_edge.packs.demo import demo_pack_path
from vla_edge.packs.demo_policy import DEMO_PROMPT, _render_demonstration


@pytest.fixture(scope="module")
def ur3_demo():
    return demo_pack_path("ur3-sim"), _render_demonstration("ur3")


def test_demo_pack_records_its_fit(ur3_demo):
    pack, _ = ur3_demo
    fit = yaml.safe_load((pack / "pack.yaml").read_text())["source"]["demo_fit"]
    assert fit["samples"] >= 20 and 0 < fit["rms_error_rad"] < 0.05  # leave-one-out, robot units


def test_forward_pass_lands_on_the_demonstration_whatever_the_noise(ur3_demo):
    pack, (images, states, future, _, _) = ur3_demo
    rng = np.random.default_rng(7)
    with load_policy(pack, target="reference") as policy:
        for k in rng.choice(len(images), 4, replace=False):
            obs = Observation(cameras=images[k], state=states[k].astype(np.float32), prompt=DEMO_PROMPT)
            a = policy.infer(obs).actions
            b = policy.infer(obs, noise=(3.0 * rng.standard_normal(policy.noise_shape)).astype(np.float32)).actions
            np.testing.assert_allclose(a, b, atol=1e-4)  # the flow cancels the noise exactly
            np.testing.assert_allclose(a, np.broadcast_to(a[0], a.shape), atol=1e-4)  # one target pose
            assert np.abs(a[0] - future[k]).max() < 0.05  # where the demonstrated arm is LOOKAHEAD_S later


def test_every_sim_robot_has_its_own_demo_pack():
    from vla_edge.packs.demo import demo_pack_name

    assert len({demo_pack_name(r) for r in ("ur3-sim", "arx5-sim", "arx5-bimanual-sim")}) == 3
    assert demo_pack_name("ur3") == demo_pack_name("ur3-sim")
