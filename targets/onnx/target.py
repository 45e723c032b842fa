"""`onnx` target: pi0.5 exported to three ONNX graphs and run with onnxruntime (CPU).

Why it exists: the ONNX graphs are what a TensorRT engine is built from (`orin`, `gb10`), and
here they can be checked with onnxruntime against the reference on every pack the reference
runs. As a target it is also a portable fp32 runtime wherever onnxruntime runs. Weights are the
pack's tensors dequantised to float32, so it runs any pack the reference runs (`RUNS_PACKS_OF`).
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from vla_edge.errors import PackError, TargetUnavailableError
from vla_edge.targets.reference import ops
from vla_edge.targets.reference.pi05_model import Pi05Reference, PrefixCache

from ..base import Backend, BackendResult, check_threads

RUNS_PACKS_OF = "reference"


def availability() -> tuple[bool, str]:
    try:
        import onnx
        import onnxruntime
    except ImportError as exc:
        return False, f"onnx/onnxruntime not installed ({exc}); pip install 'vla-edge[onnx]'"
    return True, f"onnxruntime {onnxruntime.__version__} on CPU, fp32 graphs (onnx {onnx.__version__})"


class OnnxPi05(Pi05Reference):
    """The reference's pipeline (embedding, Euler loop, timings) with its three heavy stages
    replaced by onnxruntime sessions over the exported graphs."""

    def __init__(self, pack: Any, sessions: dict[str, Any], weights):
        super().__init__(pack.config, weights)
        self.sessions = sessions

    def vision(self, image: np.ndarray) -> np.ndarray:
        return self.sessions["vision"].run(["image_tokens"], {"images": image[None].astype(np.float32)})[0][0]

    def prefix_cache(self, prefix: np.ndarray) -> PrefixCache:
        keys, values = self.sessions["prefix"].run(
            ["keys", "values"], {"prefix": prefix.astype(np.float32), "positions": np.arange(len(prefix), dtype=np.int64)})
        return PrefixCache(list(keys), list(values))

    def velocity(self, x_t: np.ndarray, t: float, cache: PrefixCache, flow=None) -> np.ndarray:
        cfg = self.cfg
        emb = ops.sinusoidal_time(t, cfg.expert.hidden_size, cfg.time_min_period, cfg.time_max_period)
        feeds = {"x_t": x_t.astype(np.float32), "time_emb": emb,
                 "positions": (cache.length + np.arange(len(x_t))).astype(np.int64),
                 "keys": np.stack(cache.keys), "values": np.stack(cache.values)}
        return self.sessions["expert"].run(["velocity"], feeds)[0]


def _read_export(onnx_dir: Path, pack: Any) -> dict:
    from .export import read_export_description

    description = read_export_description(onnx_dir)
    if description.get("pack") != pack.manifest.name:
        raise PackError(str(onnx_dir / "onnx_export.json"),
                        f"exported from pack '{description.get('pack')}', not '{pack.manifest.name}'")
    return description


class OnnxBackend(Backend):
    name = "onnx"

    def __init__(self, pack: Any, onnx_dir: str | Path | None = None, threads: int | None = None):
        import onnxruntime as ort

        from .pi05_export import export_pi05

        if threads is not None:
            check_threads(threads)
        self._tmp = None
        if onnx_dir is None:  # export now into a private folder that lives as long as the backend
            self._tmp = tempfile.TemporaryDirectory(prefix="vla-edge-onnx-")
            onnx_dir = Path(self._tmp.name)
            description = export_pi05(pack, onnx_dir)
        else:
            onnx_dir = Path(onnx_dir)
            description = _read_export(onnx_dir, pack)
        options = ort.SessionOptions()
        if threads is not None:
            options.intra_op_num_threads = threads
        sessions = {stage: ort.InferenceSession(str(onnx_dir / name), options, providers=["CPUExecutionProvider"])
                    for stage, name in description["files"].items()}
        self.description = {**description, "dir": str(onnx_dir), "threads": threads or "onnxruntime default"}
        self.model = OnnxPi05(pack, sessions, pack.weights.float32)

    def sample_actions(self, inputs) -> BackendResult:
        actions, timings = self.model.sample_actions(inputs)
        return BackendResult(actions.astype(np.float32), timings)

    def describe(self) -> dict[str, Any]:
        return {"implementation": "onnxruntime CPU, fp32 ONNX graphs (vision, prefix, expert step)", **self.description}

    def close(self) -> None:
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None


def create_backend(pack: Any, onnx_dir: str | Path | None = None, threads: int | None = None, **options: Any) -> OnnxBackend:
    if options:
        raise TargetUnavailableError(f"onnx target got unknown options {sorted(options)} (known: onnx_dir, threads)")
    return OnnxBackend(pack, onnx_dir=onnx_dir, threads=threads)
