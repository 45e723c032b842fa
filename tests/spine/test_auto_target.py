"""`--target auto`: the fastest registered target that is available here and runs the pack."""

from __future__ import annotations

import types

import pytest

from vla_edge.errors import TargetUnavailableError
from vla_edge.targets import registry


def _fake_target(ok: bool, why: str) -> types.ModuleType:
    module = types.ModuleType("fake_target")
    module.availability = lambda: (ok, why)
    return module


@pytest.fixture
def fake_targets(monkeypatch):
    """Replace the registry with fakes: name -> (available, why)."""

    def install(status: dict[str, tuple[bool, str]]) -> None:
        modules = {name: _fake_target(*s) for name, s in status.items()}
        monkeypatch.setattr(registry, "TARGETS", {name: f"fake.{name}" for name in status})
        monkeypatch.setattr(registry, "_module", lambda name: modules[name])

    return install


def test_gpu_target_beats_x86_when_available(fake_targets):
    fake_targets({"reference": (True, "numpy"), "x86": (True, "avx2"), "cuda": (True, "H200")})
    name, why = registry.choose_auto(["reference", "x86", "cuda"])
    assert name == "cuda" and "H200" in why


def test_unavailable_and_unlisted_targets_are_passed_over_with_the_reason(fake_targets):
    fake_targets({"reference": (True, "numpy"), "x86": (False, "native module not built"), "cuda": (True, "H200"),
                  "onnx": (True, "onnxruntime")})
    name, why = registry.choose_auto(["reference", "x86"])  # pack does not list cuda; onnx never chosen
    assert name == "reference"
    assert "cuda: the pack does not list it" in why and "x86: native module not built" in why
    assert "onnx" not in why


def test_a_new_registered_target_slots_in_before_reference(fake_targets):
    fake_targets({"reference": (True, "numpy"), "x86": (False, "no core"), "npu": (True, "vendor npu")})
    assert registry.choose_auto(["reference", "npu"])[0] == "npu"


def test_nothing_runnable_is_a_named_error(fake_targets):
    fake_targets({"reference": (True, "numpy"), "x86": (False, "no core")})
    with pytest.raises(TargetUnavailableError, match="no target can run a pack listing"):
        registry.choose_auto(["x86"])


def test_load_policy_auto_binds_the_chosen_target(tiny_pack_dir):
    from vla_edge.policy import load_policy

    expected, _ = registry.choose_auto(["reference", "x86"])
    with load_policy(tiny_pack_dir, target="auto") as policy:
        assert policy.target == expected == policy.info.target
        assert "fastest target" in policy.target_reason
