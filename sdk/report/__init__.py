"""Shadow-trial reports: what one or more `vla-edge run` directories say about a policy, with
readiness checks, written as report.md + report.json + a self-contained report.html (+ plots and,
for simulator runs, a video) in one atomic step."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..errors import ConfigError, VlaEdgeError
from ..staging import atomic_dir
from .analysis import analyse
from .checks import Thresholds, readiness_checks, verdict
from .outcome import arm_only_held, what_the_arm_did
from .rundata import RunData, load_run
from .html import render_html
from .render import render_markdown

__all__ = ["Thresholds", "build_report", "write_report"]


def _unique_names(paths: list[Path]) -> list[str]:
    names = [p.resolve().name for p in paths]
    if len(set(names)) != len(names):  # runs/a/run and runs/b/run: keep them apart
        names = [f"{i:02d}-{n}" for i, n in enumerate(names)]
    return names


def build_report(run_dirs: list[Path], thresholds: Thresholds) -> tuple[dict[str, Any], list[RunData]]:
    from .. import __version__

    runs = [load_run(Path(p)) for p in run_dirs]
    entries = []
    for name, run in zip(_unique_names([r.path for r in runs]), runs):
        entry = {"name": name, **analyse(run)}
        entry["outcome"] = what_the_arm_did(run, entry)
        entry["arm_only_held"] = arm_only_held(run)
        checks = readiness_checks(entry, thresholds)
        entry["checks"] = [c.to_dict() for c in checks]
        entry["verdict"] = verdict(checks)
        entries.append(entry)
    failed = [e["name"] for e in entries if e["verdict"].startswith("NOT READY")]
    trial = f"NOT READY: {len(failed)} of {len(entries)} run(s) failed a check" if failed else \
        f"all {len(entries)} run(s) passed every evaluated check"
    report = {"version": __version__, "thresholds": thresholds.__dict__, "verdict": trial, "runs": entries}
    return report, runs


def _draw(report: dict[str, Any], runs: list[RunData], staging: Path, video: bool) -> None:
    from .plots import plot_joints, plot_timeline, plot_timing
    from .video import can_render_video, write_video

    for entry, run in zip(report["runs"], runs):
        folder = staging / entry["name"]
        folder.mkdir()
        plot_joints(run, folder / "joints.png")
        plot_timeline(run, folder / "timeline.png")
        entry["plots"] = [f"{entry['name']}/joints.png", f"{entry['name']}/timeline.png"]
        if plot_timing(run, folder / "timing.png", entry["timing"]["chunk_duration_ms"]):
            entry["plots"].append(f"{entry['name']}/timing.png")
        entry["videos"] = []
        if video and can_render_video(run):
            try:
                written = write_video(run, folder / "video", entry["arm_only_held"])
                entry["videos"].append(f"{entry['name']}/{written.name}")
            except VlaEdgeError as exc:  # no OpenGL here: the rest of the report still stands
                entry["notes"].append(str(exc))


def write_report(run_dirs: list[Path], out: Path, thresholds: Thresholds, plots: bool = True,
                 force: bool = False, video: bool = True) -> dict[str, Any]:
    """Everything is written into a staging folder beside `out` and moved into place at the end:
    a failure (bad log, missing matplotlib) leaves no half report and an existing one untouched."""
    out = Path(out)
    if out.exists() and not force and (not out.is_dir() or any(out.iterdir())):
        raise ConfigError("--out", f"{out} exists and is not empty; pass --force to replace it")
    report, runs = build_report(run_dirs, thresholds)
    with atomic_dir(out, "staging") as staging:
        if plots:
            _draw(report, runs, staging, video)
        (staging / "report.json").write_text(json.dumps(report, indent=1) + "\n")
        (staging / "report.md").write_text(render_markdown(report))
        (staging / "report.html").write_text(render_html(report, staging))
    return report
