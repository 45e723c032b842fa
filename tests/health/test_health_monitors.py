"""Monitors against fake sysfs trees (tests/fixtures/health), a fake NVML and a fake jtop:
correct readings, and every broken sensor reported unavailable — never a crash, never "cool"."""

from __future__ import annotations

import errno
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from health_fakes import FIXTURES, FakeGpu, FakeNvml, FakePsutil, SensorTemp, copy_tree, write  # noqa: E402

from vla_edge.errors import ConfigError  # noqa: E402
from vla_edge.health.generic import GenericLinuxMonitor  # noqa: E402
from vla_edge.health.jetson import JetsonMonitor, JtopMonitor, is_jetson  # noqa: E402
from vla_edge.health.nvml import NvmlMonitor, NvmlSession, describe_devices  # noqa: E402
from vla_edge.health.select import MachineProbe, select_monitors  # noqa: E402
from vla_edge.health.sysfs import SysfsTree  # noqa: E402


def jetson(root: Path, **kw) -> JetsonMonitor:
    return JetsonMonitor(SysfsTree(root, **kw), FakePsutil())


def test_orin_tree_reads_zones_trips_clocks_and_power_mode():
    s = jetson(FIXTURES / "orin").sample(1.0)
    assert s.sources == ("jetson",)
    assert s.temperatures_c["cpu-thermal"] == pytest.approx(52.5)
    assert s.temperatures_c["tj-thermal"] == pytest.approx(53.0)
    assert len(s.temperatures_c) == 7
    assert s.trip_points_c["gpu-thermal"] == {"critical": pytest.approx(104.5), "passive": pytest.approx(99.0)}
    gpu = s.clocks["devfreq:17000000.ga10b"]
    assert gpu.max_hz == 1300500000 and gpu.cap_hz == 1300500000
    assert gpu.ratio == pytest.approx(306000000 / 1300500000)
    assert s.clocks["cpu:policy8"].ratio == pytest.approx(1.0)
    assert s.clocks["cpu:policy0"].current_hz == pytest.approx(1113600e3)
    assert s.power_mode == "MAXN (id 0)"
    assert s.throttles == ()  # the fan at state 3 is cooling, not throttling
    assert s.memory_headroom == pytest.approx(0.5)
    assert s.unavailable == {}
    assert JetsonMonitor(SysfsTree(FIXTURES / "orin"), FakePsutil()).available()[0]


def test_jetson_detection_and_power_mode_names(tmp_path):
    assert is_jetson(SysfsTree(FIXTURES / "orin"))
    assert not is_jetson(SysfsTree(FIXTURES / "x86"))
    root = copy_tree("orin", tmp_path)
    (root / "etc/nv_tegra_release").unlink()
    assert is_jetson(SysfsTree(root))  # device tree says nvidia,tegra234
    write(root, "var/lib/nvpmodel/status", "pmode:0001\n")
    assert jetson(root).sample(0).power_mode == "MODE_15W (id 1)"
    write(root, "var/lib/nvpmodel/status", "pmode:0007\n")
    assert jetson(root).sample(0).power_mode == "id 7"  # a mode nvpmodel.conf does not name


def test_broken_tree_every_bad_sensor_is_unavailable_with_its_reason():
    s = jetson(FIXTURES / "broken").sample(2.0)
    assert s.temperatures_c == {"ok-thermal": pytest.approx(61.25)}  # the only good zone
    u = s.unavailable
    assert "garbage value 'abc'" in u["temperature:cpu-thermal"]
    assert "implausible" in u["temperature:gpu-thermal"]  # -256 C: Jetson's "offline"
    assert "garbage value ''" in u["temperature:soc0-thermal"]  # empty file
    assert u["temperature:cv0-thermal"].startswith("missing")
    assert "exactly 0" in u["temperature:tj-thermal"]
    assert "implausible" in u["temperature:board-thermal"]  # 250 C
    assert "garbage" in u["clock:cpu:policy0"]
    assert "implausible" in u["clock:cpu:policy4"]  # max 0 Hz
    assert u["clock:devfreq:17000000.ga10b"].startswith("missing")
    assert "garbage" in u["cooling:cooling_device0"]
    assert "garbage" in u["power_mode"]
    assert s.trip_points_c == {}  # the garbage trip point is dropped, the reading is kept
    assert s.clocks == {} and s.throttles == ()


