"""Camera sources for the run loop: robot-provided (simulators), OpenCV devices, synthetic.

Every source returns (image, timestamp) and keeps frame accounting, because a policy that acts on
an old or repeated frame is a silent failure: `frames` read, `dropped` (failed reads plus frames
the device produced that we never saw, estimated from timestamp gaps at the nominal rate) and
`repeated` (same frame twice). Sources are opened and test-read before the arm may move, so a
missing camera is an error up front, not a hold in the middle of a motion.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Callable, Protocol

import numpy as np

from ..errors import ConfigError, VlaEdgeError


class CameraError(VlaEdgeError):
    """A camera cannot be opened or stopped delivering frames."""


@dataclass
class FrameStats:
    frames: int = 0
    dropped: int = 0
    repeated: int = 0
    max_gap_s: float = 0.0
    _last_t: float | None = field(default=None, repr=False)

    def record(self, t: float, nominal_period_s: float | None) -> None:
        if self._last_t is not None:
            gap = t - self._last_t
            if gap <= 0:
                self.repeated += 1
            else:
                self.max_gap_s = max(self.max_gap_s, gap)
                if nominal_period_s:
                    self.dropped += max(0, int(round(gap / nominal_period_s)) - 1)
        self.frames += 1
        self._last_t = t

    def to_dict(self) -> dict:
        return {"frames": self.frames, "dropped": self.dropped, "repeated": self.repeated,
                "max_gap_s": round(self.max_gap_s, 6)}


class CameraSource(Protocol):
    name: str
    kind: str
    stats: FrameStats

    def open(self) -> None: ...

    def read(self) -> tuple[np.ndarray, float]:
        """Latest HxWx3 uint8 RGB frame and its capture time (clock domain of the run)."""
        ...

    def close(self) -> None: ...


class RobotCameras:
    """Images the robot renders itself (simulators).

    Every render runs on one dedicated thread: an OpenGL context belongs to the thread that made
    it, and the warm-up (main thread) and the inference worker (its own thread) both capture."""

    def __init__(self, robot, clock: Callable[[], float]):
        self._robot, self._clock = robot, clock
        self._executor: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()

    def source(self, name: str) -> "RobotCamera":
        return RobotCamera(self, name)

    def _render_now(self) -> tuple[dict[str, np.ndarray], float]:
        t = self._clock()
        return self._robot.read_cameras(), t

    def call(self, fn: Callable[[], object]) -> object:
        """Run `fn` on the render thread (renders, and the robot's disconnect, which frees the
        GL context and must happen where the context was made)."""
        with self._lock:
            if self._executor is None:
                self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="vla-edge-render")
            return self._executor.submit(fn).result()

    def render(self) -> tuple[dict[str, np.ndarray], float]:
        return self.call(self._render_now)  # type: ignore[return-value]

    def shutdown(self) -> None:
        with self._lock:
            if self._executor is not None:
                self._executor.shutdown(wait=True)
                self._executor = None


class RobotCamera:
    kind = "robot"

    def __init__(self, group: RobotCameras, name: str):
        self._group, self.name, self.stats = group, name, FrameStats()
        self._cache: tuple[dict[str, np.ndarray], float] | None = None

    def open(self) -> None:
        self.read()

    def read(self) -> tuple[np.ndarray, float]:
        images, t = self._group.render()
        if self.name not in images:
            raise CameraError(f"camera {self.name!r}: the robot rendered {sorted(images) or 'no cameras'}")
        self.stats.record(t, None)
        return images[self.name], t

    def close(self) -> None:
        pass  # the group outlives its cameras: see disconnect_robot()


class SyntheticCamera:
    """A deterministic moving pattern (for tests and for loop checks without a camera). It is not a
    view of anything; runs using it say so in their config and summary."""

    kind = "synthetic"

    def __init__(self, name: str, clock: Callable[[], float], height: int = 224, width: int = 224, seed: int = 0):
        self.name, self._clock, self.stats = name, clock, FrameStats()
        self._h, self._w = height, width
        rng = np.random.default_rng(seed + sum(map(ord, name)))
        self._base = rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8)
        self._n = 0

    def open(self) -> None:
        pass

    def read(self) -> tuple[np.ndarray, float]:
        t = self._clock()
        shift = self._n % self._w  # the pattern scrolls one column per frame
        self._n += 1
        self.stats.record(t, None)
        return np.roll(self._base, shift, axis=1), t

    def close(self) -> None:
        pass


class OpenCVCamera:
    """A V4L2/USB camera through OpenCV (`vla-edge[cameras]`). Frames are converted BGR -> RGB."""

    kind = "opencv"

    def __init__(self, name: str, device: int | str, clock: Callable[[], float]):
        self.name, self.device, self._clock, self.stats = name, device, clock, FrameStats()
        self._cap = None
        self._period: float | None = None

    def open(self) -> None:
        try:
            import cv2  # noqa: PLC0415 - optional dependency
        except ImportError:
            raise CameraError(
                f"camera {self.name!r}: OpenCV is not installed; install vla-edge[cameras] "
                "(opencv-python-headless) to read camera devices"
            ) from None
        self._cv2 = cv2
        cap = cv2.VideoCapture(self.device)
        if not cap.isOpened():
            raise CameraError(f"camera {self.name!r}: cannot open device {self.device!r}")
        self._cap = cap
        fps = cap.get(cv2.CAP_PROP_FPS)
        self._period = 1.0 / fps if fps and fps > 0 else None
        self.read()

    def read(self) -> tuple[np.ndarray, float]:
        if self._cap is None:
            raise CameraError(f"camera {self.name!r}: not open")
        ok, frame = self._cap.read()
        t = self._clock()
        if not ok or frame is None:
            self.stats.dropped += 1
            raise CameraError(f"camera {self.name!r}: device {self.device!r} returned no frame")
        self.stats.record(t, self._period)
        return self._cv2.cvtColor(frame, self._cv2.COLOR_BGR2RGB), t

    def close(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None


def parse_camera_spec(text: str) -> tuple[str, str]:
    """`--camera NAME=SPEC` -> (name, spec); SPEC is a device index, a device path, or 'synthetic'."""
    name, sep, spec = text.partition("=")
    if not sep or not name.strip() or not spec.strip():
        raise ConfigError("--camera", f"expected NAME=SPEC (SPEC: device index, /dev/videoN or 'synthetic'), got {text!r}")
    return name.strip(), spec.strip()


def build_sources(
    wanted: dict[str, str],
    required: tuple[str, ...],
    specs: dict[str, str],
    robot,
    clock: Callable[[], float],
    seed: int = 0,
) -> dict[str, CameraSource]:
    """Map the policy's cameras to sources: an explicit --camera spec wins, else the robot's own
    camera of that name. A required camera with neither is a ConfigError (nothing has moved)."""
    robot_cams = tuple(robot.capabilities.camera_names)
    unknown = sorted(set(specs) - set(wanted.values()))
    if unknown:
        raise ConfigError("--camera", f"camera(s) {unknown} are not used by the policy (it uses {sorted(wanted.values())})")
    group = RobotCameras(robot, clock)
    sources: dict[str, CameraSource] = {}
    for cam in dict.fromkeys(wanted.values()):
        spec = specs.get(cam)
        if spec is not None:
            if spec == "synthetic":
                sources[cam] = SyntheticCamera(cam, clock, seed=seed)
            else:
                sources[cam] = OpenCVCamera(cam, int(spec) if spec.isdigit() else spec, clock)
        elif cam in robot_cams:
            sources[cam] = group.source(cam)
        elif cam in required:
            raise ConfigError(
                f"camera {cam!r}",
                f"the policy requires it but robot {robot.name!r} provides {list(robot_cams) or 'no cameras'}; "
                f"give --camera {cam}=DEVICE (index or /dev/videoN) or --camera {cam}=synthetic",
            )
    return sources


def open_sources(sources: dict[str, CameraSource], required: tuple[str, ...] = ()) -> dict[str, str]:
    """Open and test-read every source. A required camera that fails is an error (those already
    opened are closed); an optional one is removed from `sources` and returned as name -> reason,
    so the run goes on without it and says so."""
    opened: list[CameraSource] = []
    skipped: dict[str, str] = {}
    try:
        for name, src in list(sources.items()):
            try:
                src.open()
            except CameraError as exc:
                if name in required:
                    raise
                skipped[name] = str(exc)
                del sources[name]
                continue
            opened.append(src)
    except Exception:
        for src in opened:
            src.close()
        raise
    return skipped


def capture(sources: dict[str, CameraSource], clock: Callable[[], float]) -> tuple[dict[str, np.ndarray], float]:
    """One image per camera and the oldest capture time among them (the observation's age)."""
    images, times = {}, []
    for name, src in sources.items():
        images[name], t = src.read()
        times.append(t)
    return images, (min(times) if times else clock())


def disconnect_robot(robot, sources: dict[str, CameraSource]) -> None:
    """Close every camera, then disconnect the robot — on the render thread if the robot renders
    the cameras itself, so its GL context is released by the thread that owns it."""
    groups = {id(s._group): s._group for s in sources.values() if isinstance(s, RobotCamera)}
    for src in sources.values():
        src.close()
    if groups:
        group = next(iter(groups.values()))
        try:
            group.call(robot.disconnect)
        finally:
            for g in groups.values():
                g.shutdown()
    else:
        robot.disconnect()
