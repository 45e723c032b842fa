"""ARX5 MIT frame codec: known byte vectors from the vendor layout, and random round trips.

Tolerance: truncating quantization, so |decode(encode(x)) - x| <= one step of the field
(pos 25/65535 rad; vel 36/4095 or 90/4095 rad/s; kp 500/4095; kd 50/511 or 5/4095; torque 60/4095 or
36/4095 N m), checked on fresh random values each run.
"""

from __future__ import annotations

import numpy as np
import pytest

from vla_edge.robots.arx5.protocol import (
    LAYOUTS, Feedback, MitCommand, MotorKind, decode_feedback, decode_mit, dm_special, dm_status_request,
    encode_feedback, encode_mit, quantization_step,
)


def test_dm_known_vector_matches_vendor_byte_layout():
    # pos 0 -> 0x7FFF, vel 0 -> 0x7FF, kp 500 -> 0xFFF, kd 0 -> 0, torque 0 -> 0x7FF
    assert encode_mit(MotorKind.DM, MitCommand(0.0, 0.0, 500.0, 0.0, 0.0)) == bytes.fromhex("7fff7fffff0007ff")


def test_ec_known_vector_matches_vendor_byte_layout():
    # mode 0 | kp 0xFFF | kd 0x1FF | pos 0x7FFF | vel 0x7FF | torque 0x7FF
    assert encode_mit(MotorKind.EC, MitCommand(0.0, 0.0, 500.0, 50.0, 0.0)) == bytes.fromhex("1fffff7fff7ff7ff")


def test_dm_special_and_status_request_frames():
    assert dm_special(0xFC) == bytes.fromhex("fffffffffffffffc")
    assert dm_status_request(0x105) == bytes([0x05, 0x01, 0xCC, 0, 0, 0, 0, 0])


@pytest.mark.parametrize("kind", list(MotorKind))
def test_mit_round_trip_random(kind):
    rng = np.random.default_rng()
    lay, step = LAYOUTS[kind], quantization_step(kind)
    for _ in range(300):
        cmd = MitCommand(*(rng.uniform(f.lo, f.hi) for f in (lay.pos, lay.vel, lay.kp, lay.kd, lay.torque)))
        back = decode_mit(kind, encode_mit(kind, cmd))
        for name, attr in (("pos", "pos"), ("vel", "vel"), ("kp", "kp"), ("kd", "kd"), ("torque", "torque")):
            assert abs(getattr(back, attr) - getattr(cmd, attr)) <= step[name] * (1 + 1e-9), (name, cmd, back)


@pytest.mark.parametrize("kind", list(MotorKind))
def test_out_of_range_values_clamp_to_range_ends(kind):
    lay = LAYOUTS[kind]
    back = decode_mit(kind, encode_mit(kind, MitCommand(100.0, -100.0, 1e4, -3.0, 1e3)))
    assert back.pos == pytest.approx(lay.pos.hi) and back.vel == pytest.approx(lay.vel.lo)
    assert back.kp == pytest.approx(lay.kp.hi) and back.kd == pytest.approx(lay.kd.lo)
    assert back.torque == pytest.approx(lay.torque.hi)


@pytest.mark.parametrize("kind", list(MotorKind))
def test_feedback_round_trip_random(kind):
    rng = np.random.default_rng()
    lay = LAYOUTS[kind]
    for _ in range(200):
        mid = int(rng.integers(1, 9))
        fb = Feedback(mid, rng.uniform(-12.5, 12.5), rng.uniform(lay.vel.lo, lay.vel.hi),
                      rng.uniform(lay.feedback_effort.lo, lay.feedback_effort.hi), float(rng.integers(20, 80)),
                      int(rng.integers(0, 2)))
        back = decode_feedback(kind, mid, encode_feedback(kind, fb))
        assert back is not None and back.motor_id == mid and back.state == fb.state
        assert abs(back.pos - fb.pos) <= lay.pos.step and abs(back.vel - fb.vel) <= lay.vel.step
        assert abs(back.effort - fb.effort) <= lay.feedback_effort.step
        assert back.temperature == fb.temperature


def test_ec_frames_other_than_position_feedback_are_rejected():
    assert decode_feedback(MotorKind.EC, 1, bytes([0x40, 0, 0, 0, 0, 0, 0, 0])) is None  # ack 2 frame
    assert decode_feedback(MotorKind.DM, 5, b"\x01\x02") is None
