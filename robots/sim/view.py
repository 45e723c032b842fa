"""Look at a simulated robot: write its MJCF, save camera frames of a scripted motion, or open
MuJoCo's interactive viewer (needs a display).

    python -m vla_edge.robots.sim.view arx5-sim --xml /tmp/arx5.xml      # open in MuJoCo `simulate`
    python -m vla_edge.robots.sim.view ur3-sim --frames /tmp/ur3 --seconds 2
    python -m vla_edge.robots.sim.view arx5-bimanual-sim --interactive

The scripted motion is a slow sinusoid of every DOF around the start pose, kept inside the
operating limits; it goes through the same MotionPort a policy's filtered actions use.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from ...errors import VlaEdgeError
from ..config import load_robot_config
from ..registry import create_robot


def _scripted_targets(config, q0: np.ndarray, steps: int) -> np.ndarray:
    lim = config.limits
    lo = np.array(lim.position_min or config.hardware_limits.position_min) + lim.position_margin
    hi = np.array(lim.position_max or config.hardware_limits.position_max) - lim.position_margin
    t = np.arange(steps)[:, None] * config.control_period_s
    phase = np.linspace(0.0, np.pi, config.dof)[None, :]
    amplitude = 0.2 * (hi - lo) / 2
    return np.clip(q0 + amplitude * np.sin(2 * np.pi * 0.25 * t + phase), lo, hi)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m vla_edge.robots.sim.view", description=__doc__.splitlines()[0])
    ap.add_argument("robot", help="ur3-sim, arx5-sim, arx5-bimanual-sim, or a --robot-config YAML")
    ap.add_argument("--xml", type=Path, help="write the generated MJCF here")
    ap.add_argument("--frames", type=Path, help="save PNG camera frames of a scripted motion into this folder")
    ap.add_argument("--seconds", type=float, default=2.0)
    ap.add_argument("--every", type=int, default=10, help="save every Nth control tick")
    ap.add_argument("--interactive", action="store_true", help="open mujoco.viewer (needs a display)")
    args = ap.parse_args(argv)
    try:
        config = load_robot_config(args.robot)
        if not config.driver.endswith("-sim"):
            raise VlaEdgeError(f"{args.robot}: not a simulator (driver {config.driver!r})")
        conn = {**config.connection, "realtime": args.interactive, "render": "off" if not args.frames else "required"}
        robot = create_robot(config.model_copy(update={"connection": conn}), shadow=False)
        robot.connect()
    except VlaEdgeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        if args.xml:
            args.xml.write_text(robot.world.xml)
            print(f"wrote {args.xml}")
        port = robot.open_motion()
        targets = _scripted_targets(config, robot.read_state().q, int(args.seconds / config.control_period_s))
        if args.interactive:
            import time

            import mujoco.viewer

            with mujoco.viewer.launch_passive(robot.world.model, robot.world.data) as viewer:
                for q in targets:
                    port.command_joints(q)
                    with robot.world.lock:
                        viewer.sync()
                    time.sleep(config.control_period_s)
        elif args.frames:
            from PIL import Image

            args.frames.mkdir(parents=True, exist_ok=True)
            for k, q in enumerate(targets):
                port.command_joints(q)
                if k % args.every == 0:
                    for name, img in robot.read_cameras().items():
                        Image.fromarray(img).save(args.frames / f"{name}_{k:05d}.png")
            print(f"saved frames to {args.frames}")
        port.stop()
    except VlaEdgeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    finally:
        robot.disconnect()
    return 0


if __name__ == "__main__":
    sys.exit(main())
