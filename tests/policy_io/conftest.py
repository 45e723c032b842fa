"""The C++ pre/post-processing (vla_edge._policy_io) is required by every Policy; these tests
check it against the NumPy/PIL/sentencepiece-Python code it replaced (python_oracle.py)."""

import pytest

pytest.importorskip("vla_edge._policy_io", reason="vla_edge._policy_io not built (pip install . builds it)")
