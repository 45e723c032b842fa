"""`vla-edge eval --ray`: episodes spread over a Ray cluster (here a local Ray instance with two
CPUs and two actors) give the records of a local run on the same seeds, resume the same way,
bring their videos back, and report a failing worker by name. Missing Ray: a named error."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import imageio_ffmpeg
import pytest
from fake_libero import FakeEnvFactory, NoisePolicyFactory

from vla_edge.errors import ConfigError, VlaEdgeError
from vla_edge.eval.plan import EvalSettings
from vla_edge.eval.ray_runner import RaySettings
from vla_edge.eval.records import EPISODES_FILE
from vla_edge.eval.runner import EvalRequest, run_eval

SETTINGS = EvalSettings(suite="libero_spatial", episodes=3, seed=11, max_steps=12, num_steps_wait=2)
VOLATILE = ("wall_s", "video")
PACKS = ["goal-seeker", "noisy"]


def _stable(records):
    return sorted(json.dumps({k: v for k, v in r.items() if k not in VOLATILE}, sort_keys=True) for r in records)


def _records(out: Path):
    return [json.loads(line) for line in (out / EPISODES_FILE).read_text().splitlines()]


def _eval(out, ray=None, policy_factory=NoisePolicyFactory(), **kw):
    req = EvalRequest(packs=kw.pop("packs", PACKS), settings=kw.pop("settings", SETTINGS), out=out, ray=ray, **kw)
    return run_eval(req, env_factory=FakeEnvFactory(), policy_factory=policy_factory)


@pytest.fixture(scope="module")
def local_ray():
    """A local Ray instance (~7 s to start on 2 cores, shared by this module's tests); its
    workers import the fake environment from this folder."""
    ray = pytest.importorskip("ray")
    here = Path(__file__).resolve().parent
    path = os.pathsep.join([str(here), str(here.parent), *filter(None, [os.environ.get("PYTHONPATH")])])
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"PYTHONPATH": path}})
    yield ray
    ray.shutdown()


def test_ray_run_equals_local_run_and_resumes(tmp_path, local_ray):
    _eval(tmp_path / "local")
    outcome = _eval(tmp_path / "ray", ray=RaySettings(), workers=2)
    assert outcome.ran == 12 and outcome.skipped == 0
    assert _stable(_records(tmp_path / "ray")) == _stable(_records(tmp_path / "local"))
    assert local_ray.is_initialized()  # a session the caller started is left running

    # interrupted after 3 records, the last one torn: the Ray run resumes like a local one
    out = tmp_path / "ray"
    lines = (out / EPISODES_FILE).read_text().splitlines()
    (out / EPISODES_FILE).write_text("\n".join(lines[:3]) + "\n" + lines[3][:40])
    outcome = _eval(out, ray=RaySettings(), workers=2)
    assert outcome.skipped == 3 and outcome.ran == 9
    assert _stable(_records(out)) == _stable(_records(tmp_path / "local"))
    assert _eval(out, ray=RaySettings(), workers=2).ran == 0


def test_ray_brings_videos_back_and_names_a_failing_worker(tmp_path, local_ray):
    settings = EvalSettings(suite="libero_spatial", episodes=1, seed=3, max_steps=6, num_steps_wait=1)
    _eval(tmp_path / "video", ray=RaySettings(), workers=2, packs=["quiet"], settings=settings, video=True)
    records = _records(tmp_path / "video")
    assert len(records) == 2
    for record in records:
        reader = imageio_ffmpeg.read_frames(str(tmp_path / "video" / record["video"]))
        next(reader)
        assert sum(1 for _ in reader) == record["env_steps"] + 1

    # the driver opens no policy itself (a head node may lack the workers' GPUs): an actor that
    # cannot open one is named before any episode
    with pytest.raises(VlaEdgeError, match="a Ray worker could not start: .*no such pack on the workers"):
        _eval(tmp_path / "broken", ray=RaySettings(), workers=2, policy_factory=failing_policy_factory,
              settings=settings)
    assert not (tmp_path / "broken" / EPISODES_FILE).exists()


def failing_policy_factory(spec, target, label):
    raise ConfigError("--pack", "no such pack on the workers")


def test_missing_ray_names_the_extra(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    with pytest.raises(ConfigError, match=r"--ray.*pip install 'vla-edge\[ray\]'"):
        _eval(tmp_path, ray=RaySettings())
    assert not (tmp_path / EPISODES_FILE).exists()  # refused before anything ran
    with pytest.raises(ConfigError, match="--ray-cpus/--ray-gpus"):
        RaySettings(gpus_per_worker=-1)


def test_cli_ray_options_are_checked(tmp_path, cli):
    done = cli("eval", "--pack", str(tmp_path / "p"), "--ray", " ", "--out", str(tmp_path / "o"))
    assert done.returncode != 0 and "--ray" in done.stderr and "'local'" in done.stderr
    done = cli("eval", "--pack", str(tmp_path / "p"), "--ray", "local", "--ray-gpus", "-1", "--out", str(tmp_path / "o"))
    assert done.returncode != 0 and "--ray-cpus/--ray-gpus" in done.stderr
    assert not (tmp_path / "o").exists()
