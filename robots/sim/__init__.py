"""MuJoCo simulators of the supported arms (ur3-sim, arx5-sim, arx5-bimanual-sim).

The models are generated from the same `kinematics:` and `hardware_limits:` config the real
drivers and the safety filter use, so a policy, the filter and the simulator agree on geometry and
limits by construction. Importing this package does not import MuJoCo; `robot.make_robot` does.
"""
