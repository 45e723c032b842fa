"""The simulated UR3 the run tests drive in fast mode: the simulator is the clock (no real-time
waits) and cameras render small, so a run of a few sim seconds takes seconds of wall time."""

UR3_SIM_FAST_YAML = """robot: ur3-sim
connection: {realtime: false, render: auto, image_size: [48, 48], initial_q: [0.0, -1.2, 1.0, -1.4, -1.5, 0.0],
             operator: null}  # the arm stays put (no scripted operator, even with the demo pack)
"""
