"""Run an evaluation: plan the episodes, skip those already recorded, spread the rest over
worker processes on this machine, append each record as it ends, summarise.

A unit of work is one task instance (task, episode) for every pack that still lacks it: the
first pack (the parent) drives its episode with the others probed on its observations, then
each other pack drives its own episode on the same instance and seeds. Each worker process
(or Ray actor, `ray_runner.py`) holds its own policies and its own simulator process; nothing is
shared between workers. Records are appended here, in this process, as units end: local, parallel
and Ray runs resume the same way and give the same records for the same seeds.
"""

from __future__ import annotations

import json
import multiprocessing
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from ..errors import ConfigError, VlaEdgeError
from .episode import run_episode
from .plan import EpisodeSpec, EvalSettings, plan_episodes, select_tasks
from .policies import ChunkPolicy, PolicyOpener, labels_for
from .ray_runner import RayPool, RaySettings
from .records import EpisodeLog, record_key
from .sim_env import LiberoProcess, SimEnvironment, TaskInfo
from .summary import print_summary, summarise
from .video import EpisodeVideo

EnvFactory = Callable[[], SimEnvironment]
PolicyFactory = Callable[[str, str, str], ChunkPolicy]  # (spec, target, label)


@dataclass
class EvalRequest:
    packs: list[str]
    settings: EvalSettings
    out: Path
    target: str = "auto"
    tasks: list[int] | None = None
    workers: int = 1
    video: bool = False
    confidence: float = 0.95
    api_key: str | None = field(default=None, repr=False)  # for ws:// / wss:// policy servers
    sim_python: str | None = None
    labels: list[str] = field(default_factory=list)
    ray: RaySettings | None = None  # None: this machine only

    def __post_init__(self) -> None:
        if not self.packs:
            raise ConfigError("--pack", "give at least one pack (directory, 'demo' or ws://host:port)")
        if self.workers < 1:
            raise ConfigError("--workers", f"expected >= 1, got {self.workers}")
        self.labels = self.labels or labels_for(self.packs)
        if self.ray is not None and self.workers < 1:
            raise ConfigError("--workers", f"the number of Ray actors must be >= 1, got {self.workers}")


@dataclass
class EvalOutcome:
    out: Path
    ran: int  # episodes run now
    skipped: int  # already in episodes.jsonl
    summary: dict[str, Any]


class UnitWorker:
    """One process's (or Ray actor's) policies and simulator, built once."""

    def __init__(self, req: EvalRequest, env_factory: EnvFactory, policy_factory: PolicyFactory):
        self.req = req
        self.env = env_factory()
        self.policies: dict[str, ChunkPolicy] = {}
        try:
            for spec, label in zip(req.packs, req.labels):
                self.policies[label] = policy_factory(spec, req.target, label)
        except BaseException:
            self.close()
            raise

    def tasks(self, suite: str) -> list[TaskInfo]:
        return self.env.tasks(suite)

    def describe(self) -> dict[str, dict[str, Any]]:
        return {label: policy.describe() for label, policy in self.policies.items()}

    def run_unit(self, spec: EpisodeSpec, labels: list[str]) -> list[dict[str, Any]]:
        parent = self.req.labels[0]
        records = []
        for label in labels:
            probes = tuple(p for name, p in self.policies.items() if name != parent) if label == parent else ()
            video = EpisodeVideo(self.req.out / "videos" / label / f"task{spec.task_id:02d}_ep{spec.episode:03d}.mp4") \
                if self.req.video else None
            record = run_episode(self.env, self.policies[label], spec, self.req.settings, probes,
                                 on_frame=video.add if video else None)
            written = video.write() if video else None
            record.update(pack=label, policy=self.policies[label].describe(),
                          video=str(written.relative_to(self.req.out)) if written else None)
            records.append(record)
        return records

    def close(self) -> None:
        for policy in self.policies.values():
            policy.close()
        self.env.close()


_PROCESS_WORKER: UnitWorker | None = None


def _init_process(req: EvalRequest, env_factory: EnvFactory, policy_factory: PolicyFactory) -> None:
    global _PROCESS_WORKER
    import atexit  # noqa: PLC0415

    try:
        _PROCESS_WORKER = UnitWorker(req, env_factory, policy_factory)
    except VlaEdgeError as exc:  # re-raised as the base type: subclasses with extra args do not unpickle
        raise VlaEdgeError(str(exc)) from None
    atexit.register(_PROCESS_WORKER.close)


