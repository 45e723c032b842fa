"""Ctrl-C and plain interpreter exit while streaming: the driver's own handlers must stop the arm.

The streaming program runs in a child process with no try/finally and no `with` block, so the
only thing that can send the stop is the driver's SIGINT handler / atexit hook.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

pytest.importorskip("rtde_control")
sys.path.insert(0, str(Path(__file__).resolve().parent))

from ur_emulator import EmulatorHandle  # noqa: E402

CHILD = textwrap.dedent(
    """
    import sys
    sys.path.insert(0, {here!r})
    from ur_emulator.testing import ur3_config
    from vla_edge.robots.ur3.driver import UR3Robot

    robot = UR3Robot(ur3_config({host!r}), shadow=False)
    robot.connect()
    port = robot.open_motion()
    q = robot.read_state().q
    print("STREAMING", flush=True)
    for i in range({ticks}):
        q[0] += 0.0005
        port.command_joints(q)
    print("DONE", flush=True)
    """
)


def _run_child(host: str, ticks: int) -> subprocess.Popen:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
    code = CHILD.format(here=str(Path(__file__).resolve().parent), host=host, ticks=ticks)
    return subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def _stop_follows_last_motion(log: list[dict]) -> None:
    servo = [i for i, e in enumerate(log) if e["name"] == "servoJ"]
    stops = [i for i, e in enumerate(log) if e["name"] == "servoStop"]
    assert servo, "the child never streamed"
    assert stops and stops[-1] > servo[-1], [e["name"] for e in log[-8:]]


def test_sigint_while_streaming_stops_then_raises_keyboard_interrupt():
    with EmulatorHandle() as emu:
        child = _run_child(emu.host, ticks=100_000)  # ~13 minutes at 125 Hz: only SIGINT ends it
        try:
            assert child.stdout.readline().strip() == "STREAMING"
            deadline = time.monotonic() + 5
            while len(emu.commands(name="servoJ")) < 20 and time.monotonic() < deadline:
                time.sleep(0.05)
            child.send_signal(signal.SIGINT)
            _, err = child.communicate(timeout=15)
        finally:
            if child.poll() is None:
                child.kill()
        log = emu.log()
    assert child.returncode != 0 and "KeyboardInterrupt" in err
    _stop_follows_last_motion(log)


def test_falling_off_the_end_of_the_program_stops_via_atexit():
    with EmulatorHandle() as emu:
        child = _run_child(emu.host, ticks=25)
        out, err = child.communicate(timeout=30)
        log = emu.log()
    assert child.returncode == 0, err
    assert "DONE" in out
    _stop_follows_last_motion(log)


def test_killed_driver_process_still_stops_the_arm():
    """kill -9 of the process running the driver: no Python code runs there any more, but the
    control worker sees its pipe close and stops the arm and the control script itself."""
    with EmulatorHandle() as emu:
        child = _run_child(emu.host, ticks=100_000)
        try:
            assert child.stdout.readline().strip() == "STREAMING"
            deadline = time.monotonic() + 5
            while len(emu.commands(name="servoJ")) < 20 and time.monotonic() < deadline:
                time.sleep(0.05)
            child.kill()
            child.wait(timeout=5)
            deadline = time.monotonic() + 5
            while not emu.commands(name="stopScript") and time.monotonic() < deadline:
                time.sleep(0.05)
        finally:
            if child.poll() is None:
                child.kill()
        log = emu.log()
    _stop_follows_last_motion(log)
    assert [e["name"] for e in log].index("stopScript") > [e["name"] for e in log].index("servoStop")
