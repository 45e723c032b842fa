"""Linux sysfs readers shared by the generic and Jetson monitors.

Everything goes through `SysfsTree`, which has a root (tests point it at a fake tree under
tests/fixtures/health) and a file reader hook (tests inject permission errors and I/O errors,
which chmod cannot simulate when tests run as root). Each reader adds what it could read to a
`SampleBuilder` and records every sensor it could not read as unavailable, with the reason.

Units in sysfs (Linux ABI): thermal zone `temp` and trip points in millidegrees C; cpufreq in
kHz; devfreq in Hz; cooling devices as integer states 0..max_state.
"""

from __future__ import annotations

import errno
import re
from pathlib import Path
from typing import Callable

from .sample import SampleBuilder, SensorError

Reader = Callable[[Path], str]

# Cooling devices that throttle compute when their state is > 0. Fans are active cooling (the
# fix, not the symptom); "TCC Offset" and the like are configuration, not throttling.
_THROTTLING_COOLER = re.compile(r"cpufreq|devfreq|processor|powerclamp|gpu|cpu", re.I)
_NOT_THROTTLING = re.compile(r"fan|tcc|offset", re.I)


def _default_read(path: Path) -> str:
    return path.read_text()


class SysfsTree:
    def __init__(self, root: str | Path = "/", read: Reader | None = None):
        self.root = Path(root)
        self._read = read or _default_read

    def path(self, rel: str) -> Path:
        return self.root / rel.lstrip("/")

    def exists(self, rel: str) -> bool:
        return self.path(rel).exists()

    def text(self, rel: str) -> str:
        """File content, stripped; SensorError with a plain reason on any failure."""
        p = self.path(rel)
        try:
            return self._read(p).strip()
        except FileNotFoundError:
            raise SensorError(f"missing ({rel})") from None
        except PermissionError:
            raise SensorError(f"permission denied ({rel})") from None
        except UnicodeDecodeError:
            raise SensorError(f"unreadable content ({rel})") from None
        except OSError as exc:  # EIO/ENODATA/EINVAL: sensors that are offline or not ready
            why = errno.errorcode.get(exc.errno or 0, "") or str(exc)
            raise SensorError(f"read error {why} ({rel})") from None

    def number(self, rel: str) -> float:
        raw = self.text(rel)
        try:
            return float(int(raw, 10))
        except ValueError:
            raise SensorError(f"garbage value {raw[:40]!r} ({rel})") from None

    def numbers(self, rel: str) -> list[float]:
        raw = self.text(rel)
        try:
            return [float(int(v, 10)) for v in raw.split()]
        except ValueError:
            raise SensorError(f"garbage value {raw[:40]!r} ({rel})") from None

    def children(self, rel: str, pattern: str) -> list[str]:
        """Entries of a directory matching a regex, as relative paths in natural order; [] if the
        directory is missing or unreadable."""
        base = self.path(rel)
        try:
            names = [n for n in (p.name for p in base.iterdir()) if re.fullmatch(pattern, n)]
        except OSError:
            return []
        return [f"{rel.rstrip('/')}/{n}" for n in sorted(names, key=_natural)]


def _natural(name: str) -> tuple:
    return tuple(int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name))


def read_thermal_zones(tree: SysfsTree, b: SampleBuilder, prefix: str = "") -> int:
    """Temperatures and trip points of /sys/class/thermal/thermal_zone*; returns zones found."""
    zones = tree.children("sys/class/thermal", r"thermal_zone\d+")
    seen: dict[str, int] = {}
    for rel in zones:
        zone_dir = rel.rsplit("/", 1)[1]
        try:
            kind = tree.text(f"{rel}/type") or zone_dir
        except SensorError:
            kind = zone_dir
        seen[kind] = seen.get(kind, 0) + 1
        name = prefix + (kind if seen[kind] == 1 else f"{kind}@{zone_dir}")
        try:
            milli = tree.number(f"{rel}/temp")
        except SensorError as exc:
            b.fail(f"temperature:{name}", str(exc))
            continue
        b.temperature(name, milli / 1000.0)
        for trip in tree.children(rel, r"trip_point_\d+_temp"):
            try:
                trip_type = tree.text(trip.replace("_temp", "_type"))
                b.trip_point(name, trip_type, tree.number(trip) / 1000.0)
            except SensorError:
                continue  # a missing trip point only loses a refinement, never a reading
    return len(zones)


