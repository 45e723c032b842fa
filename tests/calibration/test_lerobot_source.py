"""`calibrate --from DATASET` on LeRobot datasets the test writes in the v2.1 and v3.0 layouts
(parquet via pyarrow, AV1 videos via imageio-ffmpeg's ffmpeg, as LeRobot encodes them).

Every frame is identifiable: frame k of episode e has state [e, k, ...] and a uniform image of
brightness 20 + 18 k (+ 40 on the wrist camera), so a frame decoded from the wrong time, episode
or camera is caught (the codec's rounding is a few levels; neighbouring frames are 18 apart)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from vla_edge.calibration.calibfile import load_calibration
from vla_edge.calibration.observations import CameraSpec, samples_from
from vla_edge.errors import ConfigError
from vla_edge.packs.pack import Pack

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")

FPS, H, W = 10, 96, 128
EPISODES = {0: 5, 1: 4}  # episode -> frames
TASKS = ["pick up the red block", "open the drawer"]


def brightness(camera: str, k: int) -> int:
    return 20 + 18 * k + (40 if "wrist" in camera else 0)


def _write_video(path: Path, camera: str, frame_counts: list[int]) -> None:
    import imageio_ffmpeg

    path.parent.mkdir(parents=True, exist_ok=True)
    writer = imageio_ffmpeg.write_frames(str(path), (W, H), fps=FPS, codec="libsvtav1", pix_fmt_out="yuv420p",
                                         macro_block_size=1, output_params=["-g", "2"])
    writer.send(None)
    for n in frame_counts:
        for k in range(n):
            writer.send(np.full((H, W, 3), brightness(camera, k), np.uint8).tobytes())
    writer.close()


def _frames_table(episodes: list[int], state_dim: int, start_index: int = 0) -> "pa.Table":
    rows = [(e, k) for e in episodes for k in range(EPISODES[e])]
    return pa.table({
        "observation.state": [[float(e), float(k)] + [0.1 * j for j in range(state_dim - 2)] for e, k in rows],
        "action": [[0.0] * state_dim for _ in rows],
        "timestamp": pa.array([k / FPS for _, k in rows], pa.float32()),
        "frame_index": [k for _, k in rows], "episode_index": [e for e, _ in rows],
        "index": list(range(start_index, start_index + len(rows))), "task_index": [e % len(TASKS) for e, _ in rows],
    })


def write_lerobot(root: Path, version: str, cameras: tuple[str, ...], state_dim: int) -> Path:
    """A two-episode dataset in LeRobot's v2.1 or v3.0 layout."""
    features = {key: {"dtype": "video", "shape": [H, W, 3], "names": ["height", "width", "channels"]}
                for key in cameras}
    features.update({"observation.state": {"dtype": "float32", "shape": [state_dim]},
                     "action": {"dtype": "float32", "shape": [state_dim]}})
    info = {"codebase_version": version, "fps": FPS, "features": features, "total_episodes": len(EPISODES)}
    (root / "meta").mkdir(parents=True)
    if version.startswith("v2"):
        info.update(chunks_size=1000, data_path="data/chunk-{episode_chunk:03d}/episode_{episode_index:06d}.parquet",
                    video_path="videos/chunk-{episode_chunk:03d}/{video_key}/episode_{episode_index:06d}.mp4")
        (root / "meta" / "tasks.jsonl").write_text("".join(json.dumps({"task_index": i, "task": t}) + "\n"
                                                           for i, t in enumerate(TASKS)))
        start = 0
        for e in EPISODES:
            (root / "data" / "chunk-000").mkdir(parents=True, exist_ok=True)
            pq.write_table(_frames_table([e], state_dim, start), root / f"data/chunk-000/episode_{e:06d}.parquet")
            start += EPISODES[e]
            for key in cameras:
                _write_video(root / f"videos/chunk-000/{key}/episode_{e:06d}.mp4", key, [EPISODES[e]])
    else:
        info.update(data_path="data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet",
                    video_path="videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4")
        pq.write_table(pa.table({"task_index": list(range(len(TASKS))), "task": TASKS}), root / "meta/tasks.parquet")
        (root / "data" / "chunk-000").mkdir(parents=True)
        pq.write_table(_frames_table(list(EPISODES), state_dim), root / "data/chunk-000/file-000.parquet")
        episodes = {"episode_index": list(EPISODES), "length": list(EPISODES.values())}
        for key in cameras:  # both episodes in one file, the second starting where the first ends
            _write_video(root / f"videos/{key}/chunk-000/file-000.mp4", key, list(EPISODES.values()))
            episodes[f"videos/{key}/chunk_index"] = [0, 0]
            episodes[f"videos/{key}/file_index"] = [0, 0]
            episodes[f"videos/{key}/from_timestamp"] = [0.0, EPISODES[0] / FPS]
        (root / "meta" / "episodes" / "chunk-000").mkdir(parents=True)
        pq.write_table(pa.table(episodes), root / "meta/episodes/chunk-000/file-000.parquet")
    (root / "meta" / "info.json").write_text(json.dumps(info))
    return root


