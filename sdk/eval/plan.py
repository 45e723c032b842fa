"""Which episodes an evaluation runs and with which seeds: the same list for every pack.

Episode e of task k uses the suite's initial state e (mod the states it ships), the simulator
seed `seed + e`, and policy noise drawn from a generator keyed by (seed, k, e). Every pack gets
exactly these, so a success difference between packs comes from the packs, not from the draw.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from ..errors import ConfigError
from . import conventions as C
from .sim_env import TaskInfo


@dataclass(frozen=True)
class EvalSettings:
    """Everything besides the packs that decides an episode's outcome (kept in run.json so a
    resumed run cannot silently mix settings)."""

    suite: str
    episodes: int = C.EPISODES_PER_TASK
    seed: int = 7  # openpi's default
    replan_steps: int = C.REPLAN_STEPS
    num_steps_wait: int = C.NUM_STEPS_WAIT
    max_steps: int | None = None  # None: the suite's (conventions.MAX_STEPS)
    resolution: int = C.ENV_RESOLUTION

    def __post_init__(self) -> None:
        if self.suite not in C.SUITES:
            raise ConfigError("--suite", f"expected one of {list(C.SUITES)}, got {self.suite!r}")
        for name in ("episodes", "replan_steps", "resolution"):
            if getattr(self, name) < 1:
                raise ConfigError(f"--{name.replace('_', '-')}", f"expected >= 1, got {getattr(self, name)}")
        if self.num_steps_wait < 0 or (self.max_steps is not None and self.max_steps < 1):
            raise ConfigError("--max-steps/--num-steps-wait", "expected max steps >= 1 and wait steps >= 0")

    @property
    def step_budget(self) -> int:
        return self.max_steps if self.max_steps is not None else C.MAX_STEPS[self.suite]

    def to_dict(self) -> dict:
        return {**asdict(self), "step_budget": self.step_budget}


@dataclass(frozen=True)
class EpisodeSpec:
    suite: str
    task_id: int
    task: str  # the instruction (prompt)
    episode: int
    init_index: int
    env_seed: int
    seed: int

    def noise_rng(self) -> np.random.Generator:
        return np.random.default_rng([self.seed, self.task_id, self.episode])

    @property
    def key(self) -> tuple[str, int, int]:
        return (self.suite, self.task_id, self.episode)


def select_tasks(tasks: list[TaskInfo], wanted: list[int] | None) -> list[TaskInfo]:
    if not wanted:
        return tasks
    ids = {t.id for t in tasks}
    bad = sorted(set(wanted) - ids)
    if bad:
        raise ConfigError("--tasks", f"task ids {bad} are not in this suite (0..{len(tasks) - 1})")
    return [t for t in tasks if t.id in set(wanted)]


def plan_episodes(settings: EvalSettings, tasks: list[TaskInfo]) -> list[EpisodeSpec]:
    return [EpisodeSpec(settings.suite, t.id, t.language, e, e % max(t.init_states, 1), settings.seed + e, settings.seed)
            for t in tasks for e in range(settings.episodes)]
