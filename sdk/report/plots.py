"""PNG plots for a run: joints over time (policy, filtered, measured, interventions shaded), a
timeline of what the safety side did, and the chunk timing distribution (matplotlib, installed
with vla-edge)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import VlaEdgeError
from .rundata import RunData


def _pyplot():
    try:
        import matplotlib
    except ImportError as exc:
        raise VlaEdgeError("plots need matplotlib (a vla-edge dependency; reinstall vla-edge, or pass --no-plots)") from exc
    matplotlib.use("Agg")  # files only; never open a window on a robot computer
    import matplotlib.pyplot as plt

    return plt


def _spans(mask: np.ndarray, t: np.ndarray, period: float) -> list[tuple[float, float]]:
    """[start, end) times of each stretch of consecutive True values."""
    edges = np.diff(np.concatenate([[0], mask.astype(np.int8), [0]]))
    starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    return [(float(t[s]), float(t[e - 1] + period)) for s, e in zip(starts, ends)]


def plot_joints(run: RunData, path: Path) -> None:
    plt = _pyplot()
    ticks, joints = run.ticks, run.joints
    t = ticks.t - ticks.t[0]
    fig, axes = plt.subplots(len(joints), 1, figsize=(10, 1.8 * len(joints) + 0.6), sharex=True, squeeze=False)
    for j, (ax, name) in enumerate(zip(axes[:, 0], joints)):
        for start, end in _spans(ticks.intervened, t, run.control_period_s):
            ax.axvspan(start, end, color="tab:red", alpha=0.15, lw=0)
        ax.plot(t, ticks.actual[:, j], color="black", lw=1.2, label="measured")
        ax.plot(t, ticks.commanded[:, j], color="tab:blue", lw=0.9, label="policy target")
        ax.plot(t, ticks.filtered[:, j], color="tab:orange", lw=0.9, ls="--",
                label="filtered (would send)" if run.shadow else "filtered (sent)")
        ax.set_ylabel(name, fontsize=8)
    axes[0, 0].legend(loc="upper right", fontsize=7, ncol=3)
    axes[0, 0].set_title(f"{run.path.name}: joints (red: safety filter intervened)", fontsize=9)
    axes[-1, 0].set_xlabel("time since start (s)")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def timeline_rows(run: RunData) -> list[tuple[str, np.ndarray, str]]:
    """(label, bool per tick, colour) for the timeline strip (report plot and video): when the
    filter changed the command, held the arm, was stopped, and when health throttled the run."""
    ticks = run.ticks
    stopped = np.array([s in ("stopped", "estopped") for s in ticks.filter_state])
    return [
        ("intervention", ticks.intervened, "#d62728"),
        ("held (no target)", ~ticks.has_target, "#7f7f7f"),
        ("held by filter", ticks.held & ticks.has_target & ~stopped, "#ff7f0e"),
        ("safety stop", stopped & ticks.has_target, "#000000"),
        ("throttled", (ticks.velocity_scale < 1.0) | np.array([h not in ("nominal", "warm") for h in ticks.health]),
         "#9467bd"),
    ]


def plot_timeline(run: RunData, path: Path) -> None:
    plt = _pyplot()
    t = run.ticks.t - run.ticks.t[0]
    rows = timeline_rows(run)
    fig, ax = plt.subplots(figsize=(10, 0.4 * len(rows) + 0.9))
    for i, (label, mask, colour) in enumerate(rows):
        for start, end in _spans(mask, t, run.control_period_s):
            ax.axvspan(start, end, ymin=(len(rows) - 1 - i) / len(rows), ymax=(len(rows) - i) / len(rows),
                       color=colour, lw=0)
    ax.set_yticks([(len(rows) - 0.5 - i) / len(rows) for i in range(len(rows))],
                  [f"{label} ({int(mask.sum())} ticks)" for label, mask, _ in rows], fontsize=8)
    ax.set_ylim(0, 1)
    ax.set_xlim(0, float(t[-1] + run.control_period_s) if len(t) else 1.0)
    ax.set_xlabel("time since start (s)")
    ax.set_title(f"{run.path.name}: timeline", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def plot_timing(run: RunData, path: Path, chunk_duration_ms: float | None) -> bool:
    """False (and no file) when the run directory has no per-chunk log to plot."""
    if not run.chunks:
        return False
    plt = _pyplot()
    latency = [c["latency_ms"] for c in run.chunks if c.get("latency_ms") is not None]
    age = [c["age_ms"] for c in run.chunks if c.get("age_ms") is not None]
    fig, ax = plt.subplots(figsize=(8, 3.2))
    ax.hist([latency, age], bins=30, label=["inference latency", "chunk age at arrival"], color=["tab:blue", "tab:gray"])
    if chunk_duration_ms:
        ax.axvline(chunk_duration_ms, color="tab:red", ls="--", label="time one chunk covers")
    ax.set_xlabel("ms")
    ax.set_ylabel("chunks")
    ax.legend(fontsize=8)
    ax.set_title(f"{run.path.name}: chunk timing", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return True
