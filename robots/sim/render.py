"""Camera images for the simulated robot: MuJoCo offscreen rendering, or a labelled fallback.

Why a fallback at all: `vla-edge run --robot arx5-sim` should work on a headless box without GPU
drivers when the user only wants to exercise the control loop. It is used only with
`render: auto`, warns once, and marks every image as synthetic in the robot status.
`render: required` raises instead; `render: off` returns no images (fast tests).

Rendering needs an OpenGL context. MuJoCo picks the platform from MUJOCO_GL when it is first
imported; `select_gl_backend()` sets MUJOCO_GL=egl (headless GPU/Mesa) unless the user chose one.
"""

from __future__ import annotations

import logging
import os
import sys

import numpy as np

from ...errors import VlaEdgeError

log = logging.getLogger(__name__)

RENDER_MODES = ("auto", "off", "required")


class RenderUnavailableError(VlaEdgeError):
    """`render: required` but no OpenGL context could be created on this machine."""


def select_gl_backend() -> str:
    """Choose MUJOCO_GL before MuJoCo is imported; returns the backend that will be used."""
    if "MUJOCO_GL" not in os.environ and "mujoco" not in sys.modules:
        os.environ["MUJOCO_GL"] = "egl"
    return os.environ.get("MUJOCO_GL", "glfw")


class CameraRenderer:
    """Renders named cameras at one size; creates its GL context lazily in the calling thread."""

    def __init__(self, model, cameras: tuple[str, ...], height: int, width: int, mode: str):
        self._model, self._cameras, self._h, self._w, self._mode = model, cameras, height, width, mode
        self._renderer = None
        self.synthetic = False
        self._warned = False

    def _open(self) -> None:
        import mujoco

        try:
            self._renderer = mujoco.Renderer(self._model, self._h, self._w)
        except Exception as exc:  # GL failures surface as several exception types across platforms
            backend = os.environ.get("MUJOCO_GL", "(unset: glfw)")
            if self._mode == "required":
                raise RenderUnavailableError(
                    f"simulator camera rendering needs OpenGL but MUJOCO_GL={backend} failed ({exc}); "
                    "install EGL (libegl1) or OSMesa (libosmesa6) and set MUJOCO_GL=egl or osmesa, "
                    "or set connection.render to 'auto' (synthetic images) or 'off'"
                ) from None
            self.synthetic = True
            if not self._warned:
                log.warning(
                    "MuJoCo rendering unavailable (MUJOCO_GL=%s: %s); camera images are SYNTHETIC "
                    "projections of body positions, not rendered views", backend, exc
                )
                self._warned = True

    def render(self, data) -> dict[str, np.ndarray]:
        if self._mode == "off" or not self._cameras:
            return {}
        if self._renderer is None and not self.synthetic:
            self._open()
        if self.synthetic:
            return {name: self._synthetic(data, name) for name in self._cameras}
        out = {}
        for name in self._cameras:
            self._renderer.update_scene(data, camera=name)
            out[name] = self._renderer.render().copy()
        return out

    def _synthetic(self, data, name: str) -> np.ndarray:
        """Project every body origin through the camera's pinhole model and draw a dot: enough to
        see the arm move, clearly not a rendering (grey background, no shading)."""
        import mujoco

        cam = mujoco.mj_name2id(self._model, mujoco.mjtObj.mjOBJ_CAMERA, name)
        img = np.full((self._h, self._w, 3), 96, dtype=np.uint8)
        pos, rot = data.cam_xpos[cam], data.cam_xmat[cam].reshape(3, 3)
        f = 0.5 * self._h / np.tan(np.deg2rad(self._model.cam_fovy[cam]) / 2)
        local = (data.xpos[1:] - pos) @ rot  # camera frame: x right, y up, looks along -z
        for x, y, z in local:
            if z >= -1e-3:
                continue
            u, v = int(self._w / 2 + f * x / -z), int(self._h / 2 - f * y / -z)
            if 1 <= u < self._w - 1 and 1 <= v < self._h - 1:
                img[v - 1 : v + 2, u - 1 : u + 2] = (255, 220, 0)
        return img

    def close(self) -> None:
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None
