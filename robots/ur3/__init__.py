"""Universal Robots UR3 / UR3e: shipped config.yaml (limits, kinematics) and the RTDE driver."""
