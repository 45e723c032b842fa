"""vla_edge._policy_io: the Policy's pre/post-processing and pack reading in C++.

One implementation serves Python and the C ABI (native/include/vla_edge_policy.h): Python's
resize-with-pad, prompt tokenisation, state/action (un)normalisation all call it. It is built by
`pip install .` together with the safety filter's core (no ggml needed); without it no Policy
can run, and this says why instead of falling back to a second implementation.
"""

from __future__ import annotations

from types import ModuleType

from .errors import VlaEdgeError


class NativeIOUnavailableError(VlaEdgeError):
    """vla_edge._policy_io is not built: pre/post-processing cannot run."""


def policy_io() -> ModuleType:
    try:
        from vla_edge import _policy_io
    except ImportError as exc:
        raise NativeIOUnavailableError(
            f"vla_edge._policy_io (the C++ pre/post-processing every Policy uses) is not built ({exc}); reinstall "
            "with a C++17 compiler and cmake available and network access to PyPI for the pinned sentencepiece and "
            "rapidyaml sources (VLA_EDGE_BUILD_NATIVE=1 pip install . makes a build failure fatal and shows why)"
        ) from exc
    return _policy_io
