"""`pack export-onnx --calib`: W8A8 explicit Q/DQ graphs from calibrated activation ranges, run in
onnxruntime against the float32 reference of the same pack on the held-out observations.

Tolerance: chunk rel-L2 <= 1e-2 (INT8 activations per tensor + INT8 weights per channel on the
tiny pack; measured ~1e-3). A wrong scale (e.g. 100x too small: everything saturates) or a wrong
graph gives rel-L2 >> 0.1, so the bound still catches both."""

from __future__ import annotations


import onnx
import pytest

from vla_edge.calibration.calibfile import load_calibration
from vla_edge.calibration.scales import int8_activation_scales, quantized_matrices
from vla_edge.errors import ConfigError, PackError
from vla_edge.packs.compare import recorded_inputs
from vla_edge.packs.pack import Pack
from vla_edge.packs.writer import rel_l2
from vla_edge.policy import load_policy
from vla_edge.targets.onnx.export import write_export

pytest.importorskip("onnxruntime")
TOLERANCE = 1e-2


@pytest.fixture(scope="module")
def int8_export(tiny_pack_dir, calib_file, tmp_path_factory):
    out = tmp_path_factory.mktemp("onnx") / "int8"
    return out, write_export(tiny_pack_dir, out, calib=calib_file)


def test_int8_export_runs_within_tolerance_of_the_parent(int8_export, tiny_pack_dir, calib_file):
    out, description = int8_export
    pack = Pack.open(tiny_pack_dir, check="size")
    assert description["precision"] == "fp32-w8a8"
    assert description["activation_quantization"]["layers"] == len(quantized_matrices(pack))
    qdq = sum(n.op_type == "QuantizeLinear" for stage in ("vision", "prefix", "expert")
              for n in onnx.load(str(out / f"{stage}.onnx"), load_external_data=False).graph.node)
    assert qdq == sum(description["weight_forms"][s].get("w8a8", 0) for s in ("vision", "prefix", "expert")) > 0
    reference = load_policy(tiny_pack_dir, target="reference")
    int8 = load_policy(tiny_pack_dir, target="onnx", onnx_dir=out)
    inputs, ids = recorded_inputs(reference, calib_file)
    assert ids == [h["id"] for h in load_calibration(calib_file).held_out]
    errors = [rel_l2(int8.infer(o, noise=n).actions, reference.infer(o, noise=n).actions) for o, n in inputs]
    print("W8A8 ONNX vs reference rel-L2 per held-out observation:", errors)
    assert 0 < max(errors) <= TOLERANCE  # quantised (not bit-identical), within the stated bound


def test_scales_follow_the_calibrated_percentile(tiny_pack_dir, calib_file):
    pack = Pack.open(tiny_pack_dir, check="size")
    scales = int8_activation_scales(calib_file, pack)
    calib = load_calibration(calib_file)
    for name, scale in scales.items():
        stats = calib.tensors[name]
        assert scale * 127 <= float(stats.absmax.max()) * (1 + 1e-6)
        assert scale * 127 >= stats.percentile(99.0)
    assert not any(pack.family.tensor_specs(pack.config)[n].sensitive for n in scales)


def test_int8_export_refuses_other_pack_and_reduced_precision(calib_file, tmp_path):
    from vla_edge.families.pi05.synth import synth_pack

    other = synth_pack(tmp_path / "other", size="tiny", seed=3, golden=False)
    with pytest.raises(ConfigError, match="collected on pack"):
        write_export(other, tmp_path / "x", calib=calib_file)
    with pytest.raises(PackError, match="fp32 graphs only"):
        write_export(other, tmp_path / "y", precision="fp16", calib=calib_file)
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()
