"""`cuda`, `gb10`, `orin` on faked machines (fake_facts.py): availability, which path a pack takes,
every reason an engine is refused (naming its file), the visible fallback and its development
form. The engines are real TensorRT-RTX engines of the tiny pack; nothing here needs a GPU."""

from __future__ import annotations

import logging

import pytest
import tensorrt_rtx_bindings as trt
from fake_facts import cpu_only, gb10, h200, orin

from vla_edge.errors import TargetUnavailableError
from vla_edge.packs.pack import Pack
from vla_edge.targets.gpu import target as gpu_target
from vla_edge.targets.gpu.engine_check import EngineRefused, check_fit
from vla_edge.targets.gpu.engine_runtime import deserialize, unsupported_gpu
from vla_edge.targets.gpu.facts import Gpu
from vla_edge.targets.gpu.flavours import FLAVOURS, CollectingLogger
from vla_edge.targets.gpu.selection import ENGINE, FALLBACK, availability, plan
from vla_edge.targets.registry import TARGETS, pack_supports


def test_the_three_targets_are_registered_and_run_x86_packs():
    assert {"cuda", "gb10", "orin"} <= set(TARGETS)
    assert all(pack_supports(t, ["reference", "x86"]) for t in ("cuda", "gb10", "orin"))


def test_availability_on_each_machine():
    assert availability("cuda", gb10()) == (True, "ggml-CUDA on gpu0 NVIDIA GB10")
    ok, why = availability("gb10", gb10())
    assert ok and f"TensorRT-RTX {trt.__version__} engines from the pack when they fit; ggml-CUDA fallback otherwise" in why
    ok, why = availability("orin", orin())
    assert ok and "Jetson Orin (JetPack 6): TensorRT 10 10.3.0 engines" in why
    # an H200 is neither: unavailable, pointing to cuda and to the development opt-in
    ok, why = availability("gb10", h200())
    assert not ok and "gpu0 is NVIDIA H200 (compute capability 9.0), not compute capability 12.1" in why
    assert "use --target cuda" in why and "VLA_EDGE_GPU_DEV_FALLBACK=1" in why
    ok, why = availability("orin", h200())
    assert not ok and "not a Jetson (no /etc/nv_tegra_release" in why
    # a Jetson that is not an Orin (Xavier, 7.2)
    ok, why = availability("orin", orin(gpus=(Gpu(0, "Xavier", (7, 2)),)))
    assert not ok and "compute capability 7.2), not compute capability 8.7" in why
    # no GPU at all: nothing. cuda says why NVML found none; gb10 and orin name their hardware and leave
    # that detail to cuda's line, which `auto` lists after theirs (it repeated three times there before)
    ok, why = availability("cuda", cpu_only())
    assert not ok and "NVML Shared Library Not Found" in why
    for target, device in (("gb10", "NVIDIA GB10 (DGX Spark)"), ("orin", "Jetson Orin (JetPack 6)")):
        ok, why = availability(target, cpu_only())
        assert not ok and why.startswith(f"{target} runs on {device} only") and "no NVIDIA GPU" in why
        assert "NVML" not in why and "--target cuda" not in why
    ok, why = availability("cuda", h200(native_cuda=False, native_info="ggml cpu: AVX2"))
    assert not ok and "built without ggml-CUDA" in why and "VLA_EDGE_CUDA=1" in why


def test_development_fallback_is_opt_in_and_marked():
    ok, why = availability("gb10", h200(dev_fallback=True))
    assert ok and why.startswith("DEVELOPMENT FALLBACK (VLA_EDGE_GPU_DEV_FALLBACK=1)") and "never gb10's engines" in why
    assert not availability("gb10", cpu_only(dev_fallback=True))[0]  # nothing to fall back to


def test_engines_are_chosen_on_the_target_hardware(engine_pack):
    pack = Pack.open(engine_pack)
    p = plan("gb10", gb10(), pack)
    assert p.path == ENGINE and p.engines.precision == "fp16" and not p.development
    assert plan("gb10", gb10(), pack, precision="bf16").engines.precision == "bf16"


def refusal(pack, facts, precision="fp16"):
    p = plan("gb10", facts, pack, precision)
    assert p.path == FALLBACK and p.note.startswith("FALLBACK to ggml-CUDA: no engine set fits: ")
    return p.note