def _run_in_process(spec: EpisodeSpec, labels: list[str]) -> list[dict[str, Any]]:
    assert _PROCESS_WORKER is not None
    try:
        return _PROCESS_WORKER.run_unit(spec, labels)
    except VlaEdgeError as exc:
        raise VlaEdgeError(str(exc)) from None


def default_env_factory(sim_python: str | None = None) -> EnvFactory:
    return _LiberoFactory(sim_python)


@dataclass(frozen=True)
class _LiberoFactory:
    sim_python: str | None

    def __call__(self) -> SimEnvironment:
        return LiberoProcess(self.sim_python)


def run_eval(req: EvalRequest, env_factory: EnvFactory | None = None, policy_factory: PolicyFactory | None = None,
             console: Console | None = None) -> EvalOutcome:
    console = console or Console(stderr=True)
    env_factory = env_factory or default_env_factory(req.sim_python)
    policy_factory = policy_factory or PolicyOpener(req.api_key)
    # Packs, spaces and simulator are checked before any episode: here, or on the first Ray actor
    # (a cluster's driver may lack the workers' GPUs, so it loads no pack itself)
    first: UnitWorker | RayPool | None
    first = RayPool(req, env_factory, policy_factory) if req.ray is not None else UnitWorker(req, env_factory, policy_factory)
    try:
        tasks = select_tasks(first.tasks(req.settings.suite), req.tasks)
        run = {"settings": req.settings.to_dict(), "packs": [{"label": lbl, "spec": spec} for lbl, spec in zip(req.labels, req.packs)],
               "target": req.target, "policies": first.describe(),
               "conventions": "openpi examples/libero (see vla_edge.eval.conventions)"}
        log = EpisodeLog(req.out, run)
        try:
            planned = plan_episodes(req.settings, tasks)
            units = []
            for spec in planned:
                missing = [lbl for lbl in req.labels if (lbl, *spec.key) not in log.done]
                if missing:
                    units.append((spec, missing))
            total = sum(len(m) for _, m in units)
            skipped = len(req.labels) * len(planned) - total
            if skipped:
                console.print(f"resuming: {skipped} episode(s) already in {log.path}, {total} to run")
            with _progress(console) as progress:
                bar = progress.add_task(f"{req.settings.suite}", total=total)
                advance = lambda: progress.advance(bar)  # noqa: E731
                if isinstance(first, RayPool):
                    first.run(units, log, advance, console)
                elif req.workers == 1 or len(units) <= 1:
                    for spec, missing in units:
                        append_new(log, first.run_unit(spec, missing), advance)
                else:
                    first.close()
                    first = None
                    _run_parallel(req, env_factory, policy_factory, units, log, advance)
            summary = summarise(log.records, req.labels, req.confidence)
            (Path(req.out) / "summary.json").write_text(json.dumps(summary, indent=1))
        finally:
            log.close()
    finally:
        if first is not None:
            first.close()
    print_summary(summary, console)
    return EvalOutcome(Path(req.out), total, skipped, summary)


def _run_parallel(req: EvalRequest, env_factory: EnvFactory, policy_factory: PolicyFactory,
                  units: list[tuple[EpisodeSpec, list[str]]], log: EpisodeLog, advance: Callable[[], None]) -> None:
    context = multiprocessing.get_context("spawn")  # no fork of a process holding GL contexts or threads
    with ProcessPoolExecutor(max_workers=min(req.workers, len(units)), mp_context=context,
                             initializer=_init_process, initargs=(req, env_factory, policy_factory)) as pool:
        pending = {pool.submit(_run_in_process, spec, missing) for spec, missing in units}
        try:
            while pending:
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    append_new(log, future.result(), advance)
        except BaseException:
            for future in pending:
                future.cancel()
            raise


def append_new(log: EpisodeLog, records: list[dict[str, Any]], advance: Callable[[], None]) -> None:
    """Append a finished unit's records (any already recorded are skipped: a unit may be retried)."""
    for record in records:
        if record_key(record) not in log.done:
            log.append(record)
            advance()


def _progress(console: Console) -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    TimeRemainingColumn(), console=console, transient=False)