def test_permission_and_io_errors_through_the_reader_hook():
    """Tests run as root, where chmod 000 does not block reads: errors are injected instead."""

    def reader(path: Path) -> str:
        if path.parts[-2:] == ("thermal_zone0", "temp"):
            raise PermissionError(errno.EACCES, "Permission denied")
        if path.parts[-2:] == ("thermal_zone1", "temp"):
            raise OSError(errno.EIO, "Input/output error")
        if path.name == "available_frequencies":
            raise OSError(errno.ENODATA, "No data")
        if path.name == "status":
            raise PermissionError(errno.EACCES, "Permission denied")
        return path.read_text()

    s = jetson(FIXTURES / "orin", read=reader).sample(0.0)
    assert s.unavailable["temperature:cpu-thermal"].startswith("permission denied")
    assert s.unavailable["temperature:gpu-thermal"].startswith("read error EIO")
    assert s.unavailable["power_mode"].startswith("permission denied")
    assert "cpu-thermal" not in s.temperatures_c and "gpu-thermal" not in s.temperatures_c
    assert len(s.temperatures_c) == 5
    # No available_frequencies: the hardware max falls back to max_freq.
    assert s.clocks["devfreq:17000000.ga10b"].max_hz == 1300500000


def test_a_reader_that_raises_anything_never_escapes_the_generic_monitor():
    def reader(path: Path) -> str:
        raise OSError(errno.EAGAIN, "try again")

    s = GenericLinuxMonitor(SysfsTree(FIXTURES / "x86", read=reader), FakePsutil()).sample(0.0)
    assert s.temperatures_c == {} and s.clocks == {}
    assert all("EAGAIN" in v for k, v in s.unavailable.items() if k.startswith(("temperature", "clock")))


def test_generic_x86_tree_cooling_devices_and_psutil(tmp_path):
    ps = FakePsutil({"coretemp": [SensorTemp("Package id 0", 47.0, 80.0, 100.0), SensorTemp("", "garbage", None, None)]})
    root = copy_tree("x86", tmp_path)
    mon = GenericLinuxMonitor(SysfsTree(root), ps)
    s = mon.sample(0.0)
    assert s.temperatures_c["acpitz"] == pytest.approx(27.8)
    assert s.temperatures_c["x86_pkg_temp"] == pytest.approx(45.0)
    assert s.temperatures_c["hwmon:coretemp/Package id 0"] == pytest.approx(47.0)
    assert s.trip_points_c["hwmon:coretemp/Package id 0"] == {"hot": 80.0, "critical": 100.0}
    assert "implausible" in s.unavailable["temperature:hwmon:coretemp/1"]
    assert s.trip_points_c["acpitz"] == {"critical": 105.0}
    assert s.clocks["cpu:policy1"].ratio == pytest.approx(800 / 4900)
    assert s.throttles == ()  # TCC Offset at 5 and the fan at 1 are not throttling
    write(root, "sys/class/thermal/cooling_device0/cur_state", "2\n")  # "Processor": passive cooling
    s = mon.sample(1.0)
    assert [(t.reason, t.kind) for t in s.throttles] == [("cooling state 2/3", "thermal")]
    assert "Processor" in s.throttles[0].source
    assert mon.available()[0]


