"""Reduced-precision ONNX exports (the graphs TensorRT engines are built from): streamed external
weights, INT8/INT4 weight-only Q/DQ read back through onnx's own decoder, and whole chunks through
onnxruntime against the reference on fresh random observations, with stated bounds."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from vla_edge.packs.golden import random_observation
from vla_edge.packs.pack import Pack
from vla_edge.packs.quantize import quantize_pack
from vla_edge.packs.writer import rel_l2
from vla_edge.policy import load_policy
from vla_edge.targets.onnx.graph import int4_blocked, int8_per_channel, pack_int4
from vla_edge.targets.onnx.pi05_export import export_pi05
from vla_edge.targets.onnx.precision import PRECISIONS


def test_weight_only_codes_round_trip_through_onnx_and_stay_within_half_a_step():
    rng = np.random.default_rng()
    wt = (rng.standard_normal((96, 40)) * rng.uniform(0.01, 2.0, 40)).astype(np.float32)
    wt[:, 3] = 0  # an all-zero column: scale stored as 1 (TensorRT refuses non-positive scales)
    codes8, s8 = int8_per_channel(wt, np.float16)
    assert s8.dtype == np.float16 and np.all(s8 > 0) and s8[3] == 1
    step8 = s8.astype(np.float64)[None, :]
    assert np.all(np.abs(codes8 * step8 - wt) <= step8 / 2 + 1e-7)
    codes4, s4 = int4_blocked(wt, np.float16)
    assert s4.shape == (3, 40) and codes4.min() >= -8 and codes4.max() <= 7
    step4 = np.repeat(s4.astype(np.float64), 32, axis=0)
    assert np.all(np.abs(codes4 * step4 - wt) <= step4 / 2 + 1e-7)
    # the packed INT4 bytes decode to the same codes with onnx's own reader
    proto = onnx.helper.make_tensor("w", onnx.TensorProto.INT4, list(codes4.shape), pack_int4(codes4), raw=True)
    np.testing.assert_array_equal(numpy_helper.to_array(proto).astype(np.int8), codes4)


def test_graphs_keep_weights_outside_the_protobuf(tiny_pack_dir, tmp_path):
    d = export_pi05(Pack.open(tiny_pack_dir), tmp_path, precision=PRECISIONS["fp16"])
    for stage, name in d["files"].items():
        graph_bytes = (tmp_path / name).stat().st_size
        weights = tmp_path / f"{stage}.weights"
        assert weights.stat().st_size > 10 * graph_bytes
        model = onnx.load(str(tmp_path / name), load_external_data=False)
        external = [t for t in model.graph.initializer if t.data_location == onnx.TensorProto.EXTERNAL]
        assert external and all(t.external_data[0].value == weights.name for t in external)
    assert d["opset"] == 21 and d["precision"] == "fp16" and d["weights_sha256"]


@pytest.mark.parametrize("recipe, precision, label, bound", [
    (None, "fp16", "fp16", 2e-3),  # measured ~2e-4
    ("q8_0", "fp16", "fp16-w8", 5e-3),  # measured ~4e-4
    ("q4_k_m", "fp16", "fp16-w4", 5e-2),  # measured ~6e-3: INT4 requantisation of Q4_K
])
def test_reduced_precision_chunks_against_the_reference(tiny_pack_dir, tmp_path, recipe, precision, label, bound):
    pack_dir = tiny_pack_dir
    if recipe:
        pack_dir = tmp_path / recipe
        quantize_pack(tiny_pack_dir, recipe, pack_dir)
    pack = Pack.open(pack_dir)
    d = export_pi05(pack, tmp_path / "export", precision=PRECISIONS[precision])
    assert d["precision"] == label
    rng = np.random.default_rng()
    with load_policy(pack, "reference") as ref, load_policy(pack, "onnx", onnx_dir=tmp_path / "export") as low:
        for _ in range(2):
            obs = random_observation(pack, rng)
            noise = rng.standard_normal(ref.noise_shape).astype(np.float32)
            err = rel_l2(low.infer(obs, noise=noise).actions, ref.infer(obs, noise=noise).actions)
            assert 0 < err <= bound  # > 0: the products really ran in reduced precision
