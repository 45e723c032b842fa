"""Episodes spread over a Ray cluster (`vla-edge eval --ray [ADDRESS]`): Ray schedules, we do not.

Each Ray actor is what a local worker process is (`runner.UnitWorker`: its own policies and its
own simulator process, built once) and runs one unit (a task instance for every pack that lacks it)
at a time; the driver hands the next unit to whichever actor finishes and appends the records to
episodes.jsonl itself, as they arrive. The driver loads no pack: the suite's tasks and the packs'
descriptions come from the first actor (a cluster's head node may lack the workers' GPUs). Seeds live in the units, so which actor runs a unit does not
change its records: a Ray run equals a local run, and an interrupted one resumes the same way.

Videos are encoded on the actor's machine and sent back as bytes, so `--out` need not be on a
filesystem the cluster's nodes share. Every node needs vla-edge (and, for LIBERO, the simulator
environment of `vla-edge eval --setup-sim`) installed: Ray ships the work, not the environment.
"""

from __future__ import annotations

import dataclasses
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from rich.console import Console

from ..errors import ConfigError, VlaEdgeError

if TYPE_CHECKING:
    from .plan import EpisodeSpec
    from .records import EpisodeLog
    from .runner import EnvFactory, EvalRequest, PolicyFactory
    from .sim_env import TaskInfo

RAY_EXTRA = "pip install 'vla-edge[ray]'"


def import_ray() -> Any:
    """Ray, or a ConfigError naming the extra that installs it."""
    try:
        import ray  # noqa: PLC0415
    except ImportError as exc:
        raise ConfigError("--ray", f"needs Ray, an optional extra: {RAY_EXTRA} ({exc})") from exc
    return ray


@dataclass(frozen=True)
class RaySettings:
    """Where the cluster is and what one actor asks of it.

    address 'local': `ray.init()`'s own choice ($RAY_ADDRESS, else a cluster started on this
    machine with `ray start`, else a new local instance). Otherwise `ray.init(address=...)`:
    `auto`, `HOST:6379` on a cluster node, or `ray://HOST:10001` (Ray Client) from outside it."""

    address: str = "local"
    cpus_per_worker: float = 1.0
    gpus_per_worker: float = 0.0  # e.g. 1 (or 0.5: two actors share a GPU) for `--target cuda` packs

    def __post_init__(self) -> None:
        if not self.address.strip():
            raise ConfigError("--ray", "give the cluster's address, or 'local' for Ray's default")
        if self.cpus_per_worker < 0 or self.gpus_per_worker < 0:
            raise ConfigError("--ray-cpus/--ray-gpus", "resources per Ray actor cannot be negative")


class _RayWorker:
    """A `runner.UnitWorker` inside a Ray actor. Errors travel as plain VlaEdgeError text (subclasses
    with extra constructor arguments do not unpickle), and a failure to build the worker is
    reported by the actor's first call rather than as an opaque dead actor."""

    def __init__(self, req: EvalRequest, env_factory: EnvFactory, policy_factory: PolicyFactory):
        from .runner import UnitWorker  # noqa: PLC0415

        self._videos = tempfile.TemporaryDirectory(prefix="vla-edge-eval-") if req.video else None
        local_req = dataclasses.replace(req, out=Path(self._videos.name)) if self._videos else req
        self._worker: UnitWorker | None = None
        self._error: str | None = None
        try:
            self._worker = UnitWorker(local_req, env_factory, policy_factory)
        except VlaEdgeError as exc:
            self._error = str(exc)

    def _ready(self) -> Any:
        if self._worker is None:
            raise VlaEdgeError(f"a Ray worker could not start: {self._error}")
        return self._worker

    def tasks(self, suite: str) -> list[TaskInfo]:
        return self._ready().tasks(suite)

    def describe(self) -> dict[str, dict[str, Any]]:
        return self._ready().describe()

    def run_unit(self, spec: EpisodeSpec, labels: list[str]) -> tuple[list[dict[str, Any]], dict[str, bytes]]:
        worker = self._ready()
        try:
            records = worker.run_unit(spec, labels)
        except VlaEdgeError as exc:
            raise VlaEdgeError(str(exc)) from None
        videos = {}
        for record in records:
            if record.get("video"):
                path = Path(worker.req.out) / record["video"]
                videos[record["video"]] = path.read_bytes()
                path.unlink()
        return records, videos

    def close(self) -> None:
        if self._worker is not None:
            self._worker.close()
        if self._videos is not None:
            self._videos.cleanup()


