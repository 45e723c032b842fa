"""The one Policy API: same observation in, same action chunk out, whatever the target."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .errors import ObservationError, TargetUnavailableError
from .packs.pack import Check, Pack
from .types import ActionChunk, Observation


@dataclass(frozen=True)
class PolicyInfo:
    family: str
    target: str
    pack_name: str
    pack_dir: str
    quant_recipe: str
    bits_per_weight: float
    weights_bytes: int
    action_names: tuple[str, ...]
    action_units: tuple[str, ...]
    state_names: tuple[str, ...]
    cameras: dict[str, str]  # model slot -> robot camera
    required_cameras: tuple[str, ...]
    horizon: int
    control_period_s: float
    memory: dict[str, int] = field(default_factory=dict)  # bytes: weights file, process RSS after load
    backend: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _memory(weights_bytes: int) -> dict[str, int]:
    import psutil

    return {"weights_file_bytes": weights_bytes, "process_rss_bytes": psutil.Process().memory_info().rss}


class Policy:
    """A pack bound to a target. Not thread-safe: one inference at a time per Policy."""

    def __init__(self, pack: Pack, target: str, backend: Any, seed: int | None = None,
                 target_reason: str = "chosen explicitly"):
        self.pack = pack
        self.target = target
        self.target_reason = target_reason  # why this target (what `auto` passed over, if it chose)
        self._backend = backend
        self._pre = pack.family.preprocessor(pack)
        self._seed = seed
        self._rng = np.random.default_rng(seed)
        m = pack.manifest
        self.info = PolicyInfo(
            family=m.family, target=target, pack_name=m.name, pack_dir=str(pack.dir),
            quant_recipe=m.quantization.recipe, bits_per_weight=m.quantization.bits_per_weight,
            weights_bytes=m.files.weights.size, action_names=tuple(m.action_space.names),
            action_units=tuple(m.action_space.units), state_names=tuple(m.state_space.names),
            cameras=dict(m.cameras), required_cameras=tuple(m.required_cameras),
            horizon=int(getattr(pack.config, "action_horizon")),
            control_period_s=m.action_space.control_period_s, memory=_memory(m.files.weights.size),
            backend=backend.describe(),
        )

    @property
    def seed(self) -> int | None:
        """The noise seed given at load (None: fresh entropy); reset() restarts its sequence."""
        return self._seed

    @property
    def noise_shape(self) -> tuple[int, ...]:
        return self._pre.noise_shape()

    def infer(self, obs: Observation, noise: np.ndarray | None = None) -> ActionChunk:
        """Predict an action chunk for `obs`. Fresh Gaussian noise is drawn per call unless given
        (pass it to reproduce a result exactly, e.g. golden checks or cross-target comparisons)."""
        t0 = time.perf_counter()
        inputs = self._inputs(obs, noise)
        t1 = time.perf_counter()
        result = self._backend.sample_actions(inputs)
        return self._chunk(obs, result, (t1 - t0) * 1e3, t0)

    @property
    def batches(self) -> bool:
        """Whether infer_batch runs several observations in one forward pass on this target
        (x86 and the ggml-CUDA path do); the server batches only such a Policy."""
        return bool(self._backend.batches)

    def infer_batch(self, requests: Sequence[tuple[Observation, np.ndarray | None]]) -> list[ActionChunk | Exception]:
        """One chunk per (observation, noise) from ONE forward pass per stage for all of them (each
        weight read once for the batch), equal to `infer` on each alone within the target's
        tolerance. An observation refused by pre-processing (or whose output is not finite) gets
        its ObservationError in its place and the others are still served; a failure of the
        target itself raises. Noise None draws from this Policy's generator, in request order."""
        if not self.batches:
            raise TargetUnavailableError(f"target '{self.target}' cannot run several observations in one forward "
                                         "pass; call infer() per observation")
        t0 = time.perf_counter()
        prepared: list[Any] = []
        for obs, noise in requests:
            try:
                prepared.append(self._inputs(obs, noise))
            except ObservationError as exc:
                prepared.append(exc)
        valid = [inputs for inputs in prepared if not isinstance(inputs, Exception)]
        pre_ms = (time.perf_counter() - t0) * 1e3
        results = iter(self._backend.sample_actions_batch(valid) if valid else [])
        out: list[ActionChunk | Exception] = []
        for (obs, _), inputs in zip(requests, prepared):
            if isinstance(inputs, Exception):
                out.append(inputs)
                continue
            try:
                out.append(self._chunk(obs, next(results), pre_ms, t0))
            except ObservationError as exc:
                out.append(exc)
        return out

    def _inputs(self, obs: Observation, noise: np.ndarray | None) -> Any:
        """The backend's inputs object for `obs` (validation and pre-processing; noise drawn if None)."""
        if noise is None:
            noise = self._rng.standard_normal(self.noise_shape).astype(np.float32)
        elif not isinstance(noise, np.ndarray):
            raise ObservationError("noise", f"float32 array {self.noise_shape}", type(noise).__name__)
        return self._pre(obs, noise)

    def _chunk(self, obs: Observation, result: Any, preprocess_ms: float, t0: float) -> ActionChunk:
        """Post-process one backend result into the robot's units (refusing non-finite output)."""
        t2 = time.perf_counter()
        # The family refuses non-finite output (ObservationError 'actions'): never hand it to a robot.
        actions = self.pack.family.postprocess(self.pack, result.actions, obs)
        t3 = time.perf_counter()
        latency = {"preprocess": preprocess_ms, **result.latency_ms, "postprocess": (t3 - t2) * 1e3,
                   "total": (t3 - t0) * 1e3}
        m = self.pack.manifest
        return ActionChunk(actions=actions, control_period_s=m.action_space.control_period_s,
                           timestamp=obs.timestamp, names=tuple(m.action_space.names),
                           units=tuple(m.action_space.units), latency_ms=latency)

    def backend_status(self) -> dict[str, Any]:
        """The backend's description now (graph builds, buffer sizes... change only while warming up)."""
        return self._backend.describe()

    def reset(self) -> None:
        """Start a new episode: re-seed the noise generator (same seed -> same noise sequence)."""
        self._rng = np.random.default_rng(self._seed)

    def close(self) -> None:
        self._backend.close()

    def __enter__(self) -> "Policy":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def load_policy(pack: str | Path | Pack, target: str = "reference", seed: int | None = None,
                check: Check = "auto", **options: Any) -> Policy:
    """Open (and check) a pack and bind it to `target`; options go to the target backend.
    target="auto" picks the fastest target that can run the pack here (`Policy.target_reason` says
    which and why)."""
    from vla_edge.targets.registry import choose_auto, create_backend, pack_supports, require_known

    opened = pack if isinstance(pack, Pack) else Pack.open(pack, check=check)
    reason = "chosen explicitly"
    if target == "auto":
        target, reason = choose_auto(list(opened.manifest.targets))
    require_known(target)
    if not pack_supports(target, opened.manifest.targets):
        raise TargetUnavailableError(
            f"pack '{opened.manifest.name}' does not list target '{target}' (it supports {opened.manifest.targets})")
    backend = create_backend(target, opened, **options)
    return Policy(opened, target, backend, seed=seed, target_reason=reason)
