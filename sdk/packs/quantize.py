"""`vla-edge pack quantize`: re-quantise a pack's weights with ggml's own quantisers.

Every tensor is read from the source pack (dequantised to float32 if it is already quantised),
cropped to its logical shape, re-padded as the recipe's plan says and quantised by ggml itself
(through the native module), one tensor at a time, so a full-size pack needs memory for its
largest tensor only. The output is written through `PackBuilder`: a complete pack (manifest,
checksums, refreshed golden) or nothing.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import PackError, TargetUnavailableError
from .gguf_io import GGUFFile, PlannedTensor, write_gguf
from .manifest import W4A4
from .pack import Pack
from .recipes import TensorPlan, plan_pack
from .writer import PackBuilder

FLOAT_STORAGE = ("F32", "F16")


def _native_quantize() -> "Quantizer":
    try:
        from .. import _native
    except ImportError as exc:
        raise TargetUnavailableError(
            "pack quantize uses ggml's own quantisers from the native module, which is not built "
            f"({exc}); reinstall with VLA_EDGE_BUILD_NATIVE=1 to see why the build failed") from exc
    return _native.quantize


Quantizer = Callable[..., np.ndarray]  # (rows [n, n_per_row] float32, ggml type, importance [n_per_row] | None)
K_QUANT_TYPES = ("Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K")  # the ggml quantisers that use an importance matrix


def _producer(src: GGUFFile, name: str, logical: tuple[int, ...], plan: TensorPlan,
              quantize: Quantizer, importance: np.ndarray | None = None) -> Callable[[], np.ndarray]:
    def produce() -> np.ndarray:
        values = src.float32(name)
        # a source tensor may itself be stored padded: the extra input columns are zeros
        values = values[(slice(None),) * (values.ndim - 1) + (slice(0, logical[-1]),)]
        if values.shape != logical:
            raise PackError(f"{src.path}:{name}", f"shape {list(values.shape)}, expected {list(logical)}")
        pad = plan.stored_shape[-1] - logical[-1]
        if pad:
            values = np.pad(values, [(0, 0)] * (values.ndim - 1) + [(0, pad)])
        if plan.ggml_type in FLOAT_STORAGE:
            return values
        weights = None if importance is None else padded_importance(importance, plan.stored_shape[-1])
        return _quantize_rows(values.reshape(-1, plan.stored_shape[-1]), plan.ggml_type, quantize, weights)
    return produce


def padded_importance(importance: np.ndarray, n_stored: int) -> np.ndarray:
    """The imatrix row for a tensor stored with `n_stored` input columns. Zero-padded columns hold
    zeros whatever their weight, so they get the mean importance (a block of all-zero importances
    would leave ggml's weighted fit without a scale); channels that never fired get a floor of
    1e-6 x the mean for the same reason (their weights still count, a million times less)."""
    mean = float(np.mean(importance))
    if not np.isfinite(mean) or mean <= 0:
        raise PackError("--calib", "importance matrix is all zero or not finite")
    row = np.maximum(importance.astype(np.float32), np.float32(1e-6 * mean))
    return np.concatenate([row, np.full(n_stored - row.size, mean, np.float32)])


def _quantize_rows(rows: np.ndarray, ggml_type: str, quantize: Quantizer,
                   importance: np.ndarray | None = None) -> np.ndarray:
    """Quantise row blocks on every CPU (the native quantiser releases the GIL; rows are independent)."""
    def run(block: np.ndarray) -> np.ndarray:
        block = np.ascontiguousarray(block, np.float32)
        return quantize(block, ggml_type) if importance is None else quantize(block, ggml_type, importance)

    workers = len(os.sched_getaffinity(0))
    if workers == 1 or rows.shape[0] < 4 * workers:
        return run(rows)
    with ThreadPoolExecutor(workers) as pool:
        parts = list(pool.map(run, np.array_split(rows, workers * 4)))
    return np.concatenate(parts)


def importance_matrices(src: Pack, plans: dict[str, TensorPlan], calib_path: Path) -> tuple[dict[str, np.ndarray], dict]:
    """Per K-quant tensor its imatrix row from CALIB, after refusing a file that does not fit."""
    from vla_edge.calibration.calibfile import load_calibration
    from vla_edge.calibration.matching import check_matches

    from .hashing import sha256_file

    calib = load_calibration(calib_path)
    needed = [name for name, plan in plans.items() if plan.ggml_type in K_QUANT_TYPES]
    check_matches(calib, src, needed)
    rows = {name: calib.tensors[name].importance() for name in needed if name in calib.tensors}  # unused: plain
    provenance = {"file": str(Path(calib_path).resolve()), "sha256": sha256_file(Path(calib_path)),
                  "samples": len(calib.header["data"]["calibration"]), "tensors_weighted": len(rows),
                  "target": calib.header["target"]}
    return rows, provenance


def quantize_pack(
    src_dir: str | Path,
    recipe: str,
    out_dir: str | Path,
    overwrite: bool = False,
    golden: bool | None = None,
    on_tensor: Callable[[str, int], None] | None = None,
    calib: str | Path | None = None,
) -> Path:
    """Write `out_dir` = the pack at `src_dir` with its weights re-quantised by `recipe`.

    golden: record a fresh golden output on the reference target (default: when the source pack
    has one; a full-size golden takes minutes on a CPU).
    calib: a `vla-edge calibrate` file collected on this very pack: its importance matrix weights
    the K-quant rounding error per input channel (llama.cpp's imatrix)."""
    src = Pack.open(src_dir, check="sha256")
    if src.manifest.quantization.w4a4 is not None:
        raise PackError(str(src.dir / "pack.yaml"), "the pack holds W4A4 layers (quantization.w4a4), which GGUF "
                                                    "recipes cannot re-quantise; quantize its fp base pack instead")
    specs = src.family.tensor_specs(src.config)
    plans = plan_pack(specs, recipe)
    quantize = _native_quantize()
    importance, calib_info = importance_matrices(src, plans, Path(calib)) if calib is not None else ({}, None)
    weights = src.weights
    missing = [name for name in specs if name not in weights.tensor_infos()]
    if missing:
        raise PackError(str(src.weights_path), f"tensor '{missing[0]}' is missing (run `vla-edge pack verify`)")
    planned = [PlannedTensor(name, plans[name].stored_shape, plans[name].ggml_type,
                             _producer(weights, name, specs[name].shape, plans[name], quantize, importance.get(name)))
               for name in specs]
    m = src.manifest
    return write_derived_pack(
        src, out_dir, planned, recipe, m.targets, overwrite=overwrite, golden=golden, on_tensor=on_tensor,
        source={"quantized_from": m.name, "parent_weights_sha256": m.files.weights.sha256,
                "parent_recipe": m.quantization.recipe, "quantizer": "ggml (vla_edge._native.quantize)",
                **({"calibration": calib_info} if calib_info else {})},
        quant_exceptions={name: p.note for name, p in plans.items() if p.note})


def write_derived_pack(src: Pack, out_dir: str | Path, planned: list[PlannedTensor], recipe: str, targets: list[str],
                       source: dict[str, Any], quant_exceptions: dict[str, str], overwrite: bool = False,
                       golden: bool | None = None, on_tensor: Callable[[str, int], None] | None = None,
                       w4a4: W4A4 | None = None) -> Path:
    """Write `out_dir`: `src` with its weights replaced by `planned` (same tokenizer, norm stats,
    spaces and cameras), named `<src name>-<recipe>`, atomically through PackBuilder. golden:
    record a fresh golden on the reference target (default: when `src` has one)."""
    m = src.manifest
    arch, metadata = src.family.gguf_header(src.config)
    want_golden = (m.golden is not None) if golden is None else golden
    with PackBuilder(out_dir, overwrite=overwrite) as builder:
        write_gguf(builder.staging / m.files.weights.path, arch, metadata, planned,
                   on_tensor=(lambda t: on_tensor(t.name, t.n_bytes)) if on_tensor else None)
        for entry in (m.files.tokenizer, m.files.norm_stats):
            shutil.copyfile(src.dir / entry.path, builder.staging / entry.path)
        return builder.finish(
            name=f"{m.name}-{recipe}", family=m.family, config=m.config, recipe=recipe, targets=list(targets),
            state_space=m.state_space.model_dump(), action_space=m.action_space.model_dump(),
            cameras=m.cameras, required_cameras=m.required_cameras, default_prompt=m.default_prompt,
            source=source, golden_seed=0 if want_golden else None,
            weights=m.files.weights.path, tokenizer=m.files.tokenizer.path, norm_stats=m.files.norm_stats.path,
            quant_exceptions=quant_exceptions, w4a4=w4a4,
        )


def planned_bytes(src_dir: str | Path, recipe: str) -> int:
    """Size of the weights the recipe will write (for progress bars)."""
    src = Pack.open(src_dir, check="size")
    plans = plan_pack(src.family.tensor_specs(src.config), recipe)
    return sum(PlannedTensor(n, p.stored_shape, p.ggml_type, lambda: np.empty(0)).n_bytes for n, p in plans.items())
