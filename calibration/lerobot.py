"""LeRobot datasets on disk as calibration observations (`calibrate --from DATASET`).

Layout (the `lerobot` dataset format, codebase versions v2.x and v3.0):

    meta/info.json      codebase_version, fps, features {key: {dtype, shape}}, data_path, video_path,
                        chunks_size (v2)
    meta/tasks.jsonl    v2: {"task_index", "task"} per line
    meta/tasks.parquet  v3: task_index + the task text (a `task` column or the saved pandas index)
    meta/episodes/**/*.parquet   v3: per episode, where each camera's frames are:
                        `videos/<key>/chunk_index`, `.../file_index`, `.../from_timestamp`
    data/**/*.parquet   one row per frame: episode_index, frame_index, timestamp, task_index,
                        observation.state, and `image` features inline ({bytes, path} PNG/JPEG)
    videos/...mp4       `video` features: v2 one file per episode and camera
                        (video_path with episode_chunk, video_key, episode_index), v3 files holding
                        several episodes (video_path with video_key, chunk_index, file_index; an
                        episode starts at its from_timestamp)

A frame becomes an Observation: the state vector, the task text as prompt, and one image per pack
camera. Camera c reads feature `observation.images.<c>` unless mapped otherwise (`--camera
c=KEY`); a required camera without a feature, or a mapping to a key the dataset lacks, is an
error naming the key and the keys there are. Video frames are decoded with the ffmpeg binary that
imageio-ffmpeg ships (already a dependency: AV1 — LeRobot's default codec —, H.264, HEVC), seeking
to the frame's time minus half a frame so the nearest frame is returned. Parquet is read with
pyarrow, installed by the `lerobot` extra (`pip install 'vla-edge[lerobot]'`).
"""

from __future__ import annotations

import functools
import io
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from vla_edge.errors import ConfigError
from vla_edge.types import Observation

INFO = Path("meta") / "info.json"
STATE_KEY = "observation.state"
IMAGE_PREFIX = "observation.images."
DEFAULT_FRAMES = 64  # frames taken from a dataset, evenly spaced over all its frames
_FRAME_COLUMNS = ("episode_index", "frame_index", "timestamp", "task_index")


def is_lerobot_dataset(root: Path) -> bool:
    return (Path(root) / INFO).is_file()


def _pyarrow_parquet() -> Any:
    try:
        import pyarrow.parquet as pq
    except ImportError as exc:
        raise ConfigError("--from", "reading a LeRobot dataset needs pyarrow for its parquet files: "
                                    "pip install 'vla-edge[lerobot]'") from exc
    return pq


def file_stamp(path: Path) -> tuple[int, int]:
    """(mtime ns, size): cached reads of a file are renewed when it changes."""
    try:
        st = Path(path).stat()
    except OSError as exc:
        raise ConfigError(str(path), f"unreadable: {exc}") from exc
    return st.st_mtime_ns, st.st_size


def _table(path: Path, columns: tuple[str, ...] | None = None) -> Any:
    """A parquet file's table (those columns), read once while the file is unchanged."""
    return _read_table(path, columns, file_stamp(path))


@functools.lru_cache(maxsize=8)
def _read_table(path: Path, columns: tuple[str, ...] | None, stamp: tuple[int, int]) -> Any:
    try:
        return _pyarrow_parquet().read_table(path, columns=list(columns) if columns else None)
    except ConfigError:
        raise
    except Exception as exc:  # pyarrow raises ArrowInvalid / OSError / KeyError for damage
        raise ConfigError(str(path), f"unreadable parquet file: {exc}") from exc


@dataclass(frozen=True)
class FrameRef:
    """Where one frame lives: its data file and row, and its episode / index for reports."""

    data_file: Path
    row: int
    episode: int
    frame: int