def test_generic_monitor_without_sensors_says_so_and_psutil_failure_is_reported(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    mon = GenericLinuxMonitor(SysfsTree(empty), FakePsutil(fail_sensors=True))
    s = mon.sample(0.0)
    assert s.temperatures_c == {} and "hwmon read failed" in s.unavailable["hwmon"]
    ok, why = mon.available()
    assert not ok and "no readable thermal zone" in why


def test_nvml_reads_temperature_thresholds_clocks_reasons_and_memory():
    nv = FakeNvml([FakeGpu(temp=71, sm=(1410, 1980), reasons=0x40 | 0x4 | 0x1)])
    mon = NvmlMonitor(nv)
    s = mon.sample(5.0)
    assert s.temperatures_c == {"gpu0": 71.0}
    assert s.trip_points_c["gpu0"] == {"slowdown": 87.0, "shutdown": 92.0}
    assert s.clocks["gpu0:sm"].ratio == pytest.approx(1410 / 1980)
    assert s.clocks["gpu0:sm"].max_hz == pytest.approx(1980e6)
    # GPU idle (0x1) is not throttling; power cap and HW thermal slowdown are.
    assert sorted((t.reason, t.kind) for t in s.throttles) == [("hw_thermal_slowdown", "thermal"), ("sw_power_cap", "power")]
    assert s.memory_headroom == pytest.approx(70 / 80)
    assert mon.available() == (True, "1 NVIDIA GPU(s) through NVML")
    assert describe_devices(mon.session)[0] == {"index": 0, "driver": "550.54.15", "name": "NVIDIA H100 80GB HBM3",
                                                "compute_capability": "9.0", "memory_total_bytes": 80 << 30}
    mon.close()
    assert nv.shutdowns == 1


def test_nvml_failures_are_unavailable_readings_not_crashes():
    nv = FakeNvml([FakeGpu(temp="N/A", fail={"nvmlDeviceGetClockInfo", "nvmlDeviceGetCurrentClocksEventReasons"}),
                   FakeGpu(fail={"nvmlDeviceGetHandleByIndex"}), FakeGpu(temp=0), FakeGpu(temp=4294967295)])
    s = NvmlMonitor(nv).sample(0.0)
    assert s.temperatures_c == {}
    for gpu in ("gpu0", "gpu3"):
        assert "implausible" in s.unavailable[f"temperature:{gpu}"]
    assert "exactly 0" in s.unavailable["temperature:gpu2"]
    assert "GPU is lost" in s.unavailable["gpu1"]
    assert "GPU is lost" in s.unavailable["clock:gpu0:sm"] and "GPU is lost" in s.unavailable["throttle:gpu0"]
    assert "gpu2:sm" in s.clocks  # the other readings of a GPU with a broken sensor still count


def test_nvml_without_a_driver_is_unavailable_with_the_reason():
    mon = NvmlMonitor(FakeNvml(init_error="NVML Shared Library Not Found"))
    ok, why = mon.available()
    assert not ok and "NVML Shared Library Not Found" in why
    s = mon.sample(0.0)
    assert s.temperatures_c == {} and "NVML Shared Library Not Found" in s.unavailable["nvml"]
    assert describe_devices(mon.session) == []


class FakeJtop:
    def __init__(self):
        self.temperature = {"CPU": {"temp": 55.5, "online": True}, "PMIC": {"temp": -256, "online": False},
                            "GPU": {"temp": "??", "online": True}}
        self.nvpmodel = type("Mode", (), {"name": "MAXN"})()
        self.closed = False

    def close(self):
        self.closed = True


def test_jtop_monitor_reads_its_service_and_reports_a_missing_one():
    client = FakeJtop()
    mon = JtopMonitor(lambda: client)
    s = mon.sample(0.0)
    assert s.temperatures_c == {"jtop:CPU": 55.5}
    assert "offline" in s.unavailable["temperature:jtop:PMIC"]
    assert "implausible" in s.unavailable["temperature:jtop:GPU"]
    assert s.power_mode == "MAXN"
    mon.close()
    assert client.closed

    def missing():
        raise ImportError("No module named 'jtop'")

    gone = JtopMonitor(missing)
    assert gone.available() == (False, "jetson-stats (jtop) is not installed")
    assert "not installed" in gone.sample(0.0).unavailable["jtop"]

    def service_down():
        raise RuntimeError("The jtop.service is not active")

    assert "not reachable" in JtopMonitor(service_down).available()[1]


def _probe(root: Path, nvml: FakeNvml, jtop: bool = False) -> MachineProbe:
    return MachineProbe(SysfsTree(root), NvmlSession(nvml), lambda: jtop, FakePsutil(), lambda: FakeJtop())


def test_auto_selection_for_machine_and_target():
    no_gpu = FakeNvml(init_error="NVML Shared Library Not Found")
    mons, notes = select_monitors("x86", "auto", _probe(FIXTURES / "orin", no_gpu, jtop=True))
    assert [m.name for m in mons] == ["jetson", "jtop"]
    mons, notes = select_monitors("x86", "auto", _probe(FIXTURES / "x86", FakeNvml()))
    assert [m.name for m in mons] == ["generic"]  # a CPU target is not degraded by a hot discrete GPU
    assert any("runs on the CPU" in n for n in notes)
    mons, _ = select_monitors("gb10", "auto", _probe(FIXTURES / "x86", FakeNvml()))
    assert [m.name for m in mons] == ["nvml", "generic"]
    mons, _ = select_monitors(None, "auto", _probe(FIXTURES / "x86", FakeNvml()))
    assert [m.name for m in mons] == ["nvml", "generic"]


def test_an_explicitly_requested_monitor_that_cannot_read_is_a_config_error():
    probe = _probe(FIXTURES / "x86", FakeNvml(init_error="NVML Shared Library Not Found"))
    with pytest.raises(ConfigError, match="health.monitors.*'nvml'.*NVML Shared Library Not Found"):
        select_monitors("gb10", ["nvml"], probe)
    with pytest.raises(ConfigError, match="'jetson'.*not a Jetson"):
        select_monitors("x86", ["jetson"], probe)
    mons, notes = select_monitors("x86", ["generic"], probe)
    assert [m.name for m in mons] == ["generic"] and "requested" in notes[0]
