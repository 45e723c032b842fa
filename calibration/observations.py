"""Observations for calibration and held-out evaluation, read from disk.

One layout for every source (docs/quantize.md, "Calibration data"):

    DIR/<sample>/state.json      {"state": [floats, robot units], "prompt": "instruction"}
    DIR/<sample>/<camera>.png    one image per robot camera (.png/.jpg or .npy, HxWx3 uint8)

Sources `calibrate --from` accepts:
- an observation folder: DIR holding sample folders (or DIR itself being one sample);
- a `vla-edge run` directory recorded with `--record-obs N`: its `observations/` folder;
- a LeRobot dataset on disk is not read yet (the command says so).
Samples are identified by `<source>/<sample folder>`; ids stay valid as long as the files do.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vla_edge.errors import ConfigError
from vla_edge.types import Observation

STATE_FILE = "state.json"
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".npy")
RUN_OBSERVATIONS = "observations"


@dataclass(frozen=True)
class Sample:
    """One observation on disk: `path` is its folder, `id` a stable name for reports."""

    id: str
    path: Path

    def load(self) -> Observation:
        return read_observation(self.path)


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


def _is_lerobot(root: Path) -> bool:
    return (root / "meta" / "info.json").is_file()


def samples_from(source: Path) -> list[Sample]:
    """Every sample of one `--from` source, in a stable order."""
    source = Path(source)
    if not source.is_dir():
        raise ConfigError(f"--from {source}", "expected a run directory or an observation folder (not found)")
    if _is_lerobot(source):
        raise ConfigError(f"--from {source}", "LeRobot datasets are not supported by calibrate yet; export frames "
                                              "to an observation folder (docs/quantize.md, 'Calibration data')")
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
