"""The evaluation's output directory: run.json (settings and packs), episodes.jsonl (one line per
pack and episode, appended and flushed as each episode ends), so an interrupted evaluation
resumes where it stopped.

Resumption rules: an episode already in episodes.jsonl for that pack is not run again; a torn last
line (the process died mid-write) is cut off; any other unreadable line, or a run.json whose
settings differ from the new command's, is an error naming the file: mixing settings in one
result would make its statistics meaningless.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..errors import ConfigError

RUN_FILE, EPISODES_FILE = "run.json", "episodes.jsonl"


def record_key(record: dict[str, Any]) -> tuple[str, str, int, int]:
    return (str(record["pack"]), str(record["suite"]), int(record["task_id"]), int(record["episode"]))


class EpisodeLog:
    def __init__(self, out: Path, run: dict[str, Any]):
        self.dir = Path(out)
        self.dir.mkdir(parents=True, exist_ok=True)
        self._check_run(run)
        self.path = self.dir / EPISODES_FILE
        self.records: list[dict[str, Any]] = self._read()
        self.done = {record_key(r) for r in self.records}
        self._file = self.path.open("a", encoding="utf-8")

    def _check_run(self, run: dict[str, Any]) -> None:
        path = self.dir / RUN_FILE
        if path.exists():
            try:
                old = json.loads(path.read_text())
            except json.JSONDecodeError as exc:
                raise ConfigError(str(path), f"not JSON ({exc}); remove the directory or choose another --out") from exc
            for key in ("settings", "packs", "target"):
                if old.get(key) != run.get(key):
                    raise ConfigError(str(path), f"'{key}' differs from this command's ({old.get(key)} vs {run.get(key)}): "
                                                 "resume with the same settings, or choose another --out")
        path.write_text(json.dumps(run, indent=1))

    def _read(self) -> list[dict[str, Any]]:
        if not self.path.exists():
            return []
        data = self.path.read_bytes()
        lines = data.split(b"\n")
        records, good_end = [], 0
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                good_end += len(line) + 1
                continue
            try:
                record = json.loads(line)
                record_key(record)
            except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
                if number == len(lines):  # torn final line, no newline: the writer died mid-line
                    break
                raise ConfigError(f"{self.path}:{number}", f"not an episode record ({exc})") from exc
            records.append(record)
            good_end += len(line) + 1
        if good_end < len(data):
            with self.path.open("r+b") as f:
                f.truncate(good_end)
        return records

    def append(self, record: dict[str, Any]) -> None:
        self._file.write(json.dumps(record, sort_keys=True) + "\n")
        self._file.flush()
        self.records.append(record)
        self.done.add(record_key(record))

    def close(self) -> None:
        self._file.close()
