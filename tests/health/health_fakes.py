"""Test doubles for the health monitors: a fake NVML module (same function names as pynvml),
a fake psutil, fixture-tree helpers and a scripted monitor driven by a clock."""

from __future__ import annotations

import shutil
from collections import namedtuple
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from vla_edge.health.sample import HealthSample, SampleBuilder

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "health"

VirtualMemory = namedtuple("VirtualMemory", "total available")
SensorTemp = namedtuple("SensorTemp", "label current high critical")
MemInfo = namedtuple("MemInfo", "total free used")


def copy_tree(name: str, dest: Path) -> Path:
    """A writable copy of a fixture tree (tests change files to make it hot, broken, ...)."""
    out = dest / name
    shutil.copytree(FIXTURES / name, out)
    return out


def write(root: Path, rel: str, text: str) -> None:
    p = root / rel
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(text)


class FakePsutil:
    def __init__(self, sensors=None, total=16 << 30, available=8 << 30, fail_sensors: bool = False):
        self.sensors = sensors or {}
        self.total, self.available = total, available
        self.fail_sensors = fail_sensors

    def sensors_temperatures(self):
        if self.fail_sensors:
            raise OSError("hwmon read failed")
        return self.sensors

    def virtual_memory(self):
        return VirtualMemory(self.total, self.available)


class NVMLError(Exception):
    pass


@dataclass
class FakeGpu:
    name: str = "NVIDIA H100 80GB HBM3"
    cc: tuple[int, int] = (9, 0)
    temp: object = 45
    slowdown: int = 87
    shutdown: int = 92
    sm: tuple[int, int] = (1980, 1980)  # (current, max) MHz
    mem: tuple[int, int] = (2619, 2619)
    reasons: int = 0
    memory: tuple[int, int] = (80 << 30, 70 << 30)  # total, free
    fail: set[str] = field(default_factory=set)  # pynvml function names that raise for this GPU


class FakeNvml:
    """The subset of pynvml the monitor uses. `init_error` makes nvmlInit raise."""

    NVML_TEMPERATURE_GPU = 0
    NVML_TEMPERATURE_THRESHOLD_SHUTDOWN = 0
    NVML_TEMPERATURE_THRESHOLD_SLOWDOWN = 1
    NVML_CLOCK_SM = 1
    NVML_CLOCK_MEM = 2
    NVMLError = NVMLError

    def __init__(self, gpus: list[FakeGpu] | None = None, init_error: str | None = None):
        self.gpus = gpus if gpus is not None else [FakeGpu()]
        self.init_error = init_error
        self.inits = self.shutdowns = 0

    def _gpu(self, h, fn: str) -> FakeGpu:
        g = self.gpus[h]
        if fn in g.fail:
            raise NVMLError(f"{fn}: GPU is lost")
        return g

    def nvmlInit(self):
        if self.init_error:
            raise NVMLError(self.init_error)
        self.inits += 1

    def nvmlShutdown(self):
        self.shutdowns += 1

    def nvmlSystemGetDriverVersion(self):
        return b"550.54.15"

    def nvmlDeviceGetCount(self):
        return len(self.gpus)

    def nvmlDeviceGetHandleByIndex(self, i):
        self._gpu(i, "nvmlDeviceGetHandleByIndex")
        return i

    def nvmlDeviceGetName(self, h):
        return self._gpu(h, "nvmlDeviceGetName").name

    def nvmlDeviceGetCudaComputeCapability(self, h):
        return self._gpu(h, "nvmlDeviceGetCudaComputeCapability").cc

    def nvmlDeviceGetTemperature(self, h, sensor):
        assert sensor == self.NVML_TEMPERATURE_GPU
        return self._gpu(h, "nvmlDeviceGetTemperature").temp

    def nvmlDeviceGetTemperatureThreshold(self, h, kind):
        g = self._gpu(h, "nvmlDeviceGetTemperatureThreshold")
        return g.slowdown if kind == self.NVML_TEMPERATURE_THRESHOLD_SLOWDOWN else g.shutdown

    def nvmlDeviceGetClockInfo(self, h, clock):
        g = self._gpu(h, "nvmlDeviceGetClockInfo")
        return (g.sm if clock == self.NVML_CLOCK_SM else g.mem)[0]

    def nvmlDeviceGetMaxClockInfo(self, h, clock):
        g = self._gpu(h, "nvmlDeviceGetMaxClockInfo")
        return (g.sm if clock == self.NVML_CLOCK_SM else g.mem)[1]

    def nvmlDeviceGetCurrentClocksEventReasons(self, h):
        return self._gpu(h, "nvmlDeviceGetCurrentClocksEventReasons").reasons

    def nvmlDeviceGetMemoryInfo(self, h):
        g = self._gpu(h, "nvmlDeviceGetMemoryInfo")
        return MemInfo(g.memory[0], g.memory[1], g.memory[0] - g.memory[1])


class ScriptedMonitor:
    """Temperature of one zone as a function of the clock: [(t_from, celsius), ...] relative to
    the first sample; a value None makes the sensor unavailable."""

    name = "scripted"

    def __init__(self, clock: Callable[[], float], script: list[tuple[float, float | None]], zone: str = "soc-thermal",
                 throttles: list[tuple[float, float, str]] = ()):
        self.clock, self.script, self.zone = clock, sorted(script), zone
        self.throttles = list(throttles)  # (t_from, t_to, kind)
        self.t0: float | None = None
        self.samples = 0

    def value_at(self, t: float):
        value = self.script[0][1]
        for t_from, v in self.script:
            if t >= t_from - 1e-9:
                value = v
        return value

    def sample(self, now: float) -> HealthSample:
        if self.t0 is None:
            self.t0 = now
        self.samples += 1
        t = now - self.t0
        b = SampleBuilder(self.name)
        value = self.value_at(t)
        if value is None:
            b.fail(f"temperature:{self.zone}", "read error EIO (scripted)")
        else:
            b.temperature(self.zone, value)
        for t_from, t_to, kind in self.throttles:
            if t_from - 1e-9 <= t < t_to - 1e-9:
                b.throttle("gpu0", f"scripted_{kind}", kind)
        return b.build(now)

    def available(self):
        return True, "scripted"


class ManualTime:
    def __init__(self, t: float = 100.0):
        self.t = t

    def __call__(self) -> float:
        return self.t
