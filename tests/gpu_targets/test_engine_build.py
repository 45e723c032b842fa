"""`vla-edge pack build-engine --target gb10`: real TensorRT-RTX engines (CPU build for compute
capability 12.1) from the tiny pack's ONNX export, in each precision, stored in the pack with
their sha256 and settings, atomically; a graph the parser refuses names its node."""

from __future__ import annotations

import re

import onnx
import pytest
import tensorrt_rtx_bindings as trt
from cli_runner import run_cli
from onnx import TensorProto, helper

from vla_edge.errors import PackError
from vla_edge.packs.hashing import sha256_file
from vla_edge.packs.pack import Pack
from vla_edge.packs.quantize import quantize_pack
from vla_edge.packs.verify import verify_pack
from vla_edge.targets.gpu import engine_build
from vla_edge.targets.gpu.flavours import FLAVOURS, CollectingLogger, build_serialized, parse_onnx
from vla_edge.targets.onnx.pi05_export import export_pi05
from vla_edge.targets.onnx.precision import PRECISIONS

NAME = re.compile(r"^engines/gb10/(vision|prefix|expert)\.(fp16|bf16)(-w[48](w8)?)?\.sm121\.tensorrt-rtx-"
                  + re.escape(trt.__version__) + r"\.engine$")


def test_engines_in_every_default_precision_are_stored_with_checksums_and_settings(engine_pack):
    pack = Pack.open(engine_pack)
    sets = {e.precision: e for e in pack.manifest.engines}
    assert sorted(sets) == ["bf16", "fp16"]
    for precision, engines in sets.items():
        assert engines.target == "gb10" and engines.runtime == "tensorrt-rtx" and engines.compute_capability == "12.1"
        assert engines.runtime_version == trt.__version__
        assert engines.weights_sha256 == pack.manifest.files.weights.sha256
        assert sorted(engines.files) == ["expert", "prefix", "vision"]
        for stage, entry in engines.files.items():
            assert NAME.match(entry.path) and f"{stage}.{precision}." in entry.path
            path = engine_pack / entry.path
            assert path.stat().st_size == entry.size > 100_000 and sha256_file(path) == entry.sha256
        s = engines.settings
        assert s["strongly_typed"] and s["onnx_opset"] == 21 and s["max_images"] == len(pack.manifest.cameras)
        assert s["profiles"]["prefix"]["positions"] == "257 / 560 / 576"  # 1 image + BOS .. 2 images + 200 tokens
    assert sets["fp16"].settings["golden_rel_l2_onnxruntime"] < 1e-3  # the fp16 export ran the golden chunk
    assert sets["bf16"].settings["golden_rel_l2_onnxruntime"] is None  # onnxruntime has no bf16 MatMul
    leftovers = [p.name for p in engine_pack.iterdir() if p.name.startswith(".")]
    assert leftovers == []


@pytest.mark.parametrize("recipe, label, forms", [("q8_0", "fp16-w8", {"int8"}), ("q4_k_m", "fp16-w4", {"int4"})])
def test_quantised_packs_keep_their_weights_as_int8_or_int4_qdq(tiny_pack_dir, tmp_path, recipe, label, forms):
    quantize_pack(tiny_pack_dir, recipe, tmp_path / recipe)
    sets = engine_build.build_pack_engines(tmp_path / recipe, "gb10", ("fp16",))
    assert [s.precision for s in sets] == [label]
    used = {form for stage in sets[0].settings["weight_forms"].values() for form in stage} - {"float"}
    assert used == forms
    assert sets[0].settings["golden_rel_l2_onnxruntime"] < 2e-2
    for entry in sets[0].files.values():
        assert (tmp_path / recipe / entry.path).is_file() and f".{label}." in entry.path
    assert Pack.open(tmp_path / recipe).manifest.engines == sets


def test_every_node_of_every_exported_graph_parses(tiny_pack_dir, tmp_path):
    pack = Pack.open(tiny_pack_dir)
    flavour = FLAVOURS["gb10"]
    for precision in ("fp16", "bf16"):
        d = export_pi05(pack, tmp_path / precision, precision=PRECISIONS[precision])
        for name in d["files"].values():
            model = onnx.load(str(tmp_path / precision / name), load_external_data=False)
            logger = CollectingLogger(trt)
            _, network, parser = parse_onnx(trt, flavour, tmp_path / precision / name, logger)
            assert parser.num_errors == 0 and network.num_layers >= len(model.graph.node) // 2
            assert logger.errors == []


