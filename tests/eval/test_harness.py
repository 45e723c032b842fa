"""The evaluation harness on the FAKE environment (fake_libero.py): seeds give identical
episodes, every pack gets the same task instances and noise, resumption skips what is recorded,
videos hold one frame per simulator step, workers give the same records."""

from __future__ import annotations

import json

import imageio_ffmpeg
import numpy as np
import pytest
from fake_libero import FakeEnvFactory, FakeLiberoEnv, NoisePolicy, NoisePolicyFactory

from vla_edge.errors import ConfigError
from vla_edge.eval.episode import run_episode
from vla_edge.eval.plan import EvalSettings, plan_episodes
from vla_edge.eval.records import EPISODES_FILE
from vla_edge.eval.runner import EvalRequest, run_eval

SETTINGS = EvalSettings(suite="libero_spatial", episodes=3, seed=11, max_steps=30, num_steps_wait=2)
VOLATILE = ("wall_s", "video")


def _stable(record: dict) -> dict:
    return {k: v for k, v in record.items() if k not in VOLATILE}


def _run(tmp_path, packs=("goal-seeker", "noisy"), **kw):
    env_holder = []

    def factory():
        env_holder.append(FakeLiberoEnv())
        return env_holder[-1]

    req = EvalRequest(packs=list(packs), settings=kw.pop("settings", SETTINGS), out=tmp_path, **kw)
    outcome = run_eval(req, env_factory=kw.get("env_factory", factory), policy_factory=NoisePolicyFactory())
    records = [json.loads(line) for line in (tmp_path / EPISODES_FILE).read_text().splitlines()]
    return outcome, records, env_holder