@pytest.fixture(scope="module")
def state_dim(tiny_pack_dir) -> int:
    return len(Pack.open(tiny_pack_dir, check="size").manifest.state_space.names)


@pytest.mark.parametrize("version", ["v2.1", "v3.0"])
def test_frames_read_back_with_state_prompt_and_the_right_video_frame(tiny_pack_dir, tmp_path, version, state_dim):
    root = write_lerobot(tmp_path / "ds", version, ("observation.images.base", "observation.images.gripper"),
                         state_dim)
    spec = CameraSpec.of(Pack.open(tiny_pack_dir, check="size").manifest, {"wrist": "observation.images.gripper"})
    samples = samples_from(root, spec, frames=100)
    assert len(samples) == sum(EPISODES.values())
    assert samples[0].id == "ds/ep000000/f000000" and samples[-1].id == "ds/ep000001/f000003"
    for sample in samples:
        e, k = sample.frame["episode"], sample.frame["frame"]
        obs = sample.load()
        np.testing.assert_array_equal(obs.state[:2], [e, k])
        assert obs.prompt == TASKS[e] and set(obs.cameras) == {"base", "wrist"}
        for cam, key in (("base", "observation.images.base"), ("wrist", "observation.images.gripper")):
            image = obs.cameras[cam]
            assert image.shape == (H, W, 3) and image.dtype == np.uint8
            assert abs(float(image.mean()) - brightness(key, k)) < 5, (sample.id, cam)
    assert [s.id for s in samples_from(root, spec, frames=3)] == [samples[0].id, samples[4].id, samples[-1].id]


def test_calibrate_from_a_lerobot_dataset_and_compare_on_its_held_out_frames(cli, tiny_pack_dir, tmp_path,
                                                                              state_dim):
    root = write_lerobot(tmp_path / "ds", "v3.0", ("observation.images.base", "observation.images.wrist"),
                         state_dim)
    out = tmp_path / "c.npz"
    r = cli("calibrate", "--pack", str(tiny_pack_dir), "--from", str(root), "--out", str(out), "--frames", "6",
            "--held-out", "0.34")
    assert r.returncode == 0, r.stderr
    calib = load_calibration(out)
    used, held = calib.header["data"]["calibration"], calib.held_out
    assert len(used) == 4 and len(held) == 2
    assert all(d["lerobot"]["cameras"] == {"base": "observation.images.base", "wrist": "observation.images.wrist"}
               for d in used + held)
    assert all(int(calib.tensors["action.blk.0.ffn_up.weight"].count[s]) > 0 for s in range(10))
    report = tmp_path / "cmp.json"
    r = cli("pack", "compare", str(tiny_pack_dir), str(tiny_pack_dir), "--obs-from", str(out), "--json", str(report))
    assert r.returncode == 0, r.stderr
    data = json.loads(report.read_text())
    assert data["observation_ids"] == [h["id"] for h in held] and data["rel_l2"]["max"] == 0.0


@pytest.mark.parametrize("mapping, message", [
    ({}, "no image/video feature 'observation.images.base' for camera 'base' (default key); the dataset has "
         "['observation.images.top']"),
    ({"base": "observation.images.side"}, "no image/video feature 'observation.images.side' for --camera "
                                          "base=observation.images.side"),
    ({"top": "observation.images.top"}, "the pack has no camera 'top'"),
])
def test_camera_keys_that_do_not_resolve_are_named(tiny_pack_dir, tmp_path, state_dim, mapping, message):
    root = write_lerobot(tmp_path / "ds", "v2.1", ("observation.images.top",), state_dim)
    spec = CameraSpec.of(Pack.open(tiny_pack_dir, check="size").manifest, mapping)
    with pytest.raises(ConfigError) as err:
        samples_from(root, spec)
    assert message in str(err.value)


def test_optional_camera_missing_is_left_out(tiny_pack_dir, tmp_path, state_dim):
    root = write_lerobot(tmp_path / "ds", "v2.1", ("observation.images.top",), state_dim)
    spec = CameraSpec.of(Pack.open(tiny_pack_dir, check="size").manifest, {"base": "observation.images.top"})
    obs = samples_from(root, spec, frames=1)[0].load()
    assert set(obs.cameras) == {"base"}  # 'wrist' is optional in the tiny pack and not in the dataset


def test_damaged_dataset_files_are_named(tiny_pack_dir, tmp_path, state_dim):
    root = write_lerobot(tmp_path / "ds", "v2.1", ("observation.images.base",), state_dim)
    spec = CameraSpec.of(Pack.open(tiny_pack_dir, check="size").manifest)
    samples = samples_from(root, spec, frames=2)
    video = root / "videos/chunk-000/observation.images.base/episode_000001.mp4"
    video.unlink()
    with pytest.raises(ConfigError, match="missing video of 'observation.images.base' for episode 1"):
        samples[-1].load()
    info = json.loads((root / "meta/info.json").read_text())
    (root / "meta/info.json").write_text(json.dumps({**info, "codebase_version": "v1.6"}))
    with pytest.raises(ConfigError, match="only LeRobot v2.x and v3.0"):
        samples_from(tmp_path / "ds", spec)
