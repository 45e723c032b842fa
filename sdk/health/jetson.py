"""NVIDIA Jetson (Orin, Thor family) monitor: sysfs + nvpmodel, and jtop when installed.

Reads (paths relative to the sysfs root):
- thermal zones (cpu-thermal, gpu-thermal, soc*-thermal, tj-thermal ...) with trip points;
- CPU cpufreq policies and GPU devfreq (Orin: /sys/class/devfreq/17000000.ga10b) current vs max;
- cooling devices in a throttling state;
- power mode: /var/lib/nvpmodel/status ("pmode:0000") named through /etc/nvpmodel.conf
  ("< POWER_MODEL ID=0 NAME=MAXN >");
- memory (shared by CPU and GPU on Jetson) through psutil.
Verified only against the fixture trees in tests/fixtures/health (no Jetson was available).
"""

from __future__ import annotations

import re
from typing import Any, Callable

from .generic import GenericLinuxMonitor
from .sample import HealthSample, SampleBuilder, SensorError
from .sysfs import SysfsTree, read_devfreq

# devfreq names of Jetson GPUs (ga10b: Orin, gv11b: Xavier, gp10b: TX2, gm20b: Nano); Thor's name
# is not known here, so any devfreq device with "gpu" in its name is taken too.
GPU_DEVFREQ = r".*(gpu|ga10b|gv11b|gp10b|gm20b|gb10b).*"
_MODEL_LINE = re.compile(r"<\s*POWER_MODEL\s+ID=(\d+)\s+NAME=([^\s>]+)")


def is_jetson(tree: SysfsTree) -> bool:
    if tree.exists("etc/nv_tegra_release"):
        return True
    try:
        return "nvidia,tegra" in tree.text("proc/device-tree/compatible")
    except SensorError:
        return False


def jetson_model(tree: SysfsTree) -> str | None:
    try:
        return tree.text("proc/device-tree/model").rstrip("\x00") or None
    except SensorError:
        return None


def read_power_mode(tree: SysfsTree) -> str:
    """'MAXN (id 0)'; SensorError when the status file is missing or unparsable."""
    status = tree.text("var/lib/nvpmodel/status")
    m = re.search(r"pmode:\s*(\d+)", status)
    if not m:
        raise SensorError(f"garbage value {status[:40]!r} (var/lib/nvpmodel/status)")
    mode_id = int(m.group(1))
    try:
        names = {int(i): n for i, n in _MODEL_LINE.findall(tree.text("etc/nvpmodel.conf"))}
    except SensorError:
        names = {}
    return f"{names[mode_id]} (id {mode_id})" if mode_id in names else f"id {mode_id}"


class JetsonMonitor(GenericLinuxMonitor):
    """The generic sysfs readings plus GPU devfreq and the nvpmodel power mode."""

    name = "jetson"
    hwmon = False  # Jetson's hwmon chips are the thermal zones again

    def read_platform(self, b: SampleBuilder) -> None:
        if read_devfreq(self.tree, b, GPU_DEVFREQ) == 0:
            b.fail("clock:gpu", "no GPU devfreq device under /sys/class/devfreq")
        try:
            b.power_mode = read_power_mode(self.tree)
        except SensorError as exc:
            b.fail("power_mode", str(exc))

    def available(self) -> tuple[bool, str]:
        if not is_jetson(self.tree):
            return False, "not a Jetson (no /etc/nv_tegra_release, device tree not nvidia,tegra)"
        s = self.sample(0.0)
        return True, (f"{jetson_model(self.tree) or 'Jetson'}: {len(s.temperatures_c)} thermal zones, "
                      f"{len(s.clocks)} clocks, power mode {s.power_mode or 'unknown'}")


def _open_jtop() -> Any:
    from jtop import jtop  # noqa: PLC0415 - optional (jetson-stats), only on Jetson

    client = jtop()
    client.start()
    return client


class JtopMonitor:
    """jetson-stats' jtop service: its temperature list and nvpmodel name. Optional: the sysfs
    monitor reads the same sensors; jtop adds what its service can read without root."""

    name = "jtop"

    def __init__(self, open_client: Callable[[], Any] = _open_jtop):
        self._open = open_client
        self._client: Any = None
        self._error: str | None = None

    def _connect(self) -> Any:
        if self._client is None and self._error is None:
            try:
                self._client = self._open()
            except ImportError:
                self._error = "jetson-stats (jtop) is not installed"
            except Exception as exc:  # noqa: BLE001 - jtop raises JtopException when its service is down
                self._error = f"jtop service not reachable: {exc}"
        return self._client

    def sample(self, now: float) -> HealthSample:
        b = SampleBuilder(self.name)
        client = self._connect()
        if client is None:
            b.fail("jtop", self._error or "unavailable")
            return b.build(now)
        try:
            temps = dict(client.temperature)
        except Exception as exc:  # noqa: BLE001
            b.fail("jtop", f"temperature read failed: {exc}")
            temps = {}
        for zone, entry in temps.items():
            name = f"jtop:{zone}"
            if not isinstance(entry, dict) or not entry.get("online", True):
                b.fail(f"temperature:{name}", "sensor offline (jtop)")
                continue
            b.temperature(name, entry.get("temp"))
        try:
            mode = client.nvpmodel
            b.power_mode = None if mode is None else str(getattr(mode, "name", mode))
        except Exception as exc:  # noqa: BLE001
            b.fail("power_mode", f"jtop nvpmodel failed: {exc}")
        return b.build(now)

    def available(self) -> tuple[bool, str]:
        client = self._connect()
        return (True, "jtop service connected") if client is not None else (False, self._error or "unavailable")

    def close(self) -> None:
        if self._client is not None:
            try:
                self._client.close()
            finally:
                self._client = None