def test_episode_follows_openpi_loop_and_same_seed_gives_identical_episode():
    env = FakeLiberoEnv()
    spec = plan_episodes(SETTINGS, env.tasks("libero_spatial"))[0]
    policy = NoisePolicy("p", toward=(-0.3, 0.0, 1.0))
    first = run_episode(env, policy, spec, SETTINGS)
    steps_first = env.steps
    second = run_episode(env, policy, spec, SETTINGS)
    assert _stable(first) == _stable(second)
    assert first["success"] and first["steps"] < SETTINGS.step_budget
    # wait steps then one inference every replan_steps actions
    assert steps_first == first["env_steps"] == first["steps"] + SETTINGS.num_steps_wait
    assert first["inferences"] == -(-first["steps"] // SETTINGS.replan_steps)
    failing = run_episode(env, NoisePolicy("q", gain=0.0), spec, SETTINGS)
    assert not failing["success"] and failing["steps"] == SETTINGS.step_budget


def test_packs_get_same_instances_and_noise_and_paired_divergence(tmp_path):
    outcome, records, envs = _run(tmp_path)
    assert len(records) == 2 * 2 * 3  # packs x tasks x episodes
    by = {(r["pack"], r["task_id"], r["episode"]): r for r in records}
    for (pack, task, ep), r in by.items():
        other = by[("noisy" if pack == "goal-seeker" else "goal-seeker", task, ep)]
        assert (r["init_index"], r["env_seed"], r["seed"]) == (other["init_index"], other["env_seed"], other["seed"])
    resets = envs[0].resets
    assert resets[0] == resets[1] == ("libero_spatial", 0, 0, 11 + 0)  # parent then the other pack, same instance
    parent = [r for r in records if r["pack"] == "goal-seeker"]
    assert all("divergence" in r and r["divergence"]["noisy"]["paired_noise"] for r in parent)
    # both packs scale the same noise by 0.3; they differ by the goal pull only, which the record must show
    assert all(r["divergence"]["noisy"]["chunk_rms_mean"] > 0 for r in parent)
    s = outcome.summary
    assert s["packs"]["goal-seeker"]["tasks"]["0"]["successes"] == 3
    cmp = s["comparisons"][0]
    assert cmp["success"]["n"] == 6 and cmp["success"]["only_a"] == 3 - s["packs"]["noisy"]["tasks"]["0"]["successes"]
    assert json.loads((tmp_path / "summary.json").read_text()) == s


def test_resumption_skips_recorded_episodes_and_cuts_a_torn_line(tmp_path):
    _, full, _ = _run(tmp_path / "full")
    out = tmp_path / "resumed"
    _run(out, settings=EvalSettings(suite="libero_spatial", episodes=1, seed=11, max_steps=30, num_steps_wait=2))
    with pytest.raises(ConfigError, match="settings"):  # same --out, different settings: refused
        _run(out)
    lines = (out / EPISODES_FILE).read_text().splitlines()
    (out / "run.json").unlink()
    (out / EPISODES_FILE).write_text("\n".join(lines[:3]) + "\n" + lines[3][:40])  # interrupted mid-write
    outcome, records, envs = _run(out)
    assert outcome.skipped == 3 and outcome.ran == 12 - 3
    assert sorted(map(json.dumps, map(_stable, records))) == sorted(map(json.dumps, map(_stable, full)))
    assert len(envs[0].resets) == 9
    outcome, _, envs = _run(out)  # nothing left to do
    assert outcome.ran == 0 and envs[0].resets == []


def test_corrupt_middle_line_is_an_error_naming_the_line(tmp_path):
    _run(tmp_path, settings=EvalSettings(suite="libero_spatial", episodes=1, seed=11, max_steps=5, num_steps_wait=0))
    lines = (tmp_path / EPISODES_FILE).read_text().splitlines()
    (tmp_path / EPISODES_FILE).write_text("\n".join([lines[0], "{not json", *lines[1:]]) + "\n")
    with pytest.raises(ConfigError, match=f"{EPISODES_FILE}:2"):
        _run(tmp_path, settings=EvalSettings(suite="libero_spatial", episodes=1, seed=11, max_steps=5, num_steps_wait=0))


def test_video_has_one_frame_per_simulator_step(tmp_path):
    settings = EvalSettings(suite="libero_spatial", episodes=1, seed=3, max_steps=12, num_steps_wait=2)
    _, records, _ = _run(tmp_path, packs=("quiet",), settings=settings, tasks=[1], video=True)
    (record,) = records
    path = tmp_path / record["video"]
    reader = imageio_ffmpeg.read_frames(str(path))
    meta = reader.__next__()
    frames = [np.frombuffer(f, dtype=np.uint8) for f in reader]
    assert meta["size"] == (512, 256)
    assert len(frames) == record["env_steps"] + 1  # the reset observation and one per step
    frame = frames[0].reshape(256, 512, 3)
    assert frame[-20:, 236:250, 0].mean() > 150  # agentview marker upright (bottom right of the left half)


def test_workers_give_the_same_records_as_one_process(tmp_path):
    settings = EvalSettings(suite="libero_spatial", episodes=2, seed=5, max_steps=10, num_steps_wait=1)
    req = EvalRequest(packs=["goal-seeker", "noisy"], settings=settings, out=tmp_path / "two", workers=2)
    run_eval(req, env_factory=FakeEnvFactory(), policy_factory=NoisePolicyFactory())
    _, one, _ = _run(tmp_path / "one", settings=settings)
    two = [json.loads(line) for line in (tmp_path / "two" / EPISODES_FILE).read_text().splitlines()]
    assert sorted(map(json.dumps, map(_stable, two))) == sorted(map(json.dumps, map(_stable, one)))


def test_bad_options_are_refused():
    with pytest.raises(ConfigError, match="--suite"):
        EvalSettings(suite="libero_99")
    with pytest.raises(ConfigError, match="--episodes"):
        EvalSettings(suite="libero_goal", episodes=0)
    with pytest.raises(ConfigError, match="--pack"):
        EvalRequest(packs=[], settings=SETTINGS, out=".")
