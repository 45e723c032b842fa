"""`vla-edge pack compare A B --obs N`: what it reports, whether its numbers are right, and how it
refuses bad input.

A is the tiny synthetic model stored F16, B the same model (same seed) stored F32: a small
difference with a known cause (matrices rounded to F16), made without the native module.

Tolerances:
- the CLI's report against a recomputation written out here (chunks from fresh policies on the
  inputs the report's seed gives, metrics in float64): rtol 1e-5, atol 1e-12. Both sides run the
  float32 NumPy reference on the same inputs; only the process differs, so any difference is
  round-off, while a wrong norm, axis, step or denominator changes a metric by O(1).
- a pack against itself on one target: exactly 0 (same weights, inputs and noise, deterministic).
- one F32 pack on x86 vs reference: 0 < rel-L2 <= 1e-4 (tests/native/test_x86.py's bound; 0 would
  mean the second target never ran).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from cli_runner import run_cli
from vla_edge import load_policy
from vla_edge.packs.compare import comparison_inputs
from vla_edge.policy import Policy

RTOL, ATOL = 1e-5, 1e-12


@pytest.fixture(scope="module")
def f16_twin(tiny_pack_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from vla_edge.families.pi05.synth import synth_pack

    return synth_pack(tmp_path_factory.mktemp("f16") / "tiny-f16", size="tiny", seed=0, dtype="F16", golden=False)


def run_compare(a: Path, b: Path, out: Path, *extra: str) -> tuple[dict, str]:
    """`pack compare A B --json out EXTRA`; the report and the printed table."""
    r = run_cli("pack", "compare", str(a), str(b), "--json", str(out), *extra)
    assert r.returncode == 0, r.stderr
    return json.loads(out.read_text()), r.stdout


def recompute(a: Policy, b: Policy, n_obs: int, seed: int) -> dict:
    """The report's numbers from the definitions: per chunk ||a-b|| / ||b||, ||a[0]-b[0]||, and
    max |a-b| per action dim over all chunks and steps."""
    diffs, bases = [], []
    for obs, noise in comparison_inputs(a, n_obs, seed):
        x = a.infer(obs, noise=noise).actions.astype(np.float64)
        y = b.infer(obs, noise=noise).actions.astype(np.float64)
        diffs.append(x - y)
        bases.append(y)
    rel = [np.sqrt(np.sum(d ** 2)) / np.sqrt(np.sum(y ** 2)) for d, y in zip(diffs, bases)]
    first = [np.sqrt(np.sum(d[0] ** 2)) for d in diffs]
    return {"rel_l2": {"mean": np.mean(rel), "max": np.max(rel)},
            "first_action_l2": {"mean": np.mean(first), "max": np.max(first)},
            "max_abs_per_dim": dict(zip(a.info.action_names, np.abs(np.stack(diffs)).max(axis=(0, 1))))}


def test_report_matches_a_recomputation(f16_twin, tiny_pack_dir, tmp_path):
    seed, n_obs = int(np.random.default_rng().integers(2**32)), 2
    report, table = run_compare(f16_twin, tiny_pack_dir, tmp_path / "r.json", "--obs", str(n_obs),
                                "--seed", str(seed))
    a, b = load_policy(f16_twin, target="reference"), load_policy(tiny_pack_dir, target="reference")
    assert report["seed"] == seed and report["observations"] == n_obs
    assert (report["a"]["recipe"], report["b"]["recipe"]) == ("f16", "f32")
    assert list(report["max_abs_per_dim"]) == list(a.info.action_names)
    assert report["units"] == dict(zip(a.info.action_names, a.info.action_units))
    expected = recompute(a, b, n_obs, seed)
    for key in ("rel_l2", "first_action_l2"):
        for stat in ("mean", "max"):
            assert report[key][stat] == pytest.approx(expected[key][stat], rel=RTOL, abs=ATOL), (key, stat)
    for name, value in expected["max_abs_per_dim"].items():
        assert report["max_abs_per_dim"][name] == pytest.approx(value, rel=RTOL, abs=ATOL), name
    assert 0 < report["rel_l2"]["max"] < 0.1  # F16 rounding: small but not nothing
    # the table shows the same numbers
    assert f"{report['rel_l2']['mean']:.3e} / {report['rel_l2']['max']:.3e}" in table
    assert f"{report['first_action_l2']['mean']:.3e}" in table and str(seed) in table
    for name, value in report["max_abs_per_dim"].items():
        assert f"{name} ({report['units'][name]})" in table and f"{value:.3e}" in table


def test_inputs_follow_the_seed(tiny_pack_dir):
    policy = load_policy(tiny_pack_dir, target="reference")
    seed = int(np.random.default_rng().integers(2**32))
    first, again, other = (comparison_inputs(policy, 2, s) for s in (seed, seed, seed + 1))
    for (o1, n1), (o2, n2), (o3, n3) in zip(first, again, other):
        assert np.array_equal(n1, n2) and np.array_equal(o1.state, o2.state)
        assert all(np.array_equal(o1.cameras[k], o2.cameras[k]) for k in o1.cameras)
        assert not np.array_equal(n1, n3)
    assert not np.array_equal(first[0][1], first[1][1])  # every observation gets its own noise


def test_a_pack_against_itself_is_exactly_zero(tiny_pack_dir, tmp_path):
    report, _ = run_compare(tiny_pack_dir, tiny_pack_dir, tmp_path / "r.json", "--obs", "1")
    assert report["rel_l2"] == {"mean": 0.0, "max": 0.0}
    assert report["first_action_l2"] == {"mean": 0.0, "max": 0.0}
    assert set(report["max_abs_per_dim"].values()) == {0.0}


@pytest.mark.native
def test_one_pack_on_two_targets(tiny_pack_dir, tmp_path):
    pytest.importorskip("vla_edge._native", reason="the x86 target is the native module")
    report, table = run_compare(tiny_pack_dir, tiny_pack_dir, tmp_path / "r.json", "--obs", "1",
                                "--target-a", "x86", "--target-b", "reference")
    assert (report["a"]["target"], report["b"]["target"]) == ("x86", "reference")
    assert "(x86)" in table and "(reference)" in table
    assert 0 < report["rel_l2"]["max"] <= 1e-4


@pytest.fixture(scope="module")
def arx5_pack(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from vla_edge.families.pi05.synth import synth_pack

    return synth_pack(tmp_path_factory.mktemp("arx5") / "tiny-arx5", size="tiny", seed=0, robot="arx5",
                      golden=False)


@pytest.mark.parametrize("case,words", [
    ("missing A", ["pack A", "nope", "not found"]),
    ("missing B", ["pack B", "nope", "not found"]),
    ("no observations", ["--obs", "at least 1", "got 0"]),
    ("negative observations", ["--obs", "got -3"]),
    ("report directory missing", ["--json", "does not exist"]),
    ("other robot", ["not comparable", "shoulder_pan"]),
])
def test_bad_input_is_named(tiny_pack_dir, arx5_pack, tmp_path, case, words):
    good, missing = str(tiny_pack_dir), str(tmp_path / "nope")
    args = {"missing A": [missing, good], "missing B": [good, missing],
            # checked before anything is loaded: the missing pack is never reached
            "no observations": [missing, good, "--obs", "0"],
            "negative observations": [good, good, "--obs", "-3"],
            "report directory missing": [good, good, "--json", str(tmp_path / "no" / "r.json")],
            "other robot": [str(arx5_pack), good, "--obs", "1"]}[case]
    r = run_cli("pack", "compare", *args)
    assert r.returncode == 2, r.stdout + r.stderr
    assert "Traceback" not in r.stderr
    for w in words:
        assert w in r.stderr, r.stderr