def _failure(ray: Any, exc: Exception) -> VlaEdgeError:
    cause = getattr(exc, "cause", None)
    if isinstance(cause, VlaEdgeError):
        return VlaEdgeError(str(cause))
    if isinstance(exc, ray.exceptions.RayTaskError) and cause is not None:
        return VlaEdgeError(f"a Ray worker failed: {type(cause).__name__}: {cause}")
    return VlaEdgeError(f"a Ray worker failed: {exc}")


def _write_video(out: Path, relative: str, data: bytes) -> None:
    path = Path(out) / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


class RayPool:
    """The Ray side of `run_eval`: joins (or starts) the cluster, answers `tasks`/`describe` from
    its first actor, runs units on up to `req.workers` actors. Uses the Ray session already
    initialised in this process if there is one (and leaves it running)."""

    def __init__(self, req: EvalRequest, env_factory: EnvFactory, policy_factory: PolicyFactory):
        assert req.ray is not None
        self._ray = ray = import_ray()
        # actors run in other working directories (other machines): local pack directories go absolute
        shipped = dataclasses.replace(req, packs=[str(Path(spec).resolve()) if Path(spec).is_dir() else spec
                                                  for spec in req.packs])
        self._req, self._args = req, (shipped, env_factory, policy_factory)
        self._started = not ray.is_initialized()
        if self._started:
            try:
                ray.init(address=None if req.ray.address == "local" else req.ray.address, include_dashboard=False,
                         log_to_driver=False)
            except Exception as exc:  # ConnectionError, ValueError, RuntimeError: Ray names the cause
                raise ConfigError(f"--ray {req.ray.address}", f"cannot start or join a Ray cluster: {exc}") from exc
        self._class = ray.remote(num_cpus=req.ray.cpus_per_worker, num_gpus=req.ray.gpus_per_worker,
                                 max_restarts=0)(_RayWorker)
        self._actors: list[Any] = []
        try:
            self._actors.append(self._class.remote(*self._args))
        except BaseException:
            self.close()
            raise

    def _get(self, ref: Any) -> Any:
        try:
            return self._ray.get(ref)
        except self._ray.exceptions.RayError as exc:
            raise _failure(self._ray, exc) from None

    def tasks(self, suite: str) -> list[TaskInfo]:
        return self._get(self._actors[0].tasks.remote(suite))

    def describe(self) -> dict[str, dict[str, Any]]:
        return self._get(self._actors[0].describe.remote())

    def run(self, units: list[tuple[EpisodeSpec, list[str]]], log: EpisodeLog, advance: Callable[[], None],
            console: Console) -> None:
        """Each actor runs one unit at a time; the next goes to whichever finishes first."""
        from .runner import append_new  # noqa: PLC0415

        if not units:
            return
        while len(self._actors) < min(self._req.workers, len(units)):
            self._actors.append(self._class.remote(*self._args))
        console.print(f"Ray: {len(self._actors)} actor(s), {self._ray.cluster_resources().get('CPU', 0):g} CPU(s) in "
                      f"the cluster, {len(units)} unit(s)")
        queue = list(units)
        running: dict[Any, Any] = {}
        for actor in self._actors:
            if queue:
                running[actor.run_unit.remote(*queue.pop(0))] = actor
        while running:
            (ref,), _ = self._ray.wait(list(running), num_returns=1)
            actor = running.pop(ref)
            records, videos = self._get(ref)
            for relative, data in videos.items():
                _write_video(self._req.out, relative, data)
            append_new(log, records, advance)
            if queue:
                running[actor.run_unit.remote(*queue.pop(0))] = actor

    def close(self) -> None:
        for actor in self._actors:
            try:
                self._ray.get(actor.close.remote(), timeout=60)
            except Exception:  # noqa: BLE001 - the actor may already be dead; it is killed either way
                pass
            self._ray.kill(actor)
        self._actors = []
        if self._started:
            self._ray.shutdown()