class LeRobotDataset:
    """A dataset's metadata and frame index; frames are read one at a time (`observation`)."""

    def __init__(self, root: Path):
        self.root = Path(root)
        info_path = self.root / INFO
        try:
            self.info = json.loads(info_path.read_text())
        except (OSError, ValueError) as exc:
            raise ConfigError(str(info_path), f"expected LeRobot's info.json (a JSON object): {exc}") from exc
        if not isinstance(self.info, dict) or not isinstance(self.info.get("features"), dict):
            raise ConfigError(f"{info_path}:features", "missing: expected {key: {dtype, shape}} per feature")
        version = str(self.info.get("codebase_version", ""))
        if not (version.startswith("v2") or version.startswith("v3")):
            raise ConfigError(f"{info_path}:codebase_version", f"'{version}': only LeRobot v2.x and v3.0 datasets "
                                                               "are read")
        self.v3 = version.startswith("v3")
        self.features: dict[str, dict[str, Any]] = self.info["features"]
        self.fps = float(self.info.get("fps") or 0)
        if self.fps <= 0:
            raise ConfigError(f"{info_path}:fps", f"expected a positive frame rate, got {self.info.get('fps')}")
        self.data_files = sorted((self.root / "data").rglob("*.parquet"))
        if not self.data_files:
            raise ConfigError(str(self.root / "data"), "no parquet files: expected data/**/*.parquet")

    @property
    def camera_keys(self) -> list[str]:
        return [k for k, f in self.features.items() if f.get("dtype") in ("video", "image")]

    @functools.cached_property
    def tasks(self) -> dict[int, str]:
        """task_index -> task text."""
        meta = self.root / "meta"
        if (meta / "tasks.jsonl").is_file():
            lines = [json.loads(line) for line in (meta / "tasks.jsonl").read_text().splitlines() if line.strip()]
            return {int(t["task_index"]): str(t["task"]) for t in lines}
        if (meta / "tasks.parquet").is_file():
            table = _table(meta / "tasks.parquet").to_pydict()
            text = table.get("task", table.get("__index_level_0__"))
            if text is None or "task_index" not in table:
                raise ConfigError(str(meta / "tasks.parquet"), "expected columns task_index and task")
            return {int(i): str(t) for i, t in zip(table["task_index"], text)}
        raise ConfigError(str(meta), "no tasks.jsonl (v2) or tasks.parquet (v3): the prompts are unknown")

    @functools.cached_property
    def episodes(self) -> dict[int, dict[str, Any]]:
        """v3: episode_index -> its row of meta/episodes (where its video frames are)."""
        files = sorted((self.root / "meta" / "episodes").rglob("*.parquet"))
        if not files:
            raise ConfigError(str(self.root / "meta" / "episodes"), "no parquet files (a v3 dataset lists its "
                                                                    "episodes' video files there)")
        rows: dict[int, dict[str, Any]] = {}
        for path in files:
            table = _table(path).to_pylist()
            rows.update({int(r["episode_index"]): r for r in table})
        return rows

    def frames(self) -> list[FrameRef]:
        """Every frame of every data file, in file and row order."""
        refs = []
        for path in self.data_files:
            table = _table(path, ("episode_index", "frame_index"))
            eps, idx = table.column("episode_index").to_pylist(), table.column("frame_index").to_pylist()
            refs += [FrameRef(path, row, int(e), int(f)) for row, (e, f) in enumerate(zip(eps, idx))]
        return refs

    def camera_map(self, cameras: list[str], required: list[str], mapping: Mapping[str, str]) -> dict[str, str]:
        """Pack camera -> dataset feature key; named errors for anything that does not resolve."""
        keys = self.camera_keys
        unknown = sorted(set(mapping) - set(cameras))
        if unknown:
            raise ConfigError(f"--camera {unknown[0]}", f"the pack has no camera '{unknown[0]}' (it has {cameras})")
        out = {}
        for cam in cameras:
            key = mapping.get(cam, IMAGE_PREFIX + cam)
            if key in keys:
                out[cam] = key
            elif cam in mapping or cam in required:
                how = f"--camera {cam}={key}" if cam in mapping else f"camera '{cam}' (default key)"
                raise ConfigError(f"{self.root / INFO}:features", f"no image/video feature '{key}' for {how}; the "
                                  f"dataset has {keys}: map it with --camera {cam}=KEY")
        return out

    def observation(self, ref: FrameRef, cameras: Mapping[str, str]) -> Observation:
        """The frame as an Observation (state, prompt, one image per mapped camera)."""
        if STATE_KEY not in self.features:
            raise ConfigError(f"{self.root / INFO}:features", f"no '{STATE_KEY}' feature (the robot state)")
        columns = (*_FRAME_COLUMNS, STATE_KEY, *(k for k in cameras.values() if self.features[k]["dtype"] == "image"))
        row = {k: v[0] for k, v in _table(ref.data_file, columns).slice(ref.row, 1).to_pydict().items()}
        where = f"{ref.data_file} row {ref.row}"
        task = self.tasks.get(int(row["task_index"]))
        if task is None:
            raise ConfigError(f"{where}:task_index", f"{row['task_index']} is not in the dataset's tasks")
        try:
            state = np.asarray(row[STATE_KEY], np.float32).ravel()
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"{where}:{STATE_KEY}", f"expected a list of numbers: {exc}") from exc
        images = {cam: self._image(key, row, ref, where) for cam, key in cameras.items()}
        return Observation(cameras=images, state=state, prompt=task, timestamp=float(row["timestamp"]))

    def _image(self, key: str, row: Mapping[str, Any], ref: FrameRef, where: str) -> np.ndarray:
        if self.features[key]["dtype"] == "image":
            cell = row[key]
            data = cell.get("bytes") if isinstance(cell, dict) else None
            if data is None:
                raise ConfigError(f"{where}:{key}", "expected an embedded image ({bytes, path} with the bytes)")
            from PIL import Image

            with Image.open(io.BytesIO(data)) as im:
                return np.asarray(im.convert("RGB"))
        path, start = self._video(key, ref.episode)
        return decode_frame(path, start + float(row["timestamp"]), self.fps)

    def _video(self, key: str, episode: int) -> tuple[Path, float]:
        """(video file, time the episode starts at in it) for camera feature `key`."""
        template = self.info.get("video_path")
        if not template:
            raise ConfigError(f"{self.root / INFO}:video_path", "missing (needed for video features)")
        if self.v3:
            ep = self.episodes.get(episode)
            if ep is None:
                raise ConfigError(str(self.root / "meta" / "episodes"), f"episode {episode} is not listed")
            try:
                rel = template.format(video_key=key, chunk_index=int(ep[f"videos/{key}/chunk_index"]),
                                      file_index=int(ep[f"videos/{key}/file_index"]))
                start = float(ep[f"videos/{key}/from_timestamp"])
            except KeyError as exc:
                raise ConfigError(str(self.root / "meta" / "episodes"), f"episode {episode} has no {exc}") from exc
        else:
            chunk = episode // int(self.info.get("chunks_size") or 1000)
            rel, start = template.format(video_key=key, episode_chunk=chunk, episode_index=episode), 0.0
        path = self.root / rel
        if not path.is_file():
            raise ConfigError(str(path), f"missing video of '{key}' for episode {episode}")
        return path, start


def decode_frame(path: Path, seconds: float, fps: float) -> np.ndarray:
    """The frame of `path` nearest to `seconds` as HxWx3 uint8 (ffmpeg from imageio-ffmpeg)."""
    import imageio_ffmpeg

    seek = max(0.0, seconds - 0.5 / fps)
    try:
        reader = imageio_ffmpeg.read_frames(str(path), input_params=["-ss", f"{seek:.6f}"],
                                            output_params=["-frames:v", "1"])
        meta = next(reader)
        raw = next(reader, None)
        reader.close()
    except (OSError, RuntimeError, StopIteration) as exc:
        raise ConfigError(str(path), f"undecodable video: {exc}") from exc
    if raw is None:
        raise ConfigError(str(path), f"no frame at {seconds:.3f} s (the video is shorter)")
    width, height = meta["size"]
    return np.frombuffer(raw, np.uint8).reshape(height, width, 3).copy()


def spread(items: list[Any], n: int) -> list[Any]:
    """At most n items, evenly spaced over the list (first and last included)."""
    if len(items) <= n:
        return list(items)
    return [items[int(i)] for i in np.unique(np.linspace(0, len(items) - 1, n).round().astype(int))]
