"""HealthGovernor: states from temperatures, trip points, throttle flags and clocks; hysteresis;
broken or missing sensors never read as cool; config errors name their key."""

from __future__ import annotations

import logging
import sys
import threading
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from health_fakes import FIXTURES, FakePsutil, ManualTime, ScriptedMonitor, copy_tree, write  # noqa: E402

from vla_edge.errors import ConfigError  # noqa: E402
from vla_edge.health.config import HealthConfig, parse_health_config  # noqa: E402
from vla_edge.health.governor import HealthGovernor, from_run_config  # noqa: E402
from vla_edge.health.jetson import JetsonMonitor  # noqa: E402
from vla_edge.health.sample import HealthSample  # noqa: E402
from vla_edge.health.sysfs import SysfsTree  # noqa: E402


def governor(script, cfg: dict | None = None, throttles=(), clock=None):
    clock = clock or ManualTime()
    mon = ScriptedMonitor(clock, script, throttles=list(throttles))
    gov = HealthGovernor([mon], parse_health_config({"sample_period_s": 0.1, "recover_hold_s": 1.0, **(cfg or {})}),
                         clock=clock, background=False)
    return gov, clock


def run_until(gov, clock, t_end, dt=0.1):
    """Advance the clock in steps; returns [(t, limits)] at each step."""
    out = []
    while clock.t < t_end - 1e-9:
        out.append((clock.t, gov.current_limits()))
        clock.t = round(clock.t + dt, 6)
    return out


def first_time(trace, state, after=0.0, t0=100.0):
    """Seconds from the start at which `state` is first reported (at or after `after`)."""
    return next(round(t - t0, 3) for t, lim in trace if lim.state == state and t - t0 >= after)


def test_states_follow_temperature_with_hysteresis_and_hold():
    # nominal 50 -> 88 throttled -> 82 (in the 80..85 band: stays) -> 78 (below 85-5) -> warm after 1 s hold
    gov, clock = governor([(0, 50.0), (1.0, 88.0), (2.0, 82.0), (3.0, 78.0), (5.0, 60.0)])
    trace = run_until(gov, clock, 107.0)
    assert first_time(trace, "throttled") == pytest.approx(1.0)
    assert first_time(trace, "warm") == pytest.approx(4.0)  # 3.0 + recover_hold_s
    assert first_time(trace, "nominal", after=1.0) == pytest.approx(6.0)  # 60 < 75 - 5 from 5.0, held 1 s
    assert [(t.from_state, t.to_state) for t in gov.transitions] == [
        ("nominal", "throttled"), ("throttled", "warm"), ("warm", "nominal")]
    up = gov.transitions[0].cause
    assert "soc-thermal 88.0 C >= throttled 85.0 C" in up
    down = gov.transitions[1].cause
    assert "recovered" in down and "still soc-thermal 78.0 C >= warm 75.0 C - 5 C hysteresis" in down
    limits = dict(trace)
    assert limits[101.5].velocity_scale == 0.5 and limits[101.5].inference_rate_scale == 0.5
    assert limits[101.5].accept_new_chunks and "88.0 C" in limits[101.5].reason


def test_calm_interrupted_restarts_the_hold():
    gov, clock = governor([(0, 88.0), (1.0, 60.0), (1.5, 84.0), (1.6, 60.0)])
    trace = run_until(gov, clock, 104.0)
    # 84 is below 85 (no escalation) but above 80: the calm that began at 1.0 is broken at 1.5.
    assert first_time(trace, "nominal", after=0.5) == pytest.approx(2.6)


def test_critical_refuses_chunks_and_comes_down_only_to_nominal():
    gov, clock = governor([(0, 50.0), (0.5, 97.0), (1.0, 72.0), (3.0, 60.0)])
    trace = run_until(gov, clock, 105.0)
    crit = [lim for t, lim in trace if lim.state == "critical"]
    assert crit and all(not lim.accept_new_chunks for lim in crit)
    assert crit[0].velocity_scale == 0.25 and crit[0].inference_rate_scale == 0.0
    # 72 C calls for "warm" on the way down, which critical does not take: it waits for nominal.
    assert [tr.to_state for tr in gov.transitions] == ["critical", "nominal"]
    assert first_time(trace, "nominal", after=0.5) == pytest.approx(4.0)
    assert gov.recovery_wait_s == 120.0


