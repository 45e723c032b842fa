"""Reading a run directory back (config.yaml, ticks.jsonl, events.jsonl, chunks.jsonl,
summary.json) into arrays a report can compute on.

A run that crashed may end in a half-written line: the last line of a JSONL file is allowed to be
cut off (it is dropped and said so); a bad line anywhere else means the file is not what `vla-edge
run` wrote, and is an error naming the file and line. summary.json and chunks.jsonl may be absent
(a crashed run, or a run directory from before chunks.jsonl existed); ticks.jsonl and config.yaml
may not.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from ..errors import ConfigError

NOT_AN_INTERVENTION = "missing_target"  # coverage counts these ticks; safety counts the rest


@dataclass
class Ticks:
    """One row per control tick. Joint arrays are [ticks, joints]; NaN rows where the tick had no
    value (no policy target, no command yet)."""

    t: np.ndarray
    commanded: np.ndarray
    filtered: np.ndarray
    actual: np.ndarray
    sent: np.ndarray  # bool
    held: np.ndarray  # bool
    filter_state: list[str]
    codes: list[tuple[str, ...]]
    health: list[str]
    velocity_scale: np.ndarray
    tick_ms: np.ndarray
    late_ms: np.ndarray

    def __len__(self) -> int:
        return len(self.t)

    @property
    def has_target(self) -> np.ndarray:
        """bool per tick: the policy had a target (every joint finite)."""
        return np.all(np.isfinite(self.commanded), axis=1)

    @property
    def intervened(self) -> np.ndarray:
        """bool per tick: the filter changed or refused the command (a missing target is coverage)."""
        return np.array([any(c != NOT_AN_INTERVENTION for c in codes) for codes in self.codes], dtype=bool)


@dataclass
class RunData:
    path: Path
    config: dict[str, Any]
    ticks: Ticks
    events: list[dict[str, Any]] | None  # None: the run directory has no events.jsonl
    chunks: list[dict[str, Any]] | None  # None: the run directory has no chunks.jsonl
    summary: dict[str, Any] | None  # None: the run ended before writing one
    notes: list[str] = field(default_factory=list)  # what was missing or cut off, for the report

    @property
    def events_known(self) -> bool:
        """False when neither events.jsonl nor summary.json exists: event counts are unknown."""
        return self.events is not None or self.summary is not None

    @property
    def joints(self) -> list[str]:
        return list(self.config["robot"]["joints"])

    @property
    def control_period_s(self) -> float:
        return 1.0 / float(self.config["robot"]["control_rate_hz"])

    @property
    def shadow(self) -> bool:
        return self.config.get("mode") != "live"


def read_jsonl(path: Path, notes: list[str]) -> list[dict[str, Any]]:
    lines = path.read_text().splitlines()
    records = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            if number == len(lines):
                notes.append(f"{path.name}: last line {number} is cut off (run ended mid-write); ignored")
                break
            raise ConfigError(f"{path}:{number}", f"not a JSON line ({exc.msg}); expected what `vla-edge run` writes") from exc
        if not isinstance(record, dict):
            raise ConfigError(f"{path}:{number}", f"expected a JSON object, got {type(record).__name__}")
        records.append(record)
    return records


def _joint_rows(records: list[dict[str, Any]], key: str, joints: int, path: Path) -> np.ndarray:
    out = np.full((len(records), joints), np.nan)
    for row, record in enumerate(records):
        value = record.get(key)
        if value is None:
            continue
        if not isinstance(value, list) or len(value) != joints:
            raise ConfigError(f"{path}: tick {record.get('i', row)} field '{key}'",
                              f"expected {joints} numbers (one per joint in config.yaml), got {value!r:.80}")
        out[row] = [np.nan if v is None else float(v) for v in value]
    return out


def _number_column(records: list[dict[str, Any]], key: str, default: float) -> np.ndarray:
    return np.array([default if r.get(key) is None else float(r[key]) for r in records])


def parse_ticks(records: list[dict[str, Any]], joints: int, path: Path) -> Ticks:
    for row, record in enumerate(records):
        if not isinstance(record.get("t"), (int, float)):
            raise ConfigError(f"{path}: line {row + 1} field 't'", f"expected the tick time in seconds, got {record.get('t')!r}")
    return Ticks(
        t=_number_column(records, "t", np.nan),
        commanded=_joint_rows(records, "commanded", joints, path),
        filtered=_joint_rows(records, "filtered", joints, path),
        actual=_joint_rows(records, "actual", joints, path),
        sent=np.array([bool(r.get("sent")) for r in records], dtype=bool),
        held=np.array([bool(r.get("held")) for r in records], dtype=bool),
        filter_state=[str(r.get("filter")) for r in records],
        codes=[tuple(i.get("code", "?") for i in r.get("interventions") or []) for r in records],
        health=[str(r.get("health")) for r in records],
        velocity_scale=_number_column(records, "velocity_scale", 1.0),
        tick_ms=_number_column(records, "tick_ms", np.nan),
        late_ms=_number_column(records, "late_ms", 0.0),
    )


def _config(path: Path) -> dict[str, Any]:
    file = path / "config.yaml"
    if not file.is_file():
        raise ConfigError(str(file), "missing: not a run directory written by `vla-edge run`")
    try:
        config = yaml.safe_load(file.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(str(file), f"not valid YAML: {exc}") from exc
    robot = config.get("robot") if isinstance(config, dict) else None
    if not isinstance(robot, dict) or not robot.get("joints") or not robot.get("control_rate_hz"):
        raise ConfigError(f"{file}: robot", "expected the run's robot config with 'joints' and 'control_rate_hz'")
    return config


def load_run(path: Path) -> RunData:
    path = Path(path)
    if not path.is_dir():
        raise ConfigError(str(path), "not a directory; expected a run directory written by `vla-edge run`")
    config = _config(path)
    notes: list[str] = []
    ticks_file = path / "ticks.jsonl"
    if not ticks_file.is_file():
        raise ConfigError(str(ticks_file), "missing: the run logged no control ticks")
    records = read_jsonl(ticks_file, notes)
    if not records:
        raise ConfigError(str(ticks_file), "empty: the run ended before its first control tick")
    ticks = parse_ticks(records, len(config["robot"]["joints"]), ticks_file)
    events = read_jsonl(path / "events.jsonl", notes) if (path / "events.jsonl").is_file() else None
    chunks = read_jsonl(path / "chunks.jsonl", notes) if (path / "chunks.jsonl").is_file() else None
    if chunks is None:
        notes.append("chunks.jsonl absent: per-chunk latency comes from summary.json only")
    summary = None
    summary_file = path / "summary.json"
    if summary_file.is_file():
        try:
            summary = json.loads(summary_file.read_text())
        except json.JSONDecodeError as exc:
            raise ConfigError(str(summary_file), f"not valid JSON ({exc.msg})") from exc
    else:
        notes.append("summary.json absent (the run did not finish): counts come from the logs alone")
    run = RunData(path, config, ticks, events, chunks, summary, notes)
    if not run.events_known:
        notes.append("events.jsonl and summary.json absent: safety stops and watchdog trips are unknown")
    return run
