"""Native tests need vla_edge._native; without it they are skipped with the reason."""

import pytest

pytest.importorskip("vla_edge._native", reason="native module not built (pip install . builds it)")
