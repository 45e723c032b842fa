"""Per-episode MP4: what the policy's cameras saw (agentview | wrist, upright), one frame per
simulator step, at LIBERO's 20 Hz control rate. Written with the ffmpeg that imageio-ffmpeg
bundles (a default dependency)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from . import conventions as C


def episode_frame(raw: dict[str, np.ndarray]) -> np.ndarray:
    views = [np.asarray(raw[k])[::-1, ::-1] for k in ("agentview_image", "robot0_eye_in_hand_image")]
    return np.ascontiguousarray(np.concatenate(views, axis=1), dtype=np.uint8)


class EpisodeVideo:
    """Collects frames in memory (an episode is at most a few hundred small frames) and writes
    the file once the episode ends, so an interrupted episode leaves no half-written video."""

    def __init__(self, path: Path, fps: float = 1.0 / C.CONTROL_PERIOD_S):
        self.path, self.fps = Path(path), fps
        self.frames: list[np.ndarray] = []

    def add(self, raw: dict[str, np.ndarray]) -> None:
        self.frames.append(episode_frame(raw))

    def write(self) -> Path | None:
        if not self.frames:
            return None
        import imageio_ffmpeg  # noqa: PLC0415

        h, w = self.frames[0].shape[:2]
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".partial.mp4")
        writer = imageio_ffmpeg.write_frames(str(tmp), (w, h), fps=self.fps, macro_block_size=1,
                                             output_params=["-pix_fmt", "yuv420p"])
        writer.send(None)
        for frame in self.frames:
            writer.send(frame)
        writer.close()
        tmp.replace(self.path)
        return self.path