def test_a_node_the_parser_refuses_is_named(tmp_path):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [4])
    node = helper.make_node("NoSuchOp", ["x"], ["y"], name="strange_node", domain="vla.test")
    model = helper.make_model(helper.make_graph([node], "g", [x], [y]),
                              opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("vla.test", 1)])
    onnx.save(model, tmp_path / "bad.onnx")
    with pytest.raises(PackError, match=r"bad\.onnx.*TensorRT-RTX's ONNX parser refused it: node 0 \(strange_node, NoSuchOp\)"):
        build_serialized(trt, FLAVOURS["gb10"], tmp_path / "bad.onnx", {}, 1 << 28)


def test_a_failed_build_leaves_the_pack_as_it_was(engine_pack_copy, monkeypatch):
    before = {p.relative_to(engine_pack_copy): p.read_bytes() for p in engine_pack_copy.rglob("*") if p.is_file()}
    real = engine_build.build_serialized
    calls = []

    def failing(trt_module, flavour, onnx_path, shapes, workspace):
        calls.append(onnx_path.name)
        if len(calls) == 5:  # bf16 prefix: after fp16's three engines and bf16's vision engine
            raise PackError(str(onnx_path), "simulated builder failure")
        return real(trt_module, flavour, onnx_path, shapes, workspace)

    monkeypatch.setattr(engine_build, "build_serialized", failing)
    with pytest.raises(PackError, match="simulated builder failure"):
        engine_build.build_pack_engines(engine_pack_copy, "gb10")
    after = {p.relative_to(engine_pack_copy): p.read_bytes() for p in engine_pack_copy.rglob("*") if p.is_file()}
    assert after == before  # previous engines and pack.yaml byte for byte, no staging left


def test_manifest_write_failure_restores_the_previous_engines(engine_pack_copy, monkeypatch):
    before = {p.relative_to(engine_pack_copy): p.read_bytes() for p in engine_pack_copy.rglob("*") if p.is_file()}

    def no_manifest(pack_dir, text):
        raise OSError("disk full (simulated)")

    monkeypatch.setattr(engine_build, "_write_manifest_atomically", no_manifest)
    with pytest.raises(OSError, match="disk full"):
        engine_build.build_pack_engines(engine_pack_copy, "gb10", ("fp16",), check=False)
    after = {p.relative_to(engine_pack_copy): p.read_bytes() for p in engine_pack_copy.rglob("*") if p.is_file()}
    assert after == before


def test_bad_requests_are_refused_by_name(tiny_pack_copy):
    r = run_cli("pack", "build-engine", str(tiny_pack_copy), "--target", "cuda")
    assert r.returncode != 0 and "engines are built for ['gb10', 'orin'], not 'cuda'" in " ".join((r.stdout + r.stderr).split())
    r = run_cli("pack", "build-engine", str(tiny_pack_copy), "--target", "gb10", "--precision", "int3")
    assert r.returncode != 0 and "--precision" in r.stdout + r.stderr and "int3" in r.stdout + r.stderr
    assert not (tiny_pack_copy / "engines").exists()
    # orin engines are built on the Orin by full TensorRT, which is not installed here
    r = run_cli("pack", "build-engine", str(tiny_pack_copy), "--target", "orin")
    assert r.returncode != 0 and "has not run in the vla-edge development workplace" in " ".join((r.stdout + r.stderr).split())
    assert not (tiny_pack_copy / "engines").exists() and not any(p.name.startswith(".") for p in tiny_pack_copy.iterdir())


def test_pack_verify_checks_the_engines(engine_pack_copy):
    r = run_cli("pack", "verify", str(engine_pack_copy))
    assert r.returncode == 0, r.stdout + r.stderr
    engine = engine_pack_copy / Pack.open(engine_pack_copy).manifest.engines[1].files["expert"].path
    engine.write_bytes(engine.read_bytes()[:-10])
    r = run_cli("pack", "verify", str(engine_pack_copy))
    assert r.returncode == 1 and "1 defect(s)" in r.stdout
    errors = [f for f in verify_pack(engine_pack_copy) if f.level == "error"]
    assert [(f.where, f.message) for f in errors] == [(str(engine), f"size {engine.stat().st_size} bytes, pack.yaml says "
                                                                    f"{engine.stat().st_size + 10}")]
