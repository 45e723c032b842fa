"""Observations for calibration and held-out evaluation, read from disk.

One layout for every source (docs/quantize.md, "Calibration data"):

    DIR/<sample>/state.json      {"state": [floats, robot units], "prompt": "instruction"}
    DIR/<sample>/<camera>.png    one image per robot camera (.png/.jpg or .npy, HxWx3 uint8)

Sources `calibrate --from` accepts:
- an observation folder: DIR holding sample folders (or DIR itself being one sample);
- a `vla-edge run` directory recorded with `--record-obs N`: its `observations/` folder;
- a LeRobot dataset on disk (`meta/info.json`, parquet + videos; calibration/lerobot.py): up to
  `frames` of its frames, evenly spaced, each read on demand with the pack's cameras mapped to
  the dataset's image keys.
Samples are identified by `<source>/<sample folder>` (LeRobot: `<dataset>/ep<E>/f<F>`); ids stay
valid as long as the files do.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from vla_edge.errors import ConfigError
from vla_edge.types import Observation

STATE_FILE = "state.json"
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".npy")
RUN_OBSERVATIONS = "observations"


@dataclass(frozen=True)
class CameraSpec:
    """The pack's cameras (robot names), the required ones, and `--camera NAME=KEY` overrides:
    what a LeRobot dataset's image keys are matched against."""

    cameras: list[str]
    required: list[str]
    mapping: dict[str, str] = field(default_factory=dict)

    @classmethod
    def of(cls, manifest: Any, mapping: Mapping[str, str] | None = None) -> "CameraSpec":
        return cls(list(manifest.cameras.values()), list(manifest.required_cameras), dict(mapping or {}))


@dataclass(frozen=True)
class Sample:
    """One observation on disk: `path` is its folder (LeRobot: the dataset root), `id` a stable
    name for reports; `frame` locates a LeRobot frame (data file, row, episode, frame index and
    the camera -> feature key map), so a calibration file can name it and replay it."""

    id: str
    path: Path
    frame: dict[str, Any] | None = field(default=None, compare=False, hash=False)

    def load(self) -> Observation:
        if self.frame is None:
            return read_observation(self.path)
        from .lerobot import FrameRef

        ref = FrameRef(self.path / self.frame["data_file"], int(self.frame["row"]), int(self.frame["episode"]),
                       int(self.frame["frame"]))
        return _dataset(self.path).observation(ref, self.frame["cameras"])

    def record(self) -> dict[str, Any]:
        """How a calibration file's header names it (read back by `from_record`)."""
        return {"id": self.id, "path": str(self.path), **({"lerobot": self.frame} if self.frame else {})}

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> "Sample":
        return cls(str(record["id"]), Path(record["path"]), record.get("lerobot"))


def _dataset(root: Path) -> Any:
    """One LeRobotDataset per dataset (its metadata read once), renewed when info.json changes."""
    from .lerobot import INFO, file_stamp

    return _open_dataset(root, file_stamp(root / INFO))


@functools.lru_cache(maxsize=4)
def _open_dataset(root: Path, stamp: tuple[int, int]) -> Any:
    from .lerobot import LeRobotDataset

    return LeRobotDataset(root)


def _read_image(path: Path) -> np.ndarray:
    try:
        if path.suffix == ".npy":
            image = np.load(path, allow_pickle=False)
        else:
            from PIL import Image

            with Image.open(path) as im:
                image = np.asarray(im.convert("RGB"))
    except (OSError, ValueError) as exc:
        raise ConfigError(str(path), f"unreadable image: {exc}") from exc
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ConfigError(str(path), f"expected an HxWx3 uint8 image, got dtype {image.dtype} shape {image.shape}")
    return image


def read_observation(folder: Path) -> Observation:
    """Read one sample folder; every defect names the file and what was expected."""
    state_file = folder / STATE_FILE
    try:
        record = json.loads(state_file.read_text())
    except (OSError, ValueError) as exc:
        raise ConfigError(str(state_file), f"expected a JSON object {{state, prompt}}: {exc}") from exc
    if not isinstance(record, dict) or "state" not in record or "prompt" not in record:
        raise ConfigError(str(state_file), "expected a JSON object with 'state' (list of floats) and 'prompt' (text)")
    try:
        state = np.asarray(record["state"], dtype=np.float32)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{state_file}:state", f"expected a list of numbers: {exc}") from exc
    cameras = {p.stem: _read_image(p) for p in sorted(folder.iterdir()) if p.suffix.lower() in IMAGE_SUFFIXES}
    return Observation(cameras=cameras, state=state, prompt=str(record["prompt"]), timestamp=0.0)


