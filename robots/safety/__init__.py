"""The safety filter: the only path from a policy's joint targets to a driver's MotionPort."""

from .filter import FilterResult, Intervention, SafetyError, SafetyFilter
from .limits import FilterLimits

__all__ = ["FilterLimits", "FilterResult", "Intervention", "SafetyError", "SafetyFilter"]
