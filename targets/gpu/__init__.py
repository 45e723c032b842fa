"""GPU targets `cuda`, `gb10`, `orin`: one folder, an ahead-of-time half (engine_build.py) and a
runtime half (engine_runtime.py, target.py); see docs/gpu.md."""
