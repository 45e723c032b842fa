"""Run the emulator as its own process (ur_rtde's constructors hold the GIL while they wait for
the controller, so the controller cannot live in the test's interpreter).

Prints `READY <control-port>` once every service listens; the control port speaks JSON lines
(see `handle.EmulatorHandle`) so tests can read the command log and inject faults.
"""

from __future__ import annotations

import argparse
import json
import socket
import sys
import threading

import numpy as np

from .controller import CB3, E_SERIES, Controller
from .servers import DashboardServer, RTDEServer, ScriptServer, run_clock


def main() -> None:
    parser = argparse.ArgumentParser(description="UR controller emulator for ur_rtde tests (loopback only)")
    parser.add_argument("--host", default="127.0.0.1", help="a loopback address (127.0.0.0/8)")
    parser.add_argument("--series", choices=("cb3", "e"), default="cb3")
    parser.add_argument("--q0", type=float, nargs=6, default=[0.0, -1.57, 1.57, -1.57, -1.57, 0.0])
    parser.add_argument("--rtde-port", type=int, default=30004)
    parser.add_argument("--dashboard-port", type=int, default=29999)
    parser.add_argument("--script-port", type=int, default=30003)
    args = parser.parse_args()
    if not args.host.startswith("127."):
        parser.error("the emulator only listens on loopback addresses (127.0.0.0/8)")

    controller = Controller(CB3 if args.series == "cb3" else E_SERIES, np.array(args.q0))
    rtde = RTDEServer(controller, args.host, args.rtde_port)
    dashboard = DashboardServer(controller, args.host, args.dashboard_port)
    script = ScriptServer(controller, args.host, args.script_port)
    listeners = {"rtde": rtde.listener, "dashboard": dashboard.listener, "script": script.listener}
    for listener in listeners.values():
        listener.open()
    stop = threading.Event()
    threading.Thread(target=run_clock, args=(controller, rtde, stop), daemon=True, name="clock").start()

    control = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    control.bind(("127.0.0.1", 0))
    control.listen(1)
    print(f"READY {control.getsockname()[1]}", flush=True)
    conn, _ = control.accept()
    reader = conn.makefile("r")
    for line in reader:
        request = json.loads(line)
        op = request["op"]
        reply: object = True
        if op == "log":
            with controller.lock:
                reply = list(controller.log)
        elif op == "state":
            reply = {**controller.snapshot(), "accepted": {k: v.accepted for k, v in listeners.items()},
                     "output_frequencies": list(rtde.output_frequencies)}
        elif op == "drop":
            if request.get("only") == "control":
                controller.record("controller", "control_connection_dropped", "other")
                rtde.listener.close_all(only=rtde.control_sockets())
            else:
                controller.record("controller", "connections_dropped", "other")
                for listener in listeners.values():
                    listener.close_all()
        elif op == "listen":
            for listener in listeners.values():
                listener.open() if request["on"] else listener.close()
        elif op == "protective_stop":
            controller.protective_stop()
        elif op == "shutdown":
            stop.set()
            conn.sendall(b"true\n")
            break
        conn.sendall(json.dumps(reply).encode() + b"\n")
    for listener in listeners.values():
        listener.close()
        listener.close_all()
    sys.exit(0)


if __name__ == "__main__":
    main()
