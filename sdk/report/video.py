"""A simulator run's video, rendered off-screen with MuJoCo from the run's logs.

Each frame shows the base camera with the measured arm (solid) and a translucent blue "ghost"
at the filtered command: what the safety filter sent (live) or would have sent (shadow). Below
it, the run's timeline strip (interventions, holds, safety stops, throttling; a cursor at the
frame's time) and the one-line outcome. Rendering needs an OpenGL context (MUJOCO_GL=egl, or
osmesa; see docs/simulators.md). MP4 through imageio-ffmpeg (a bundled ffmpeg); GIF (Pillow)
if it cannot be used.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from ..errors import VlaEdgeError
from .rundata import RunData

log = logging.getLogger(__name__)

FPS = 10
WIDTH, VIEW_HEIGHT, STRIP_HEIGHT, CAPTION_HEIGHT = 320, 240, 32, 16  # frame 320 x 288 (x264: multiples of 16)
GHOST_RGBA = (0.2, 0.5, 1.0, 0.35)
_BACKGROUND = (235, 235, 235)


def can_render_video(run: RunData) -> bool:
    """Only runs of a registered simulator: its scene can be rebuilt from the logged config."""
    from ..robots.registry import is_simulator

    return is_simulator(str(run.config.get("robot", {}).get("name")))


def _world(run: RunData):
    from ..robots.sim.render import select_gl_backend

    select_gl_backend()
    from ..robots.config import RobotConfig
    from ..robots.sim.settings import parse_sim_settings
    from ..robots.sim.world import SimWorld

    cfg = RobotConfig.model_validate(run.config["robot"])
    return SimWorld(cfg, parse_sim_settings(cfg.connection, cfg.dof))


def _strip(run: RunData, width: int) -> np.ndarray:
    """[STRIP_HEIGHT, width, 3] uint8: one band per timeline row, ticks resampled to pixels."""
    from .plots import timeline_rows

    rows = timeline_rows(run)
    strip = np.full((STRIP_HEIGHT, width, 3), 255, np.uint8)
    band = STRIP_HEIGHT // len(rows)
    n = len(run.ticks)
    cols = np.minimum((np.arange(width) * n) // width, n - 1)
    for i, (_, mask, colour) in enumerate(rows):
        rgb = np.array([int(colour[k:k + 2], 16) for k in (1, 3, 5)], np.uint8)
        strip[i * band:(i + 1) * band][:, mask[cols]] = rgb
    return strip


def frame_ticks(t: np.ndarray, period_s: float) -> np.ndarray:
    """The tick shown in each frame: the last tick at or before k / FPS seconds, for every frame
    of the run's duration (ticks * period), so the video plays in real time."""
    times = np.arange(int(np.ceil((len(t) * period_s) * FPS - 1e-9))) / FPS
    return np.clip(np.searchsorted(t, times + 1e-9, side="right") - 1, 0, len(t) - 1)


def _frames(run: RunData, only_held: bool):
    from PIL import Image, ImageDraw

    world = _world(run)  # chooses MUJOCO_GL before MuJoCo is first imported
    import mujoco

    model = world.model
    actual, ghost = mujoco.MjData(model), mujoco.MjData(model)
    for data in (actual, ghost):
        data.qpos[:] = world.data.qpos
    try:
        renderer = mujoco.Renderer(model, VIEW_HEIGHT, WIDTH)
    except Exception as exc:  # GL failures surface as several exception types
        raise VlaEdgeError(f"no video: MuJoCo off-screen rendering failed ({exc}); install EGL or OSMesa "
                           "(scripts/install_render_deps.sh) and set MUJOCO_GL=egl or osmesa") from None
    strip = _strip(run, WIDTH)
    ticks = run.ticks
    t = ticks.t - ticks.t[0]
    shown = frame_ticks(t, run.control_period_s)
    camera = "base" if "base" in [model.camera(i).name for i in range(model.ncam)] else -1
    option, perturb = mujoco.MjvOption(), mujoco.MjvPerturb()
    try:
        for i in shown:
            world.pose(actual, np.nan_to_num(ticks.actual[i]))
            renderer.update_scene(actual, camera=camera)
            if np.all(np.isfinite(ticks.filtered[i])):
                world.pose(ghost, ticks.filtered[i])
                first = renderer.scene.ngeom
                mujoco.mjv_addGeoms(model, ghost, option, perturb, mujoco.mjtCatBit.mjCAT_DYNAMIC, renderer.scene)
                for g in range(first, renderer.scene.ngeom):  # the arm only: hide the objects' copies
                    geom = renderer.scene.geoms[g]
                    body = model.body(int(model.geom_bodyid[geom.objid])).name
                    geom.rgba[:] = (0.0, 0.0, 0.0, 0.0) if body.startswith("object") else GHOST_RGBA
            view = renderer.render()
            bar = strip.copy()
            bar[:, min(WIDTH - 1, (i * WIDTH) // len(ticks))] = (0, 0, 0)  # cursor
            frame = Image.new("RGB", (WIDTH, VIEW_HEIGHT + STRIP_HEIGHT + CAPTION_HEIGHT), _BACKGROUND)
            frame.paste(Image.fromarray(view), (0, 0))
            frame.paste(Image.fromarray(bar), (0, VIEW_HEIGHT))
            text = f"t={ticks.t[i] - ticks.t[0]:4.1f}s {'SHADOW' if run.shadow else 'LIVE'} " + (
                "THE ARM ONLY HELD" if only_held else f"solid: measured, blue: {'would send' if run.shadow else 'sent'}")
            ImageDraw.Draw(frame).text((2, VIEW_HEIGHT + STRIP_HEIGHT + 2), text, fill=(0, 0, 0))
            yield np.asarray(frame)
    finally:
        renderer.close()


def write_video(run: RunData, stem: Path, only_held: bool) -> Path:
    """stem.mp4 (or stem.gif when imageio-ffmpeg cannot encode here); returns the file written.
    `only_held`: the policy never moved the arm; every frame's caption says so."""
    frames = list(_frames(run, only_held))
    if not frames:
        raise VlaEdgeError(f"{run.path}: no ticks to render")
    try:
        import imageio_ffmpeg

        path = stem.with_suffix(".mp4")
        writer = imageio_ffmpeg.write_frames(str(path), (WIDTH, frames[0].shape[0]), fps=FPS, codec="libx264",
                                             pix_fmt_out="yuv420p", macro_block_size=16,
                                             ffmpeg_log_level="error", output_params=["-movflags", "+faststart"])
        writer.send(None)
        for frame in frames:
            writer.send(np.ascontiguousarray(frame))
        writer.close()
        return path
    except (ImportError, OSError, RuntimeError) as exc:
        log.warning("MP4 encoding unavailable (%s); writing a GIF instead", exc)
    from PIL import Image

    path = stem.with_suffix(".gif")
    images = [Image.fromarray(f) for f in frames]
    images[0].save(path, save_all=True, append_images=images[1:], duration=int(1000 / FPS), loop=0)
    return path
