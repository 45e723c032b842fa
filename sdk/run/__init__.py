"""`vla-edge run`: cameras -> policy -> action schedule -> safety filter -> robot, with a run directory.

Modules by concern: cameras (image sources), mapping (policy names <-> robot joints), schedule
(chunk timing, interpolation, latency compensation), inference (the worker that produces chunks),
clock (real or simulated time), loop (the control loop and watchdogs), rundir (logs and summary),
config (the run YAML), session (building all of it in an order that fails before anything moves).
"""
