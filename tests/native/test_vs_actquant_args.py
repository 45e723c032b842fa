"""benchmarks/vs_actquant.py's variant arguments: an A/B that attributes a gap to one of ggml's run-time
switches must run the switch it names, and a malformed variant must stop before any side loads
(a 2.7 GB pack takes seconds per side). The timing itself is the benchmark's job, not a test's."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "vs_actquant.py"


def _module():
    spec = importlib.util.spec_from_file_location("vs_actquant", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


def test_env_variants_parse_into_labelled_environments():
    parse = _module().parse_env_variants
    assert parse(["notiled:GGML_CPU_TILED_MM=0", "both:A=1,B=two=2"]) == {
        "notiled": {"GGML_CPU_TILED_MM": "0"}, "both": {"A": "1", "B": "two=2"}}


@pytest.mark.parametrize("bad", ["notiled", "notiled:", ":A=1", "x:A", "x:=1", "x:A=1,B"])
def test_malformed_env_variants_are_refused_naming_the_value(bad):
    with pytest.raises(SystemExit, match="--ours-env"):
        _module().parse_env_variants([bad])
