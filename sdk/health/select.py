"""Pick the health monitors for this machine and execution target.

auto: a Jetson gets the Jetson sysfs monitor (+ jtop when jetson-stats is installed); any other
Linux machine the generic monitor. NVML joins when it finds a GPU and the target runs on a GPU
(or the target is unknown): a CPU target (reference, x86) is not slowed by a hot discrete GPU,
so its throttle flags would only degrade the run for nothing. A monitor named explicitly in the
run YAML that cannot read anything here is an error before the run starts, not a silent no-op.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from ..errors import ConfigError
from .generic import GenericLinuxMonitor
from .jetson import JetsonMonitor, JtopMonitor, is_jetson
from .nvml import NvmlMonitor, NvmlSession
from .sample import Monitor
from .sysfs import SysfsTree

MONITOR_NAMES = ("generic", "jetson", "jtop", "nvml")
CPU_TARGETS = frozenset({"reference", "x86"})


@dataclass
class MachineProbe:
    """Where monitors read from; tests replace every part."""

    tree: SysfsTree
    nvml: NvmlSession
    jtop_installed: Callable[[], bool]
    psutil_module: Any = None
    jtop_open: Callable[[], Any] | None = None

    @classmethod
    def local(cls) -> "MachineProbe":
        return cls(SysfsTree(), NvmlSession(), lambda: importlib.util.find_spec("jtop") is not None)


def build_monitor(name: str, probe: MachineProbe) -> Monitor:
    if name == "generic":
        return GenericLinuxMonitor(probe.tree, probe.psutil_module)
    if name == "jetson":
        return JetsonMonitor(probe.tree, probe.psutil_module)
    if name == "jtop":
        return JtopMonitor(probe.jtop_open) if probe.jtop_open is not None else JtopMonitor()
    if name == "nvml":
        return NvmlMonitor(session=probe.nvml)
    raise ConfigError("health.monitors", f"unknown monitor {name!r}; known: {', '.join(MONITOR_NAMES)}")


def auto_monitor_names(target: str | None, probe: MachineProbe) -> tuple[list[str], list[str]]:
    """(monitor names, notes explaining each choice)."""
    names: list[str] = []
    notes: list[str] = []
    if is_jetson(probe.tree):
        names.append("jetson")
        notes.append("jetson: this is a Jetson")
        if probe.jtop_installed():
            names.append("jtop")
            notes.append("jtop: jetson-stats installed")
    else:
        names.append("generic")
        notes.append("generic: Linux sysfs/psutil")
    gpus = probe.nvml.device_count()
    if gpus and target not in CPU_TARGETS:
        names.insert(0, "nvml")  # first: its device memory is the headroom that matters for a GPU target
        notes.append(f"nvml: {gpus} GPU(s), target {target or 'unspecified'} may use them")
    elif gpus:
        notes.append(f"nvml: {gpus} GPU(s) found but not monitored (target {target} runs on the CPU)")
    else:
        notes.append(f"nvml: not used ({probe.nvml.error or 'no NVIDIA GPU'})")
    return names, notes


def select_monitors(target: str | None, requested: str | Sequence[str] = "auto",
                    probe: MachineProbe | None = None) -> tuple[list[Monitor], list[str]]:
    probe = probe or MachineProbe.local()
    if requested == "auto":
        names, notes = auto_monitor_names(target, probe)
        return [build_monitor(n, probe) for n in names], notes
    monitors, notes = [], []
    for name in requested:
        monitor = build_monitor(name, probe)
        ok, why = monitor.available()
        if not ok:
            raise ConfigError("health.monitors", f"monitor {name!r} cannot read anything on this machine: {why}")
        monitors.append(monitor)
        notes.append(f"{name}: requested ({why})")
    return monitors, notes
