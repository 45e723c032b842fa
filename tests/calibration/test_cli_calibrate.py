"""`vla-edge calibrate`, `pack quantize --calib`, `pack compare --obs-from` and `run --record-obs`
as a user runs them: exit 0 with the file written, exit 2 naming the bad argument otherwise."""

from __future__ import annotations

import json
import shutil

import pytest
from fast_sim import UR3_SIM_FAST_YAML

from vla_edge.calibration.calibfile import load_calibration
from vla_edge.calibration.observations import samples_from


def test_calibrate_writes_a_file_and_compare_uses_its_held_out_observations(cli, tiny_pack_dir, obs_dir, tmp_path):
    out = tmp_path / "c.npz"
    r = cli("calibrate", "--pack", str(tiny_pack_dir), "--from", str(obs_dir), "--out", str(out),
            "--samples", "3", "--held-out", "0.5")
    assert r.returncode == 0, r.stderr
    calib = load_calibration(out)
    assert len(calib.header["data"]["calibration"]) == 3 and len(calib.held_out) == 4
    report = tmp_path / "cmp.json"
    r = cli("pack", "compare", str(tiny_pack_dir), str(tiny_pack_dir), "--obs-from", str(out), "--json", str(report))
    assert r.returncode == 0, r.stderr
    data = json.loads(report.read_text())
    assert data["observation_ids"] == [h["id"] for h in calib.held_out] and data["observations"] == 4
    assert data["rel_l2"]["max"] == 0.0  # a pack against itself on the same inputs


@pytest.mark.parametrize("args, message", [
    (["--from", "{missing}"], "not found"),
    (["--from", "{obs}", "--target", "cuda"], "--target"),
    (["--from", "{obs}", "--held-out", "1.0"], "--held-out"),
    (["--from", "{obs}", "--samples", "0"], "--samples"),
    (["--from", "{lerobot}"], "info.json:features"),
    (["--from", "{obs}", "--camera", "base"], "CAMERA=KEY"),
    (["--from", "{emptyrun}"], "recorded no observations"),
])
def test_calibrate_bad_arguments_exit_2_and_write_nothing(cli, tiny_pack_dir, obs_dir, tmp_path, args, message):
    (tmp_path / "lerobot" / "meta").mkdir(parents=True)
    (tmp_path / "lerobot" / "meta" / "info.json").write_text("{}")
    (tmp_path / "emptyrun").mkdir()
    for name in ("config.yaml", "ticks.jsonl"):
        (tmp_path / "emptyrun" / name).write_text("")
    places = {"missing": tmp_path / "nope", "obs": obs_dir, "lerobot": tmp_path / "lerobot",
              "emptyrun": tmp_path / "emptyrun"}
    out = tmp_path / "c.npz"
    r = cli("calibrate", "--pack", str(tiny_pack_dir), "--out", str(out), *[a.format(**places) for a in args])
    assert r.returncode == 2, r.stderr
    assert message in r.stderr
    assert not out.exists() and not list(tmp_path.glob(".c.npz*"))


def test_calibrate_refuses_to_overwrite(cli, tiny_pack_dir, obs_dir, tmp_path):
    out = tmp_path / "c.npz"
    out.write_text("keep me")
    r = cli("calibrate", "--pack", str(tiny_pack_dir), "--from", str(obs_dir), "--out", str(out))
    assert r.returncode == 2 and "--overwrite" in r.stderr
    assert out.read_text() == "keep me"


@pytest.mark.native
def test_quantize_with_a_foreign_calibration_exits_2(cli, calib_file, tmp_path):
    pytest.importorskip("vla_edge._native")
    from vla_edge.families.pi05.synth import synth_pack

    other = synth_pack(tmp_path / "other", size="tiny", seed=5, golden=False)
    r = cli("pack", "quantize", str(other), "--recipe", "q4_k_m", "--out", str(tmp_path / "q"),
            "--calib", str(calib_file))
    assert r.returncode == 2
    assert "--calib: collected on pack" in r.stderr
    assert not (tmp_path / "q").exists()


def test_compare_obs_from_a_calibration_without_held_out_exits_2(cli, tiny_pack_dir, obs_dir, tmp_path):
    out = tmp_path / "c.npz"
    assert cli("calibrate", "--pack", str(tiny_pack_dir), "--from", str(obs_dir), "--out", str(out),
               "--samples", "1", "--held-out", "0").returncode == 0
    r = cli("pack", "compare", str(tiny_pack_dir), str(tiny_pack_dir), "--obs-from", str(out))
    assert r.returncode == 2 and "kept no observations aside" in r.stderr
    moved = tmp_path / "moved"
    shutil.copytree(obs_dir, moved)
    assert cli("calibrate", "--pack", str(tiny_pack_dir), "--from", str(moved), "--out", str(out),
               "--overwrite").returncode == 0
    shutil.rmtree(moved)
    r = cli("pack", "compare", str(tiny_pack_dir), str(tiny_pack_dir), "--obs-from", str(out))
    assert r.returncode == 2 and "is gone" in r.stderr


def test_run_records_observations_that_calibrate_reads(tiny_pack_dir, tmp_path):
    from vla_edge.calibration.calibrate import calibrate
    from vla_edge.run.config import LoopConfig
    from vla_edge.run.session import RunRequest, execute, prepare

    cfg = tmp_path / "robot.yaml"
    cfg.write_text(UR3_SIM_FAST_YAML)
    run_dir = tmp_path / "run"
    req = RunRequest(robot_config=cfg, pack=str(tiny_pack_dir), target="reference", duration_s=1.0,
                     run_dir=run_dir, seed=1, loop=LoopConfig(simulated_latency_s=0.08, record_obs_every=2))
    outcome = execute(prepare(req))
    assert outcome.reason == "duration"
    samples = samples_from(run_dir)
    assert len(samples) >= 2 and all(s.id.startswith("run/") for s in samples)
    indices = [int(s.path.name) for s in samples]
    assert all(i % 2 == 0 for i in indices)  # every second observation
    obs = samples[0].load()
    from vla_edge.packs.pack import Pack

    assert set(obs.cameras) <= set(Pack.open(tiny_pack_dir, check="size").manifest.cameras.values())
    assert all(im.dtype.name == "uint8" and im.shape[2] == 3 for im in obs.cameras.values())
    assert obs.state.shape == (6,) and obs.prompt
    calib = calibrate(tiny_pack_dir, [run_dir], tmp_path / "c.npz", held_out=0.0)
    assert len(calib.header["data"]["calibration"]) == len(samples)
