"""ExitGuard at interpreter exit, in a child interpreter that falls off the end of its program.

Why a child process: atexit only runs when an interpreter really exits, and the guard's point is
what happens then (teardown while the interpreter still runs; a failing teardown still stops)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

_PROGRAM = """
import sys
from robots.ur3.exit_guard import ExitGuard

log = open(sys.argv[1], "a")
def note(word):
    log.write(word + "\\n"); log.flush()

def stop():
    note("stop")

def teardown():
    note("teardown")
    {teardown_body}

guard = ExitGuard(stop, at_exit={at_exit})
guard.arm()
{after_arm}
"""


def _run(tmp_path: Path, *, teardown_body: str = "pass", at_exit: str = "teardown",
         after_arm: str = "") -> list[str]:
    log = tmp_path / "calls.log"
    source = _PROGRAM.format(teardown_body=teardown_body, at_exit=at_exit, after_arm=after_arm)
    script = tmp_path / "child.py"
    script.write_text(textwrap.dedent(source))
    repo = Path(__file__).resolve().parents[2]
    proc = subprocess.run([sys.executable, str(script), str(log)], cwd=repo, capture_output=True,
                          text=True, timeout=60, env={"PYTHONPATH": str(repo), "PATH": ""})
    assert proc.returncode == 0, proc.stderr
    return log.read_text().split() if log.exists() else []


def test_exit_runs_the_teardown_not_only_the_stop(tmp_path):
    assert _run(tmp_path) == ["teardown"]


def test_without_a_teardown_exit_runs_the_stop(tmp_path):
    assert _run(tmp_path, at_exit="None") == ["stop"]


def test_a_failing_teardown_still_stops_the_arm(tmp_path):
    assert _run(tmp_path, teardown_body="raise RuntimeError('socket gone')") == ["teardown", "stop"]


def test_a_teardown_that_releases_the_guard_at_exit_runs_once(tmp_path):
    # UR3Robot.disconnect releases its own guard; inside the atexit run that must not fail.
    assert _run(tmp_path, teardown_body="guard.release()") == ["teardown"]


def test_a_released_guard_does_nothing_at_exit(tmp_path):
    assert _run(tmp_path, after_arm="guard.release()") == []