def test_trip_points_lower_thresholds(tmp_path):
    root = copy_tree("orin", tmp_path)
    write(root, "sys/class/thermal/thermal_zone1/temp", "91000\n")  # gpu-thermal 91 C
    clock = ManualTime()
    mon = JetsonMonitor(SysfsTree(root), FakePsutil())
    gov = HealthGovernor([mon], HealthConfig(), clock=clock, background=False)
    assert gov.current_limits().state == "throttled"  # 91 < critical 95 ...
    write(root, "sys/class/thermal/thermal_zone1/trip_point_0_temp", "95000\n")  # critical trip 95
    clock.t += 1
    lim = gov.current_limits()
    assert lim.state == "critical" and "critical 90.0 C" in lim.reason  # ... but >= trip 95 - 5 margin
    cfg = parse_health_config({"use_trip_points": False})
    gov2 = HealthGovernor([mon], cfg, clock=clock, background=False)
    assert gov2.current_limits().state == "throttled"


def test_throttle_flags_map_to_states_by_kind():
    gov, clock = governor([(0, 50.0)], throttles=[(1.0, 2.0, "power"), (3.0, 4.0, "thermal")])
    trace = run_until(gov, clock, 106.0)
    assert first_time(trace, "warm") == pytest.approx(1.0)  # power cap: warm (log + warn)
    assert first_time(trace, "throttled") == pytest.approx(3.0)
    assert "throttle flag gpu0: scripted_thermal (thermal)" in gov.transitions[-2].cause
    assert gov.transitions[-1].to_state == "nominal"
    gov, clock = governor([(0, 50.0)], {"throttle_flags": {"power": "critical"}}, throttles=[(0.0, 1.0, "power")])
    assert gov.current_limits().state == "critical"


def test_no_sensor_is_never_nominal_and_a_lost_sensor_keeps_its_level():
    gov, clock = governor([(0, None)])
    lim = gov.current_limits()
    assert lim.state == "warm" and "no temperature sensor readable" in lim.reason and "EIO" in lim.reason
    gov, clock = governor([(0, 50.0), (1.0, 88.0), (2.0, None)])
    trace = run_until(gov, clock, 106.0)
    assert first_time(trace, "throttled") == pytest.approx(1.0)
    assert all(lim.state == "throttled" for t, lim in trace if t >= 101.0)  # lost while hot: stays hot
    assert "sensor lost: soc-thermal (read error EIO (scripted))" in trace[-1][1].reason
    gov, clock = governor([(0, 50.0), (1.0, None)], {"no_sensor_state": "throttled"})
    trace = run_until(gov, clock, 102.0)
    assert trace[-1][1].state == "throttled"


def test_a_monitor_that_raises_fails_closed():
    class Broken:
        name = "broken"

        def sample(self, now):
            raise RuntimeError("driver exploded")

        def available(self):
            return True, ""

    gov = HealthGovernor([Broken()], HealthConfig(), clock=ManualTime(), background=False)
    lim = gov.current_limits()
    assert lim.state == "warm" and "driver exploded" in lim.reason


def test_broken_fixture_tree_reads_the_one_good_zone_and_nothing_as_cool():
    clock = ManualTime()
    gov = HealthGovernor([JetsonMonitor(SysfsTree(FIXTURES / "broken"), FakePsutil())], HealthConfig(),
                         clock=clock, background=False)
    assert gov.current_limits().state == "nominal"  # ok-thermal 61 C is readable and cool
    assert set(gov.last_sample.temperatures_c) == {"ok-thermal"}


