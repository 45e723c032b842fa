"""TensorRT engine builds. TensorRT cannot be installed in this workplace, so these tests run the
build code against a stand-in `tensorrt` module that records what it is asked: they check our
logic (profiles from the export, flags, refusals, atomic output), not TensorRT's behaviour."""

from __future__ import annotations

import json
import sys
import types

import pytest
from cli_runner import run_cli

from vla_edge.errors import PackError, TargetUnavailableError
from vla_edge.targets.tensorrt import engine_build


class Recorder:
    def __init__(self, fail_parse: str | None = None, no_engine: bool = False):
        self.fail_parse, self.no_engine = fail_parse, no_engine
        self.calls: list[tuple] = []


def fake_tensorrt(rec: Recorder) -> types.ModuleType:
    trt = types.ModuleType("tensorrt")
    trt.__version__ = "10.3.0-standin"

    class Logger:
        WARNING = 2

        def __init__(self, level):
            rec.calls.append(("logger", level))

    class Profile:
        def set_shape(self, name, lo, opt, hi):
            rec.calls.append(("shape", name, tuple(lo), tuple(opt), tuple(hi)))

    class Config:
        def set_memory_pool_limit(self, pool, size):
            rec.calls.append(("workspace", size))

        def set_flag(self, flag):
            rec.calls.append(("flag", flag))

        def add_optimization_profile(self, profile):
            rec.calls.append(("profile",))

    class Builder:
        def __init__(self, logger):
            pass

        def create_network(self, flags):
            rec.calls.append(("network", flags))
            return object()

        def create_builder_config(self):
            return Config()

        def create_optimization_profile(self):
            return Profile()

        def build_serialized_network(self, network, config):
            rec.calls.append(("build",))
            return None if rec.no_engine else b"engine-bytes"

    class OnnxParser:
        def __init__(self, network, logger):
            self.num_errors = 0 if rec.fail_parse is None else 1

        def parse_from_file(self, path):
            rec.calls.append(("parse", path))
            return rec.fail_parse is None

        def get_error(self, i):
            return rec.fail_parse

    trt.Logger, trt.Builder, trt.OnnxParser = Logger, Builder, OnnxParser
    trt.NetworkDefinitionCreationFlag = types.SimpleNamespace(EXPLICIT_BATCH=0)
    trt.MemoryPoolType = types.SimpleNamespace(WORKSPACE="workspace")
    trt.BuilderFlag = types.SimpleNamespace(FP16="fp16")
    return trt


@pytest.fixture(scope="module")
def export_dir(tiny_pack_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("export") / "onnx"
    assert run_cli("pack", "export-onnx", str(tiny_pack_dir), "--out", str(out)).returncode == 0
    return out


def test_engines_are_built_with_profiles_that_cover_every_prompt_and_camera_count(export_dir, tmp_path, monkeypatch):
    rec = Recorder()
    monkeypatch.setitem(sys.modules, "tensorrt", fake_tensorrt(rec))
    summary = engine_build.build_engines(export_dir, tmp_path / "engines", precision="fp16", workspace_gb=0.5)
    description = json.loads((export_dir / "onnx_export.json").read_text())
    s, n = description["shapes"], description["max_images"]
    shapes = {c[1]: c[2:] for c in rec.calls if c[0] == "shape"}
    lo, opt, hi = shapes["prefix"]
    assert lo[0] == s["patches_per_image"] + 1  # one camera and BOS
    assert hi[0] == n * s["patches_per_image"] + s["max_prompt_tokens"] == description["max_positions"] - s["horizon"]
    assert lo[0] <= opt[0] <= hi[0]
    assert shapes["positions"] == ((lo[0],), (opt[0],), (hi[0],))
    assert shapes["keys"][2] == (s["layers"], hi[0], s["kv_heads"], s["head_dim"]) and shapes["values"] == shapes["keys"]
    assert shapes["images"][0][0] == 1 and shapes["images"][2][0] == n
    assert rec.calls.count(("flag", "fp16")) == 3 and ("workspace", 2**29) in rec.calls
    assert [c[1].rsplit("/", 1)[1] for c in rec.calls if c[0] == "parse"] == ["vision.onnx", "prefix.onnx", "expert.onnx"]
    out = tmp_path / "engines"
    assert sorted(p.name for p in out.iterdir()) == ["engines.json", "expert.engine", "prefix.engine", "vision.engine"]
    assert (out / "vision.engine").read_bytes() == b"engine-bytes"
    assert json.loads((out / "engines.json").read_text())["tensorrt"] == "10.3.0-standin" == summary["tensorrt"]


@pytest.mark.parametrize("rec, words", [(Recorder(fail_parse="Unsupported op: Foo"), "Unsupported op: Foo"),
                                        (Recorder(no_engine=True), "built no engine")])
def test_a_failed_build_leaves_nothing(export_dir, tmp_path, monkeypatch, rec, words):
    monkeypatch.setitem(sys.modules, "tensorrt", fake_tensorrt(rec))
    with pytest.raises(PackError, match=words):
        engine_build.build_engines(export_dir, tmp_path / "engines")
    assert not list(tmp_path.iterdir())


def test_int8_and_unknown_precisions_are_refused_with_the_reason(export_dir, tmp_path):
    with pytest.raises(PackError, match="calibration images"):
        engine_build.build_engines(export_dir, tmp_path / "e", precision="int8")
    with pytest.raises(PackError, match="expected one of"):
        engine_build.build_engines(export_dir, tmp_path / "e", precision="bf8")


def test_without_tensorrt_the_cli_says_it_is_not_installed(export_dir, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorrt", None)  # import fails, as on every machine here
    with pytest.raises(TargetUnavailableError, match="not installed"):
        engine_build.build_engines(export_dir, tmp_path / "e")
    r = run_cli("pack", "build-engine", str(export_dir), "--out", str(tmp_path / "e2"))
    if r.returncode == 0:
        pytest.skip("this machine has TensorRT")
    assert r.returncode == 2 and "TensorRT is not installed" in r.stderr and not (tmp_path / "e2").exists()
    missing = run_cli("pack", "build-engine", str(tmp_path), "--out", str(tmp_path / "e3"))
    assert missing.returncode == 2 and "onnx_export.json" in missing.stderr