def test_other_tensorrt_version_other_gpu_and_no_tensorrt_fall_back_naming_the_file(engine_pack):
    pack = Pack.open(engine_pack)
    note = refusal(pack, gb10(tensorrt={"tensorrt_rtx_bindings": "1.8.0.1"}))
    assert f"vision.fp16.sm121.tensorrt-rtx-{trt.__version__}.engine: built with TensorRT-RTX {trt.__version__}, this " \
           "machine has 1.8.0.1" in note
    note = refusal(pack, gb10(tensorrt={"tensorrt_rtx_bindings": None}))
    assert "TensorRT-RTX is not installed here" in note
    fake_12_0 = gb10(gpus=(Gpu(0, "RTX 5090", (12, 0)),))
    with pytest.raises(TargetUnavailableError, match="compute capability 12.0"):
        plan("gb10", fake_12_0, pack)  # not a GB10 at all: the target is unavailable, not a fallback
    with pytest.raises(EngineRefused, match=r"built for compute capability 12\.1, this GPU \(RTX 5090\) is 12\.0"):
        check_fit(pack, pack.manifest.engines[0], FLAVOURS["gb10"], trt.__version__, fake_12_0.gpu(0))


def test_truncated_corrupted_and_stale_engines_are_refused(engine_pack_copy):
    pack = Pack.open(engine_pack_copy)
    fp16 = pack.manifest.engines[0]
    prefix = engine_pack_copy / fp16.files["prefix"].path
    data = prefix.read_bytes()
    prefix.write_bytes(data[: len(data) // 2])
    note = refusal(pack, gb10())
    assert f"{prefix}: size {len(data) // 2} bytes, pack.yaml says {len(data)} (truncated or replaced?)" in note
    prefix.write_bytes(data[:100] + bytes([data[100] ^ 1]) + data[101:])
    assert f"{prefix}: sha256 " in refusal(pack, gb10()) and "does not match pack.yaml" in refusal(pack, gb10())
    prefix.unlink()
    assert f"{prefix}: missing prefix engine file listed in pack.yaml" in refusal(pack, gb10())
    prefix.write_bytes(data)
    assert plan("gb10", gb10(), pack).path == ENGINE  # restored: fits again
    stale = pack.manifest.model_copy(update={"files": pack.manifest.files.model_copy(update={
        "weights": pack.manifest.files.weights.model_copy(update={"sha256": "0" * 64})})})
    pack.manifest = stale
    assert "built from other weights" in refusal(pack, gb10()) and "vla-edge pack build-engine" in refusal(pack, gb10())


def test_no_engines_falls_back_and_no_fallback_is_an_error(tiny_pack_dir, engine_pack_copy):
    pack = Pack.open(tiny_pack_dir)
    p = plan("gb10", gb10(), pack)
    assert p.path == FALLBACK and "has no gb10 engines" in p.note and "--target gb10" in p.note
    assert "has no orin engines" in plan("orin", orin(), pack).note
    (engine_pack_copy / Pack.open(engine_pack_copy).manifest.engines[0].files["vision"].path).write_bytes(b"x")
    with pytest.raises(TargetUnavailableError, match="truncated or replaced.*no ggml-CUDA fallback: the native core was "
                       "built without ggml-CUDA"):
        plan("gb10", gb10(native_cuda=False, native_info="ggml cpu"), Pack.open(engine_pack_copy), "fp16")


def test_fallback_backend_is_visible_in_logs_and_info(tiny_pack_dir, monkeypatch, caplog):
    """The wiring around the ggml-CUDA fallback (that backend itself needs a GPU: the CPU core
    stands in for it here, which is what `describe()["backend"]` then says)."""
    from vla_edge.targets.x86.target import X86Backend

    monkeypatch.setattr(gpu_target, "_fallback_backend", lambda pack, index: X86Backend(pack, threads=1))
    _, create = gpu_target.target_functions("gb10")
    with caplog.at_level(logging.WARNING, logger="vla_edge.targets.gpu"):
        backend = create(Pack.open(tiny_pack_dir), facts=h200(dev_fallback=True))
    info = backend.describe()
    assert info["path"] == "fallback" and info["development_fallback"] and info["target"] == "gb10"
    assert info["path_note"].startswith("DEVELOPMENT FALLBACK") and info["gpu"]["compute_capability"] == "9.0"
    assert any("gb10 target: DEVELOPMENT FALLBACK" in r.message for r in caplog.records)
    assert "jetson" not in info
    with pytest.raises(TargetUnavailableError, match="unknown options"):
        create(Pack.open(tiny_pack_dir), facts=gb10(), threads=3)
    backend.close()
    # on a Jetson the power mode is part of what every run records
    _, create_orin = gpu_target.target_functions("orin")
    jetson = create_orin(Pack.open(tiny_pack_dir), facts=orin())
    assert jetson.describe()["jetson"] == {"release": "# R36 (release), REVISION: 4.0", "model": "NVIDIA Jetson AGX Orin",
                                           "power_mode": "MAXN (id 0)"}
    assert jetson.describe()["path_note"].startswith("FALLBACK to ggml-CUDA: pack 'pi05-tiny-synthetic-seed0' has no orin engines")
    jetson.close()


def test_tensorrt_rtx_refuses_compute_capability_9_in_our_words(engine_pack):
    """The error the H200 gives: checked against the library's own list before it sees the file."""
    pack = Pack.open(engine_pack)
    flavour, h200_gpu = FLAVOURS["gb10"], Gpu(0, "NVIDIA H200", (9, 0))
    assert unsupported_gpu(trt, flavour, Gpu(0, "NVIDIA GB10", (12, 1))) is None
    message = unsupported_gpu(trt, flavour, h200_gpu)
    assert message.startswith("compute capability 9.0 (NVIDIA H200) is not supported by TensorRT-RTX (its runtime runs ")
    assert "12.1" in message and "use --target cuda" in message
    path = engine_pack / pack.manifest.engines[0].files["vision"].path
    logger = CollectingLogger(trt)
    with pytest.raises(EngineRefused, match=f"{path}: compute capability 9.0"):
        deserialize(trt, flavour, trt.Runtime(logger), logger, path, h200_gpu)


def test_reports_say_when_a_gpu_target_ran_its_fallback():
    from vla_edge.report.analysis import execution_notes

    backend = {"target": "gb10", "path": "fallback", "development_fallback": True, "path_note": "DEVELOPMENT FALLBACK (...)"}
    assert execution_notes({"backend": backend}) == [
        "DEVELOPMENT FALLBACK on other hardware: target gb10 ran ggml-CUDA, not its engines: DEVELOPMENT FALLBACK (...)"]
    assert execution_notes({"backend": {**backend, "development_fallback": False}})[0].startswith("target gb10 ran")
    assert execution_notes({"backend": {**backend, "path": "engine"}}) == []
    assert execution_notes({"backend": {"target": "cuda", "path": "fallback"}}) == []
    assert execution_notes({}) == []


def test_ggml_cuda_options_reach_the_fallback_and_bad_values_are_refused(tiny_pack_dir, monkeypatch):
    """expert_graph / device_weights go to the ggml-CUDA path (the CPU core stands in for it here,
    so only expert_graph, which it also knows, is checked end to end); bad names and values are
    refused before anything loads, naming the option and the choices."""
    from vla_edge.targets.x86.target import X86Backend

    seen = {}

    def fallback(pack, index, **options):
        seen.update(options)
        return X86Backend(pack, threads=1, expert_graph=options.get("expert_graph", "auto"))

    monkeypatch.setattr(gpu_target, "_fallback_backend", fallback)
    _, create = gpu_target.target_functions("cuda")
    backend = create(Pack.open(tiny_pack_dir), facts=h200(), expert_graph="chunk", device_weights="f16")
    assert seen == {"expert_graph": "chunk", "device_weights": "f16"}
    assert backend.describe()["expert_graph"] == "chunk"
    backend.close()
    seen.clear()
    create(Pack.open(tiny_pack_dir), facts=h200(), fused_matrices=True).close()  # a bool from Python
    assert seen == {"fused_matrices": "true"}
    with pytest.raises(TargetUnavailableError, match=r"option device_weights='int3', expected one of auto, stored, f16, bf16"):
        create(Pack.open(tiny_pack_dir), facts=h200(), device_weights="int3")
    with pytest.raises(TargetUnavailableError, match=r"unknown options \['fast'\]"):
        create(Pack.open(tiny_pack_dir), facts=h200(), fast=True)