def write_observation(folder: Path, obs: Observation) -> None:
    """Write `obs` in the layout above (PNG images), e.g. for `vla-edge run --record-obs`."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=False)
    for name, image in obs.cameras.items():
        Image.fromarray(np.ascontiguousarray(image)).save(folder / f"{name}.png")
    state = {"state": [float(v) for v in np.asarray(obs.state).ravel()], "prompt": obs.prompt,
             "timestamp": float(obs.timestamp)}
    (folder / STATE_FILE).write_text(json.dumps(state))


def _sample_folders(root: Path) -> list[Path]:
    if (root / STATE_FILE).is_file():
        return [root]
    return sorted(p for p in root.iterdir() if p.is_dir() and (p / STATE_FILE).is_file())


def lerobot_samples(source: Path, cameras: CameraSpec | None, frames: int) -> list[Sample]:
    """`frames` evenly spaced frames of a LeRobot dataset, cameras mapped for the pack."""
    from .lerobot import spread

    if cameras is None:
        raise ConfigError(f"--from {source}", "a LeRobot dataset needs the pack's cameras to map its image keys")
    if frames < 1:
        raise ConfigError("--frames", f"expected at least 1 frame per dataset, got {frames}")
    root = source.resolve()
    dataset = _dataset(root)
    camera_keys = dataset.camera_map(cameras.cameras, cameras.required, cameras.mapping)
    return [Sample(f"{source.name}/ep{ref.episode:06d}/f{ref.frame:06d}", root,
                   {"data_file": str(ref.data_file.relative_to(root)), "row": ref.row, "episode": ref.episode,
                    "frame": ref.frame, "cameras": camera_keys})
            for ref in spread(dataset.frames(), frames)]


def samples_from(source: Path, cameras: CameraSpec | None = None, frames: int | None = None) -> list[Sample]:
    """Every sample of one `--from` source, in a stable order (a LeRobot dataset: `frames` of
    them, evenly spaced; its images mapped to `cameras`)."""
    from .lerobot import DEFAULT_FRAMES, is_lerobot_dataset

    source = Path(source)
    if not source.is_dir():
        raise ConfigError(f"--from {source}", "expected a run directory or an observation folder (not found)")
    if is_lerobot_dataset(source):
        return lerobot_samples(source, cameras, DEFAULT_FRAMES if frames is None else frames)
    root = source
    if (source / "config.yaml").is_file() and (source / "ticks.jsonl").is_file():
        root = source / RUN_OBSERVATIONS
        if not root.is_dir():
            raise ConfigError(f"--from {source}", "this run recorded no observations; record them with "
                                                  "`vla-edge run ... --record-obs N` (every N-th observation)")
    folders = _sample_folders(root)
    if not folders:
        raise ConfigError(f"--from {source}", f"no observations: expected sample folders with a {STATE_FILE} "
                                              "(docs/quantize.md, 'Calibration data')")
    return [Sample(f"{source.name}/{f.relative_to(root)}" if f != root else source.name, f.resolve())
            for f in folders]


def split_held_out(samples: list[Sample], fraction: float, seed: int) -> tuple[list[Sample], list[Sample]]:
    """(calibration, held-out): a seeded shuffle, `round(fraction * n)` held out (at least one when
    fraction > 0, never all of them)."""
    if not 0.0 <= fraction < 1.0:
        raise ConfigError("--held-out", f"expected a fraction in [0, 1), got {fraction}")
    order = np.random.default_rng(seed).permutation(len(samples))
    n_held = 0 if fraction == 0 else min(len(samples) - 1, max(1, round(fraction * len(samples))))
    held = [samples[i] for i in sorted(order[:n_held])]
    calib = [samples[i] for i in sorted(order[n_held:])]
    if not calib:
        raise ConfigError("--from", "need at least one observation left for calibration")
    return calib, held
