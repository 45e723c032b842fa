"""report.html (self-contained, plots embedded) and the simulator video, on real fast-sim runs:
one where the demo policy follows the scripted operator, one where every chunk is late so the
arm only holds - which both the HTML and the video must say."""

from __future__ import annotations

import base64
import io
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cli_runner import run_cli

SIM = """robot: ur3-sim
connection: {{realtime: false, render: auto, image_size: [64, 64], operator: {operator}}}
"""
DURATION_S = 3.0


def _run(tmp: Path, name: str, operator: str, latency_s: float) -> Path:
    (tmp / f"{name}-robot.yaml").write_text(SIM.format(operator=operator))
    (tmp / f"{name}.yaml").write_text(f"robot_config: {name}-robot.yaml\nloop: {{simulated_latency_s: {latency_s}}}\n")
    run_dir = tmp / name
    r = run_cli("run", "--config", str(tmp / f"{name}.yaml"), "--duration", str(DURATION_S), "--run-dir", str(run_dir))
    assert r.returncode == 0, r.stderr
    r = run_cli("report", str(run_dir))
    assert r.returncode == 0, r.stderr
    return run_dir


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("html-video")
    # moving: the operator repeats the demonstration; holding: chunks arrive after their last row
    return {"moving": _run(tmp, "moving", "demo", 0.3), "holding": _run(tmp, "holding", "null", 3.0)}


def _video(run_dir: Path) -> tuple[tuple[int, int], list[np.ndarray]]:
    folder = run_dir / "report" / run_dir.name
    if not (folder / "video.mp4").exists():
        notes = (run_dir / "report" / "report.md").read_text()
        pytest.skip(f"no video rendered here: {notes[notes.find('no video'):][:200]}")
    import imageio_ffmpeg

    reader = imageio_ffmpeg.read_frames(str(folder / "video.mp4"))
    meta = next(reader)
    w, h = meta["size"]
    return (w, h), [np.frombuffer(f, np.uint8).reshape(h, w, 3) for f in reader]


def test_html_is_self_contained_with_decodable_embedded_plots(runs):
    html = (runs["moving"] / "report" / "report.html").read_text()
    pngs = re.findall(r"data:image/png;base64,([A-Za-z0-9+/=]+)", html)
    assert len(pngs) == 3  # joints, timeline, chunk timing
    for data in pngs:
        image = Image.open(io.BytesIO(base64.b64decode(data)))
        assert image.format == "PNG" and min(image.size) > 100
    assert "src='http" not in html and "src=\"http" not in html  # nothing fetched
    assert "data:video/mp4;base64," in html or "no video" in html


def test_video_has_one_frame_per_tenth_second_at_the_documented_size(runs):
    from vla_edge.report.video import FPS, VIEW_HEIGHT, STRIP_HEIGHT, CAPTION_HEIGHT, WIDTH

    size, frames = _video(runs["moving"])
    assert size == (WIDTH, VIEW_HEIGHT + STRIP_HEIGHT + CAPTION_HEIGHT)
    ticks = sum(1 for _ in open(runs["moving"] / "ticks.jsonl"))
    assert len(frames) == int(np.ceil(ticks / 125 * FPS - 1e-9))  # real time: the UR3 ticks at 125 Hz
    assert len(frames) == DURATION_S * FPS
    views = np.stack([f[:VIEW_HEIGHT].astype(float) for f in frames])
    assert np.abs(views[-1] - views[0]).mean() > 1.0  # the arm (and its ghost) moved


def _held_band(frame: np.ndarray) -> np.ndarray:
    """Mean colour of the timeline's 'held (no target)' band (second of five) across the width."""
    from vla_edge.report.video import STRIP_HEIGHT, VIEW_HEIGHT

    band = STRIP_HEIGHT // 5
    return frame[VIEW_HEIGHT + band + 1:VIEW_HEIGHT + 2 * band - 1].reshape(-1, 3).mean(0)


def test_a_run_where_the_arm_only_holds_is_reported_as_such_in_html_and_video(runs):
    import json

    report = json.loads((runs["holding"] / "report" / "report.json").read_text())["runs"][0]
    assert report["arm_only_held"] is True and "only held" in report["outcome"]
    assert "only held" in (runs["holding"] / "report" / "report.html").read_text()
    moving = json.loads((runs["moving"] / "report" / "report.json").read_text())["runs"][0]
    assert moving["arm_only_held"] is False and "only held" not in moving["outcome"]
    _, held_frames = _video(runs["holding"])
    _, moving_frames = _video(runs["moving"])
    grey = _held_band(held_frames[-1])
    assert np.all(np.abs(grey - 127) < 40)  # the whole strip: held, no target
    assert _held_band(moving_frames[-1]).mean() > 200  # mostly white: targets on almost every tick
