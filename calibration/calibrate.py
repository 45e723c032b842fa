"""`vla-edge calibrate`: run a pack on recorded observations and keep its activation statistics.

The statistics are taken on the `reference` target (the NumPy oracle, exact float32 activations),
whose every matmul goes through one place (`Pi05Reference._linear`) that an observer can watch,
or on the native `x86` graph: its runtime, given a matmul observer, keeps the input of every
product with a weight alive (the allocator would otherwise reuse that memory) and reports it after
each graph runs — the activations ggml actually computed, at native speed plus one copy each.
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
from .matching import expert_tensor, input_widths, is_calibration_file, pack_identity
from .observations import CameraSpec, Sample, samples_from, split_held_out
from .stats import ActivationCollector

CALIBRATION_TARGETS = ("reference", "x86")
_CACHE_LIMIT_BYTES = 2 << 30  # above this the reference dequantises per use instead of caching


def sample_noise(sample_id: str, seed: int, shape: tuple[int, ...]) -> np.ndarray:
    """The initial flow noise a sample is run with: fixed by (seed, id), so `calibrate` and
    `pack compare --obs-from` see the same inputs for the same observation."""
    rng = np.random.default_rng([seed, zlib.crc32(sample_id.encode())])
    return rng.standard_normal(shape).astype(np.float32)


def require_target(target: str) -> None:
    if target not in CALIBRATION_TARGETS:
        raise ConfigError("--target", f"expected one of {list(CALIBRATION_TARGETS)}, got '{target}'")


class NativeFlowSteps:
    """Adapts the native runtime's observer (weight name, x) to the collector's (name, x, flow).
    The native graphs report each expert weight once per flow step, in step order (one graph per
    step, or all steps in one graph), so the k-th report of an `action.*` weight within one
    inference is flow step k; `finish` checks every expert weight was seen once per step."""

    def __init__(self, collector: ActivationCollector, num_steps: int):
        self.collector, self.num_steps = collector, num_steps
        self.seen: dict[str, int] = {}

    def __call__(self, name: str, x: np.ndarray) -> None:
        flow = None
        if expert_tensor(name):
            step = self.seen.get(name, 0)
            self.seen[name] = step + 1
            if step >= self.num_steps:
                raise TargetUnavailableError(f"x86 graph ran '{name}' more than {self.num_steps} times in one "
                                             "inference; its flow steps cannot be told apart")
            flow = (step, self.num_steps)
        self.collector(name, x, flow)

    def finish(self) -> None:
        short = {n: k for n, k in self.seen.items() if k != self.num_steps}
        self.seen = {}
        if short:
            name, k = next(iter(short.items()))
            raise TargetUnavailableError(f"x86 graph ran '{name}' {k} times, expected once per flow step "
                                         f"({self.num_steps})")


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
            on_sample: Callable[[str], None] | None = None, target: str = "reference") -> ActivationCollector:
    """Run the pack on every observation with the collector watching its matmul inputs: on the
    reference model (exact float32, through Pi05Reference's observer) or on the native x86 graph
    (its products' inputs as ggml computed them, reported by the runtime's matmul observer)."""
    pre = pack.family.preprocessor(pack)
    steps = int(pack.config.num_flow_steps)
    collector = ActivationCollector(input_widths(pack), steps)
    if target == "x86":
        from vla_edge.targets.x86.target import create_backend

        backend = create_backend(pack)
        if not hasattr(backend.runtime, "set_matmul_observer"):
            raise TargetUnavailableError("calibrate --target x86: the installed native module predates the matmul "
                                         "observer; rebuild it (pip install -e .) or use --target reference")
        adapter = NativeFlowSteps(collector, steps)
        backend.runtime.set_matmul_observer(adapter)
        after, detach = adapter.finish, lambda: backend.runtime.set_matmul_observer(None)
    else:
        from vla_edge.targets.reference.target import ReferenceBackend

        backend = ReferenceBackend(pack, cache_weights=pack.manifest.files.weights.size <= _CACHE_LIMIT_BYTES)
        backend.model.observer = collector
        after, detach = (lambda: None), (lambda: setattr(backend.model, "observer", None))
    try:
        for sample_id, obs in observations:
            backend.sample_actions(pre(obs, sample_noise(sample_id, seed, pre.noise_shape())))
            after()
            if on_sample:
                on_sample(sample_id)
    finally:
        detach()
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
    collector = collect(pack, loaded, seed, on_sample, target)
    header = {
        "created_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "target": target,
        # matmul weights the run never saw: their outputs do not reach the actions
        "unused": {name: f"never ran on the {target} target: its output does not reach the actions"
                   for name in input_widths(pack) if name not in collector.tensors},
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
