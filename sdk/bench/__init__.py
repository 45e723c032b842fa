"""`vla-edge bench`: latency, memory and efficiency of a pack on a target, with ratios against
baselines measured in the same run (never against numbers remembered from elsewhere)."""

from .ceiling import matmul_ceiling
from .measure import BenchResult, run_bench

__all__ = ["BenchResult", "matmul_ceiling", "run_bench"]
