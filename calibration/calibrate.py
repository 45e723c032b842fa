"""`vla-edge calibrate`: run a pack on recorded observations and keep its activation statistics.

The statistics are taken on the `reference` target (the NumPy oracle, exact float32 activations),
whose every matmul goes through one place (`Pi05Reference._linear`) that an observer can watch.
The native `x86` graph has no such hook (its activations live inside one ggml graph), so
`--target x86` is refused with that reason rather than approximated.
"""

from __future__ import annotations

import datetime as _dt
import zlib
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np

from vla_edge.errors import ConfigError, TargetUnavailableError
from vla_edge.packs.manifest import load_manifest
from vla_edge.packs.pack import Pack
from vla_edge.types import Observation

from .calibfile import Calibration, load_calibration, save_calibration
from .lerobot import spread
from .matching import input_widths, is_calibration_file, pack_identity
from .observations import CameraSpec, Sample, samples_from, split_held_out
from .stats import ActivationCollector

CALIBRATION_TARGETS = ("reference",)
_CACHE_LIMIT_BYTES = 2 << 30  # above this the reference dequantises per use instead of caching


def sample_noise(sample_id: str, seed: int, shape: tuple[int, ...]) -> np.ndarray:
    """The initial flow noise a sample is run with: fixed by (seed, id), so `calibrate` and
    `pack compare --obs-from` see the same inputs for the same observation."""
    rng = np.random.default_rng([seed, zlib.crc32(sample_id.encode())])
    return rng.standard_normal(shape).astype(np.float32)


def require_target(target: str) -> None:
    if target == "x86":
        raise TargetUnavailableError(
            "calibrate --target x86: the native graph exposes no per-matmul activations yet; "
            "statistics are collected on the reference target (--target reference)")
    if target not in CALIBRATION_TARGETS:
        raise ConfigError("--target", f"expected one of {list(CALIBRATION_TARGETS)}, got '{target}'")


def gather_samples(sources: Sequence[Path], cameras: CameraSpec | None = None,
                   frames: int | None = None) -> list[Sample]:
    if not sources:
        raise ConfigError("--from", "give at least one run directory, observation folder or LeRobot dataset")
    samples = [s for src in sources for s in samples_from(Path(src), cameras, frames)]
    ids = [s.id for s in samples]
    dup = next((i for i in ids if ids.count(i) > 1), None)
    if dup is not None:
        raise ConfigError("--from", f"sample id '{dup}' appears twice (the same source given twice?)")
    return samples


def collect(pack: Pack, observations: Sequence[tuple[str, Observation]], seed: int,
            on_sample: Callable[[str], None] | None = None) -> ActivationCollector:
    """Run the reference model on every observation with the collector watching its matmuls."""
    from vla_edge.targets.reference.target import ReferenceBackend

    backend = ReferenceBackend(pack, cache_weights=pack.manifest.files.weights.size <= _CACHE_LIMIT_BYTES)
    pre = pack.family.preprocessor(pack)
    collector = ActivationCollector(input_widths(pack), int(pack.config.num_flow_steps))
    backend.model.observer = collector
    try:
        for sample_id, obs in observations:
            backend.sample_actions(pre(obs, sample_noise(sample_id, seed, pre.noise_shape())))
            if on_sample:
                on_sample(sample_id)
    finally:
        backend.model.observer = None
    return collector


def calibrate(pack_dir: Path, sources: Sequence[Path], out: Path, samples: int | None = None,
              held_out: float = 0.25, seed: int = 0, target: str = "reference", overwrite: bool = False,
              on_sample: Callable[[str], None] | None = None, camera_map: Mapping[str, str] | None = None,
              frames: int | None = None) -> Calibration:
    """Collect statistics on `samples` observations (all but the held-out ones by default, else
    that many evenly spaced ones) and write them to `out`. Every argument is checked before the
    (slow) model runs. LeRobot datasets: `frames` evenly spaced frames each (DEFAULT_FRAMES),
    pack camera -> image key overrides in `camera_map` (default key observation.images.<camera>)."""
    require_target(target)
    out = Path(out)
    if out.suffix != ".npz":
        raise ConfigError("--out", f"expected a file name ending in .npz, got '{out.name}'")
    if out.exists() and not overwrite:
        raise ConfigError("--out", f"{out} exists (pass --overwrite to replace it)")
    if not out.parent.is_dir():
        raise ConfigError("--out", f"directory {out.parent} does not exist")
    if samples is not None and samples < 1:
        raise ConfigError("--samples", f"expected at least 1, got {samples}")
    cameras = CameraSpec.of(load_manifest(Path(pack_dir)), camera_map)
    everything = gather_samples(sources, cameras, frames)
    calib_samples, held = split_held_out(everything, held_out, seed)
    calib_samples = spread(calib_samples, samples) if samples is not None else calib_samples
    loaded = [(s.id, s.load()) for s in calib_samples]  # read every file before the model runs
    pack = Pack.open(pack_dir, check="sha256")
    if pack.manifest.family != "pi05":
        raise TargetUnavailableError(f"calibrate has no implementation for family '{pack.manifest.family}'")
    collector = collect(pack, loaded, seed, on_sample)
    header = {
        "created_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "target": target,
        "pack": {**pack_identity(pack), "path": str(Path(pack_dir).resolve())},
        "data": {
            "sources": [str(Path(s).resolve()) for s in sources],
            "noise_seed": seed, "held_out_fraction": held_out,
            "calibration": [s.record() for s in calib_samples],
            "held_out": [s.record() for s in held],
        },
    }
    calib = Calibration(header, collector.tensors)
    save_calibration(out, calib)
    return calib


def evaluation_samples(obs_from: Path, cameras: CameraSpec | None = None) -> tuple[list[Sample], int]:
    """Observations for `pack compare --obs-from`: a calibration file's held-out ones (and its
    noise seed), or every sample of a run directory / observation folder / LeRobot dataset, its
    images mapped to `cameras` (seed 0)."""
    obs_from = Path(obs_from)
    if is_calibration_file(obs_from):
        calib = load_calibration(obs_from)
        held = [Sample.from_record(h) for h in calib.held_out]
        if not held:
            raise ConfigError(f"--obs-from {obs_from}", "the calibration kept no observations aside "
                                                        "(made with --held-out 0)")
        for s in held:
            if not s.path.is_dir():
                raise ConfigError(f"--obs-from {obs_from}", f"held-out observation '{s.id}' is gone ({s.path})")
        return held, int(calib.header["data"]["noise_seed"])
    return samples_from(obs_from, cameras), 0
