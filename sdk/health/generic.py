"""Generic Linux (x86 or ARM) monitor: sysfs thermal zones, cpufreq, cooling devices, psutil.

psutil's `sensors_temperatures()` reads hwmon (e.g. coretemp, k10temp, nvme), which often exists
where thermal zones do not (desktop x86). Memory headroom comes from psutil.virtual_memory().
"""

from __future__ import annotations

from typing import Any

from .sample import HealthSample, SampleBuilder
from .sysfs import SysfsTree, read_cooling_devices, read_cpufreq, read_thermal_zones


def load_psutil() -> Any:
    import psutil  # noqa: PLC0415 - pinned dependency; imported lazily so fakes can replace it

    return psutil


def read_psutil(ps: Any, b: SampleBuilder, temperatures: bool = True) -> None:
    """hwmon temperatures (`hwmon:<chip>/<label>`, high/critical as trip points) and memory."""
    if temperatures:
        try:
            sensors = ps.sensors_temperatures() if hasattr(ps, "sensors_temperatures") else {}
        except Exception as exc:  # noqa: BLE001 - psutil raises platform-specific errors
            b.fail("hwmon", f"psutil.sensors_temperatures failed: {exc}")
            sensors = {}
        for chip, entries in (sensors or {}).items():
            for i, entry in enumerate(entries):
                name = f"hwmon:{chip}/{getattr(entry, 'label', '') or i}"
                b.temperature(name, getattr(entry, "current", None))
                for kind, attr in (("hot", "high"), ("critical", "critical")):
                    value = getattr(entry, attr, None)
                    if value is not None:
                        b.trip_point(name, kind, value)
    try:
        vm = ps.virtual_memory()
        b.memory(int(vm.available), int(vm.total))
    except Exception as exc:  # noqa: BLE001
        b.fail("memory", f"psutil.virtual_memory failed: {exc}")


class GenericLinuxMonitor:
    name = "generic"
    hwmon = True  # psutil hwmon temperatures (platform monitors that read the same chips say False)

    def __init__(self, tree: SysfsTree | None = None, psutil_module: Any = None):
        self.tree = tree or SysfsTree()
        self._ps = psutil_module

    def sample(self, now: float) -> HealthSample:
        b = SampleBuilder(self.name)
        read_thermal_zones(self.tree, b)
        read_cpufreq(self.tree, b)
        self.read_platform(b)
        read_cooling_devices(self.tree, b)
        read_psutil(self._ps if self._ps is not None else load_psutil(), b, temperatures=self.hwmon)
        return b.build(now)

    def read_platform(self, b: SampleBuilder) -> None:
        """Platform-specific readings (GPU clocks, power mode); none on a generic machine."""

    def available(self) -> tuple[bool, str]:
        s = self.sample(0.0)
        if not s.temperatures_c and not s.clocks:
            why = "; ".join(f"{k}: {v}" for k, v in list(s.unavailable.items())[:3])
            return False, ("no readable thermal zone, cpufreq policy or hwmon sensor (containers and VMs "
                           "often hide them)" + (f"; {why}" if why else ""))
        return True, (f"{len(s.temperatures_c)} temperature sensors, {len(s.clocks)} clocks"
                      + (f", {len(s.unavailable)} unavailable" if s.unavailable else ""))