def test_clock_cap_drop_under_the_same_power_mode_is_throttling(tmp_path):
    root = copy_tree("orin", tmp_path)
    clock = ManualTime()
    gov = HealthGovernor([JetsonMonitor(SysfsTree(root), FakePsutil())], HealthConfig(), clock=clock, background=False)
    assert gov.current_limits().state == "nominal"
    write(root, "sys/class/devfreq/17000000.ga10b/max_freq", "612000000\n")  # capped to 47 %
    clock.t += 1
    lim = gov.current_limits()
    assert lim.state == "throttled" and "clock cap dropped: devfreq:17000000.ga10b 612 MHz" in lim.reason
    # A new power mode caps clocks on purpose: the baseline restarts, no throttle.
    write(root, "var/lib/nvpmodel/status", "pmode:0001\n")
    gov2 = HealthGovernor([JetsonMonitor(SysfsTree(root), FakePsutil())], HealthConfig(), clock=clock, background=False)
    assert gov2.current_limits().state == "nominal"


def test_memory_headroom_warns():
    clock = ManualTime()
    mon = JetsonMonitor(SysfsTree(FIXTURES / "orin"), FakePsutil(total=100, available=3))
    lim = HealthGovernor([mon], HealthConfig(), clock=clock, background=False).current_limits()
    assert lim.state == "warm" and "memory headroom 3.0% < 5%" in lim.reason


def test_transitions_are_logged_with_their_cause(caplog):
    gov, clock = governor([(0, 50.0), (0.5, 90.0)])
    with caplog.at_level(logging.WARNING, logger="vla_edge.health"):
        run_until(gov, clock, 101.0)
    assert any("health nominal -> throttled: soc-thermal 90.0 C" in r.getMessage() for r in caplog.records)


def test_background_sampling_never_blocks_the_caller_and_stale_samples_are_not_cool():
    release = threading.Event()

    class Slow:
        name = "slow"
        calls = 0

        def sample(self, now):
            Slow.calls += 1
            if Slow.calls > 1:
                release.wait(5.0)  # a hung sensor read
            return HealthSample(now, ("slow",), {"soc": 50.0})

        def available(self):
            return True, ""

    gov = HealthGovernor([Slow()], parse_health_config({"sample_period_s": 0.05, "stale_after_s": 0.3}))
    try:
        assert gov.current_limits().state == "nominal"
        worst = 0.0
        deadline = time.monotonic() + 3.0
        while gov.current_limits().state == "nominal" and time.monotonic() < deadline:
            t0 = time.perf_counter()
            gov.current_limits()
            worst = max(worst, time.perf_counter() - t0)
            time.sleep(0.01)
        lim = gov.current_limits()
        assert lim.state == "warm" and "stale" in lim.reason
        assert worst < 0.05  # the loop never waited for the hung read
    finally:
        release.set()
        gov.close()


def test_config_errors_name_the_key_and_disabled_means_no_governor():
    for bad, where in (({"bogus": 1}, "health.bogus"), ({"temperature_c": {"warm": 90}}, "health.temperature_c"),
                       ({"critical": {"velocity_scale": 0}}, "health.critical.velocity_scale"),
                       ({"throttled": {"inference_rate_scale": 2, "velocity_scale": 0.5}},
                        "health.throttled.inference_rate_scale"),
                       ({"monitors": ["thermometer"]}, "health.monitors"),
                       ({"sample_period_s": 2, "stale_after_s": 1}, "health")):
        with pytest.raises(ConfigError) as err:
            parse_health_config(bad)
        assert str(err.value).startswith(where)
    assert from_run_config({"enabled": False}) is None


def test_limits_per_state_come_from_the_config():
    gov, clock = governor([(0, 80.0)], {"warm": {"inference_rate_scale": 0.8, "velocity_scale": 0.9}})
    lim = gov.current_limits()
    assert (lim.state, lim.inference_rate_scale, lim.velocity_scale, lim.accept_new_chunks) == ("warm", 0.8, 0.9, True)
    gov, clock = governor([(0, 86.0)], {"throttled": {"inference_rate_scale": 0.25, "velocity_scale": 0.4},
                                         "zones": {"soc-*": {"warm": 90, "throttled": 95, "critical": 99}}})
    assert gov.current_limits().state == "nominal"  # the zone override raised this zone's thresholds
    gov, clock = governor([(0, 86.0)], {"ignore_zones": ["soc-thermal"]})
    assert gov.current_limits().state == "warm"  # its only zone ignored: no usable sensor, not cool
