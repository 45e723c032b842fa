"""NVIDIA discrete / GB10 GPUs through NVML (`nvidia-ml-py`, imported as pynvml).

Per device `gpu<i>`: GPU temperature with the slowdown/shutdown thresholds as trip points, SM and
memory clocks vs their maximum, the current clock-throttle (clock event) reasons, and device
memory. Each NVML call that fails makes that one reading unavailable; the module is injectable,
so tests drive it with a fake that has the same function names.
"""

from __future__ import annotations

from typing import Any

from .sample import HealthSample, SampleBuilder

# Clock-event reason bits (nvml.h nvmlClocksEventReason*). Idle, application/display clock
# settings and sync boost are not throttling; the rest are, grouped by kind.
THROTTLE_REASONS: dict[int, tuple[str, str]] = {
    0x4: ("sw_power_cap", "power"),
    0x8: ("hw_slowdown", "slowdown"),
    0x20: ("sw_thermal_slowdown", "thermal"),
    0x40: ("hw_thermal_slowdown", "thermal"),
    0x80: ("hw_power_brake_slowdown", "power"),
}


def load_pynvml() -> Any:
    import pynvml  # noqa: PLC0415 - pinned dependency (nvidia-ml-py)

    return pynvml


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def decode_throttle_reasons(mask: int) -> list[tuple[str, str]]:
    return [reason for bit, reason in THROTTLE_REASONS.items() if mask & bit]


class NvmlSession:
    """nvmlInit once; `error` says why NVML cannot be used (no driver, no library)."""

    def __init__(self, nvml: Any = None):
        self._nvml = nvml
        self.nvml: Any = None
        self.error: str | None = None
        self._tried = False

    def open(self) -> Any:
        if not self._tried:
            self._tried = True
            try:
                nv = self._nvml if self._nvml is not None else load_pynvml()
                nv.nvmlInit()
                self.nvml = nv
            except ImportError:
                self.error = "nvidia-ml-py (pynvml) is not installed"
            except Exception as exc:  # noqa: BLE001 - NVMLError_LibraryNotFound, _DriverNotLoaded ...
                self.error = f"NVML unavailable ({type(exc).__name__}: {exc}); no NVIDIA driver on this machine?"
        return self.nvml

    def device_count(self) -> int:
        nv = self.open()
        if nv is None:
            return 0
        try:
            return int(nv.nvmlDeviceGetCount())
        except Exception as exc:  # noqa: BLE001
            self.error = f"nvmlDeviceGetCount failed: {exc}"
            return 0

    def close(self) -> None:
        if self.nvml is not None:
            try:
                self.nvml.nvmlShutdown()
            except Exception:  # noqa: BLE001, S110 - shutting down a broken driver must not raise
                pass
            self.nvml = None
            self._tried = False


def describe_devices(session: NvmlSession) -> list[dict[str, Any]]:
    """Name, compute capability, memory and driver of each GPU, for `vla-edge doctor`."""
    nv = session.open()
    out: list[dict[str, Any]] = []
    if nv is None:
        return out
    try:
        driver = _text(nv.nvmlSystemGetDriverVersion())
    except Exception:  # noqa: BLE001
        driver = None
    for i in range(session.device_count()):
        d: dict[str, Any] = {"index": i, "driver": driver}
        try:
            h = nv.nvmlDeviceGetHandleByIndex(i)
            d["name"] = _text(nv.nvmlDeviceGetName(h))
            major, minor = nv.nvmlDeviceGetCudaComputeCapability(h)
            d["compute_capability"] = f"{int(major)}.{int(minor)}"
        except Exception as exc:  # noqa: BLE001
            d["error"] = str(exc)
            out.append(d)
            continue
        try:
            d["memory_total_bytes"] = int(nv.nvmlDeviceGetMemoryInfo(h).total)
        except Exception:  # noqa: BLE001 - GB10's unified memory reports NOT_SUPPORTED
            d["memory_total_bytes"] = None
        out.append(d)
    return out


class NvmlMonitor:
    name = "nvml"

    def __init__(self, nvml: Any = None, session: NvmlSession | None = None):
        self.session = session or NvmlSession(nvml)

    def sample(self, now: float) -> HealthSample:
        b = SampleBuilder(self.name)
        nv = self.session.open()
        count = self.session.device_count()
        if nv is None or count == 0:
            b.fail("nvml", self.session.error or "no NVIDIA GPU found")
            return b.build(now)
        for i in range(count):
            try:
                h = nv.nvmlDeviceGetHandleByIndex(i)
            except Exception as exc:  # noqa: BLE001 - GPU fell off the bus, reset in progress ...
                b.fail(f"gpu{i}", f"nvmlDeviceGetHandleByIndex failed: {exc}")
                continue
            self._read_device(nv, h, f"gpu{i}", b)
        return b.build(now)

    @staticmethod
    def _read_device(nv: Any, h: Any, gpu: str, b: SampleBuilder) -> None:
        try:
            b.temperature(gpu, nv.nvmlDeviceGetTemperature(h, nv.NVML_TEMPERATURE_GPU))
        except Exception as exc:  # noqa: BLE001
            b.fail(f"temperature:{gpu}", f"nvmlDeviceGetTemperature failed: {exc}")
        for kind, const in (("slowdown", "NVML_TEMPERATURE_THRESHOLD_SLOWDOWN"),
                            ("shutdown", "NVML_TEMPERATURE_THRESHOLD_SHUTDOWN")):
            try:
                b.trip_point(gpu, kind, nv.nvmlDeviceGetTemperatureThreshold(h, getattr(nv, const)))
            except Exception:  # noqa: BLE001, S112 - thresholds refine, they are not readings
                continue
        for clock, const in (("sm", "NVML_CLOCK_SM"), ("mem", "NVML_CLOCK_MEM")):
            try:
                cur = nv.nvmlDeviceGetClockInfo(h, getattr(nv, const))
                mx = nv.nvmlDeviceGetMaxClockInfo(h, getattr(nv, const))
                b.clock(f"{gpu}:{clock}", float(cur) * 1e6, float(mx) * 1e6)
            except Exception as exc:  # noqa: BLE001
                b.fail(f"clock:{gpu}:{clock}", f"NVML clock read failed: {exc}")
        try:
            get = getattr(nv, "nvmlDeviceGetCurrentClocksEventReasons", None) or nv.nvmlDeviceGetCurrentClocksThrottleReasons
            mask = int(get(h))
        except Exception as exc:  # noqa: BLE001
            b.fail(f"throttle:{gpu}", f"NVML clock event reasons failed: {exc}")
        else:
            for reason, kind in decode_throttle_reasons(mask):
                b.throttle(gpu, reason, kind)
        try:
            mem = nv.nvmlDeviceGetMemoryInfo(h)
            b.memory(int(mem.free), int(mem.total))
        except Exception:  # noqa: BLE001, S110 - unified memory (GB10): psutil covers it
            pass

    def available(self) -> tuple[bool, str]:
        count = self.session.device_count()
        if count == 0:
            return False, self.session.error or "NVML found no NVIDIA GPU"
        return True, f"{count} NVIDIA GPU(s) through NVML"

    def close(self) -> None:
        self.session.close()
