"""The reference W4A4 linear (targets/reference/w4a4.py) against independent simulations of the
same definition, on fresh random inputs:

- integer accumulators: bit-exact against a pure-Python int sum of code products;
- the whole layer: against a float64 evaluation of fake-quantised activations x rotated weight
  codes (rel <= 1e-6: the two differ only in float summation order and the float32 result);
- against the float layer it approximates: within 4-bit error, never exact (rel in (0, 0.4));
- per-step tables: each step uses its own row, a table of the wrong length is an error;
- the pack tensor form: written to GGUF and read back unchanged, damaged forms refused.
"""

from __future__ import annotations

import numpy as np
import pytest

from vla_edge.errors import PackError
from vla_edge.packs.gguf_io import GGUFFile, write_gguf
from vla_edge.packs.manifest import W4A4
from vla_edge.packs.w4a4 import W4A4Layer, describe_rotation, pack_nibbles, read_layers, unpack_nibbles
from vla_edge.targets.reference.w4a4 import (W4A4Linear, integer_accumulators, per_token_scales, quantize,
                                             rotate_input, rotate_output)


def _blocks(rng, n, b):
    return np.stack([np.linalg.qr(rng.standard_normal((b, b)))[0] for _ in range(n)]).astype(np.float32)


def random_layer(rng, out=48, n_in=64, group=32, act_group=1, steps=3, block=16, out_block=16, w=None):
    """A W4A4 layer quantised (RTN, symmetric, per row and group) from a random float weight w."""
    w = rng.standard_normal((out, n_in)) if w is None else w
    perm = rng.permutation(n_in)
    rot_in, rot_out = _blocks(rng, n_in // block, block), _blocks(rng, out // out_block, out_block)
    r_in = np.zeros((n_in, n_in))
    for i, r in enumerate(rot_in):
        r_in[i * block:(i + 1) * block, i * block:(i + 1) * block] = r
    p = np.zeros((n_in, n_in))
    p[perm, np.arange(n_in)] = 1
    r_out = np.zeros((out, out))
    for i, r in enumerate(rot_out):
        r_out[i * out_block:(i + 1) * out_block, i * out_block:(i + 1) * out_block] = r
    w_rot = (r_out @ w @ p @ r_in).reshape(out, n_in // group, group)
    scale = np.abs(w_rot).max(axis=2) / 7
    codes = np.clip(np.rint(w_rot / scale[:, :, None]), -8, 7).reshape(out, n_in).astype(np.int8)
    act = rng.uniform(0.05, 0.4, (steps, n_in // act_group)).astype(np.float32)
    layer = W4A4Layer("action.blk.0.attn_q.weight", codes, scale.astype(np.float32), perm.astype(np.int64), rot_in,
                      rot_out, act, group, act_group)
    return layer, w


def fake_quant_reference(x, layer, scales):
    """float64 definition: fake-quantised rotated activations times the dequantised rotated weight,
    then the output rotation; written without the kernel's helpers."""
    n_in = x.shape[1]
    r_in = np.zeros((n_in, n_in))
    b = layer.rot_in.shape[1]
    for i, r in enumerate(layer.rot_in.astype(np.float64)):
        r_in[i * b:(i + 1) * b, i * b:(i + 1) * b] = r
    xr = (x.astype(np.float64)[:, layer.perm] @ r_in).astype(np.float32)
    s = np.repeat(scales.astype(np.float32), layer.act_group, axis=-1)
    xq = np.clip(np.rint(xr / s), -8, 7).astype(np.float64) * s
    wq = layer.codes.astype(np.float64) * np.repeat(layer.wscale.astype(np.float64), layer.weight_group, axis=1)
    y = (xq @ wq.T).astype(np.float32).astype(np.float64)
    out = layer.codes.shape[0]
    r_out = np.zeros((out, out))
    c = layer.rot_out.shape[1]
    for i, r in enumerate(layer.rot_out.astype(np.float64)):
        r_out[i * c:(i + 1) * c, i * c:(i + 1) * c] = r
    return y @ r_out


def test_nibble_packing_round_trips_every_code():
    rng = np.random.default_rng()
    codes = rng.integers(-8, 8, size=(7, 30)).astype(np.int8)
    packed = pack_nibbles(codes)
    assert packed.shape == (7, 15) and packed.dtype == np.uint8
    assert np.array_equal(unpack_nibbles(packed), codes)
    assert np.array_equal(unpack_nibbles(packed.view(np.int8)), codes)


@pytest.mark.parametrize("segment", [1, 8, 32])
def test_integer_accumulators_are_bit_exact(segment):
    rng = np.random.default_rng()
    qx = rng.integers(-8, 8, size=(5, 64)).astype(np.int8)
    qw = rng.integers(-8, 8, size=(6, 64)).astype(np.int8)
    acc = integer_accumulators(qx, qw, segment)
    assert acc.dtype == np.int64
    for t in range(5):
        for o in range(6):
            for s in range(64 // segment):
                cols = range(s * segment, (s + 1) * segment)
                assert acc[t, o, s] == sum(int(qx[t, c]) * int(qw[o, c]) for c in cols)


@pytest.mark.parametrize("act_group", [1, 16, 32, 64])
def test_layer_matches_float64_definition(act_group):
    rng = np.random.default_rng()
    layer, _ = random_layer(rng, act_group=act_group)
    lin = W4A4Linear(layer, "per_step", 3)
    x = rng.standard_normal((7, 64)).astype(np.float32)
    outs = []
    for step in range(3):
        y = lin(x, step, 3)
        expect = fake_quant_reference(x, layer, layer.act_scale[step][None, :])
        assert y.dtype == np.float32 and y.shape == (7, 48)
        assert np.linalg.norm(y - expect) <= 1e-6 * np.linalg.norm(expect)
        outs.append(y)
    assert not np.array_equal(outs[0], outs[1])  # each step its own scales


def test_per_token_dynamic_scales_match_definition():
    rng = np.random.default_rng()
    layer, _ = random_layer(rng, act_group=32, steps=1)
    layer.act_scale = None
    x = rng.standard_normal((4, 64)).astype(np.float32)
    y = W4A4Linear(layer, "per_token", None)(x, None, None)
    xr = rotate_input(x, layer.perm, layer.rot_in)
    expect = fake_quant_reference(x, layer, per_token_scales(xr, 32))
    assert np.linalg.norm(y - expect) <= 1e-6 * np.linalg.norm(expect)
    # max |x| of each group lands exactly on code +-7
    q = quantize(xr, per_token_scales(xr, 32), 32)
    assert np.all(np.abs(q).reshape(4, 2, 32).max(axis=-1) == 7)


def test_close_to_the_float_layer_within_4bit_error():
    rng = np.random.default_rng()
    layer, w = random_layer(rng, steps=1, act_group=64)
    x = rng.standard_normal((16, 64)).astype(np.float32)
    layer.act_scale = np.full((1, 1), 3.0 / 7, np.float32)  # rotated activations ~N(0,1): clip at 3 sigma
    y, ref = W4A4Linear(layer, "per_step", 1)(x, 0, 1), x.astype(np.float64) @ w.T
    rel = np.linalg.norm(y - ref) / np.linalg.norm(ref)
    assert 0 < rel < 0.4


def test_rotations_are_exact_inverses_in_float64():
    rng = np.random.default_rng()
    blocks = _blocks(rng, 4, 16)
    x = rng.standard_normal((3, 64)).astype(np.float32)
    perm = rng.permutation(64)
    back = rotate_output(rotate_input(x, perm, blocks), np.transpose(blocks, (0, 2, 1)))
    assert np.allclose(back, x[:, perm], atol=1e-5)


def test_wrong_table_size_or_step_is_an_error():
    rng = np.random.default_rng()
    layer, _ = random_layer(rng, steps=3)
    lin = W4A4Linear(layer, "per_step", 3)
    x = rng.standard_normal((2, 64)).astype(np.float32)
    with pytest.raises(PackError, match="3 rows but the model runs 10 flow steps"):
        lin(x, 0, 10)
    with pytest.raises(PackError, match="step 3"):
        lin(x, 3, 3)
    with pytest.raises(PackError, match="step None"):
        lin(x, None, 3)


def _section(layer, **kw):
    return W4A4(weight_group_size=layer.weight_group, act_scales="per_step", act_group_size=layer.act_group,
                num_steps=kw.get("steps", 3), layers=[layer.name], rotation=describe_rotation({layer.name: layer}))


def _write(tmp_path, layer):
    path = tmp_path / "w.gguf"
    write_gguf(path, "pi05", {}, layer.planned())
    return GGUFFile(path)


def test_pack_form_round_trips_through_gguf(tmp_path):
    rng = np.random.default_rng()
    layer, _ = random_layer(rng)
    specs = {layer.name: type("Spec", (), {"shape": (48, 64)})()}
    got = read_layers(_write(tmp_path, layer), _section(layer), specs)[layer.name]
    for field in ("codes", "wscale", "perm", "rot_in", "rot_out", "act_scale"):
        assert np.array_equal(getattr(got, field), getattr(layer, field)), field
    infos = GGUFFile(tmp_path / "w.gguf").tensor_infos()
    assert infos["action.blk.0.attn_q.w4a4.codes"].n_bytes == 48 * 64 // 2  # 4 bits per weight


@pytest.mark.parametrize("damage, message", [
    (lambda l: setattr(l, "act_scale", l.act_scale[:2]), r"act_scale'.*shape \[2, 64\]: expected 3 rows"),
    (lambda l: setattr(l, "wscale", l.wscale[:, :1]), r"wscale'.*shape \[48, 1\], expected \[48, 2\]"),
    (lambda l: setattr(l, "perm", np.zeros(64, np.int64)), "rot_perm'.*not a permutation"),
    (lambda l: setattr(l, "rot_in", l.rot_in * 1.5), "rot_in'.*not orthogonal"),
    (lambda l: setattr(l, "act_scale", -l.act_scale), r"act_scale'.*finite and > 0"),
    (lambda l: setattr(l, "rot_out", None) or setattr(l, "codes", l.codes[:40]), r"codes'.*\[40, 64\] weight"),
])
def test_damaged_pack_forms_are_refused(tmp_path, damage, message):
    layer, _ = random_layer(np.random.default_rng())
    damage(layer)
    specs = {layer.name: type("Spec", (), {"shape": (48, 64)})()}
    with pytest.raises(PackError, match=message):
        read_layers(_write(tmp_path, layer), _section(layer), specs)

