"""Child process that owns ur_rtde's RTDEControlInterface (run as a script; stdlib + ur_rtde only).

Why a separate process: ur_rtde's control interface reconnects a dropped socket from its own
receive thread, re-uploads the control script, and (in 1.6.x) can keep reconnecting from two
threads at once and crash; its blocking calls can also wait for minutes. In a child process
the driver can bound every call with a timeout and end a lost session with SIGKILL, which
closes its sockets and nothing reconnects. The parent holds the only pipe: when it disappears
(crash, kill -9), the worker stops the arm and ends the control script before exiting.

Protocol: one JSON object per line each way. Floats round-trip exactly (repr-based JSON).
"""

from __future__ import annotations

import json
import os
import signal
import sys


# ur_rtde prints to std::cout ("Reconnecting..."): keep the protocol on a private copy of fd 1
# and point fd 1 at stderr before ur_rtde is loaded.
_PROTOCOL = os.fdopen(os.dup(1), "w", buffering=1)
os.dup2(2, 1)


def _reply(obj: object) -> bool:
    """False when the parent is gone (broken pipe)."""
    try:
        _PROTOCOL.write(json.dumps(obj) + "\n")
        _PROTOCOL.flush()
        return True
    except OSError:
        return False


def _socket_inodes() -> frozenset[str]:
    """This process's sockets. ur_rtde can only re-establish a dropped session by opening new
    sockets, so a changed set means the session we were given is gone (Linux /proc; elsewhere
    the check is unavailable and returns an empty set)."""
    try:
        names = os.listdir("/proc/self/fd")
    except OSError:
        return frozenset()
    found = set()
    for name in names:
        try:
            target = os.readlink(f"/proc/self/fd/{name}")
        except OSError:
            continue
        if target.startswith("socket:"):
            found.add(target)
    return frozenset(found)


MOTION_OPS = ("servoJ", "setWatchdog")
OTHER_OPS = ("servoStop", "stopJ", "triggerProtectiveStop", "setWatchdog", "isConnected", "stopScript")


def _stop_and_end(ctrl, decel: float) -> None:
    for call in (lambda: ctrl.servoStop(decel), lambda: ctrl.stopJ(decel, False), ctrl.stopScript):
        try:
            call()
        except Exception:  # noqa: BLE001 - best effort on the way out
            pass


def _serve(ctrl, session: frozenset[str]) -> bool:
    """Answer requests until `close` (returns True) or until the parent is gone (False)."""
    last_cycle = None
    for line in sys.stdin:
        request = json.loads(line)
        op = request["op"]
        if op in MOTION_OPS and _socket_inodes() != session:
            reply: dict = {"error": "ur_rtde re-established the control session on its own (its sockets "
                                    "changed); motion is refused on it"}
        elif op == "close":
            _stop_and_end(ctrl, request["decel"])
            _reply({"ok": True})
            return True
        elif op == "servoJ" or op in OTHER_OPS:
            try:
                if op == "servoJ":
                    if last_cycle is not None:
                        ctrl.waitPeriod(last_cycle)  # controller-timed pacing across commands
                    last_cycle = ctrl.initPeriod()
                elif op in ("servoStop", "stopJ"):
                    last_cycle = None
                reply = {"ok": getattr(ctrl, op)(*request.get("args", []))}
            except Exception as exc:  # noqa: BLE001 - reported to the parent
                reply = {"error": f"{type(exc).__name__}: {exc}"}
        else:
            reply = {"error": f"unknown op {op!r}"}
        if not _reply(reply):
            return False
    return False


def main() -> None:
    # Ctrl-C reaches the whole process group; the parent's handler decides what to stop.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    host, frequency, decel = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
    try:
        import rtde_control

        ctrl = rtde_control.RTDEControlInterface(host, frequency)
    except Exception as exc:  # noqa: BLE001 - reported to the parent, which raises a VlaEdgeError
        _reply({"error": f"{type(exc).__name__}: {exc}"})
        os._exit(3)
    _reply({"ok": True})
    if not _serve(ctrl, _socket_inodes()):
        _stop_and_end(ctrl, decel)  # the parent died or hung up without saying goodbye
    # Skip ur_rtde's disconnect (it sleeps and can race its own reconnect thread); exiting closes
    # the sockets, and the control script was ended above.
    os._exit(0)


if __name__ == "__main__":
    main()
