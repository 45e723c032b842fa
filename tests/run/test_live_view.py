"""`vla-edge run --view`: the rerun live view. A shadow run writes a recording whose entities are
read back with rerun's own CLI; the viewer side can stall without ever blocking the producer."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import yaml

from cli_runner import run_cli
from vla_edge.errors import ConfigError

rr = pytest.importorskip("rerun")


def _entities(rrd: Path) -> dict[str, int]:
    """Entity path -> logged rows, from `rerun rrd print` (rerun's reader, not ours)."""
    cli = Path(sys.executable).with_name("rerun")
    env = {**os.environ, "RERUN_ANALYTICS": "off"}
    out = subprocess.run([str(cli), "rrd", "print", str(rrd)], capture_output=True, text=True, timeout=120, env=env,
                         check=True).stdout
    rows: dict[str, int] = {}
    for line in out.splitlines():
        if line.startswith("Chunk(") and " rows " in line and " - /" in line:
            n = int(line.split(" with ", 1)[1].split(" rows", 1)[0])
            path = line.split(" - /", 1)[1].split(" - ", 1)[0]
            rows["/" + path] = rows.get("/" + path, 0) + n
    return rows


def test_shadow_run_streams_cameras_joints_and_filter_to_a_recording(tmp_path):
    run_dir, rrd = tmp_path / "run", tmp_path / "view.rrd"
    r = run_cli("run", "--target", "reference", "--robot", "ur3-sim", "--duration", "2", "--run-dir", str(run_dir),
                "--seed", "1", "--view", str(rrd), timeout=240)
    assert r.returncode == 0, r.stderr
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["commands_sent"] == 0  # the view changes nothing about shadow mode
    assert summary["live_view"]["destination"] == str(rrd)
    rows = _entities(rrd)
    ticks = summary["ticks"]
    joints = yaml.safe_load((run_dir / "config.yaml").read_text())["robot"]["joints"]
    for joint in joints:
        # every tick that was not dropped has its measured position; a loaded host drops few
        assert ticks - summary["live_view"]["dropped"] <= rows[f"/joints/{joint}/actual"] <= ticks
        assert rows.get(f"/joints/{joint}/filtered", 0) > 0
    assert rows["/loop/tick_ms"] > 0 and rows.get("/filter/state", 0) >= 1
    assert rows.get("/cameras/base", 0) >= 1 and rows.get("/cameras/wrist", 0) >= 1


def test_a_stalled_viewer_never_blocks_the_producer(tmp_path, monkeypatch):
    from vla_edge.run import live_view

    view = live_view.LiveView(str(tmp_path / "v.rrd"), ["a", "b"], "stall")
    entered, release = threading.Event(), threading.Event()
    real_log = view._log

    def stalled(kind, payload):
        entered.set()
        release.wait(30)
        real_log(kind, payload)

    monkeypatch.setattr(view, "_log", stalled)
    rng = np.random.default_rng()
    record = lambda i: {"i": i, "t": i * 0.008, "commanded": rng.normal(size=2), "filtered": rng.normal(size=2),  # noqa: E731
                        "actual": rng.normal(size=2), "filter": "running", "interventions": [], "tick_ms": 0.1,
                        "late_ms": 0.0, "velocity_scale": 1.0}
    view.tick(record(0))
    assert entered.wait(10)  # the viewer thread holds item 0 and is stuck
    extra = 37
    for i in range(1, live_view._QUEUE + 1 + extra):  # put_nowait only: returns at once, full or not
        view.tick(record(i))
    assert view.dropped == extra
    release.set()
    view.close()
    assert view.logged == live_view._QUEUE + 1
    rows = _entities(tmp_path / "v.rrd")
    assert rows["/joints/a/actual"] == live_view._QUEUE + 1


def test_bad_destinations_are_named(tmp_path):
    from vla_edge.run.live_view import LiveView

    with pytest.raises(ConfigError, match="--view.*spawn"):
        LiveView("somewhere", ["a"], "x")
    with pytest.raises(ConfigError, match="--view.*does not exist"):
        LiveView(str(tmp_path / "missing" / "v.rrd"), ["a"], "x")


def test_missing_rerun_names_the_extra(monkeypatch):
    from vla_edge.run import live_view

    monkeypatch.setitem(sys.modules, "rerun", None)
    with pytest.raises(ConfigError, match=r"vla-edge\[view\]"):
        live_view.LiveView("spawn", ["a"], "x")