def _required(tree: SysfsTree, b: SampleBuilder, sensor: str, *rels: str) -> tuple[float, ...] | None:
    """All of these numbers, or None with the sensor marked unavailable."""
    try:
        return tuple(tree.number(r) for r in rels)
    except SensorError as exc:
        b.fail(sensor, str(exc))
        return None


def _optional(read: Callable[[], float]) -> float | None:
    """A refinement (cap, hardware max): missing or garbage only loses the refinement."""
    try:
        return read()
    except (SensorError, ValueError):
        return None


def read_cpufreq(tree: SysfsTree, b: SampleBuilder) -> int:
    """CPU clocks per cpufreq policy (per CPU on kernels without policy directories)."""
    dirs = tree.children("sys/devices/system/cpu/cpufreq", r"policy\d+")
    if not dirs:
        dirs = [f"{d}/cpufreq" for d in tree.children("sys/devices/system/cpu", r"cpu\d+")
                if tree.exists(f"{d}/cpufreq")]
    for rel in dirs:
        name = "cpu:" + (rel.rsplit("/", 1)[1] if "policy" in rel else rel.split("/")[-2])
        got = _required(tree, b, f"clock:{name}", f"{rel}/scaling_cur_freq", f"{rel}/cpuinfo_max_freq")
        if got is None:
            continue
        cap = _optional(lambda: tree.number(f"{rel}/scaling_max_freq") * 1e3)  # noqa: B023 - called at once
        b.clock(name, got[0] * 1e3, got[1] * 1e3, cap)
    return len(dirs)


def read_devfreq(tree: SysfsTree, b: SampleBuilder, name_pattern: str = r".+") -> int:
    """devfreq devices (Jetson GPU: 17000000.ga10b on Orin); hardware max = the highest of
    available_frequencies, cap = max_freq (lowered by nvpmodel or thermal capping)."""
    devs = tree.children("sys/class/devfreq", name_pattern)
    for rel in devs:
        name = "devfreq:" + rel.rsplit("/", 1)[1]
        got = _required(tree, b, f"clock:{name}", f"{rel}/cur_freq", f"{rel}/max_freq")
        if got is None:
            continue
        cur, cap = got
        hw_max = _optional(lambda: max(tree.numbers(f"{rel}/available_frequencies")))  # noqa: B023
        b.clock(name, cur, max(hw_max or cap, cap), cap)
    return len(devs)


def read_cooling_devices(tree: SysfsTree, b: SampleBuilder) -> int:
    """A throttling cooling device (cpufreq/devfreq/processor...) in a state > 0 is a thermal
    throttle flag: the kernel is capping clocks because a trip point was crossed."""
    devs = tree.children("sys/class/thermal", r"cooling_device\d+")
    for rel in devs:
        dev = rel.rsplit("/", 1)[1]
        try:
            kind = tree.text(f"{rel}/type")
        except SensorError as exc:
            b.fail(f"cooling:{dev}", str(exc))
            continue
        if not _THROTTLING_COOLER.search(kind) or _NOT_THROTTLING.search(kind):
            continue
        got = _required(tree, b, f"cooling:{dev}", f"{rel}/cur_state", f"{rel}/max_state")
        if got is None:
            continue
        state, top = got
        if state > 0:
            b.throttle(f"{dev} ({kind})", f"cooling state {int(state)}/{int(top)}", "thermal")
    return len(devs)
