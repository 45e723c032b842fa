"""TensorRT engines from a checked ONNX export (`vla-edge pack export-onnx`): the build step of
the planned `orin` / `gb10` targets.

NOT RUN IN THIS WORKPLACE: TensorRT cannot be installed here (no NVIDIA driver on the development
machines, and the GPU machine has no TensorRT). The code follows the documented TensorRT 8.6 /
10.x Python API (Builder, OnnxParser.parse_from_file, optimization profiles, BuilderConfig
flags, build_serialized_network); tests check its own logic (shape ranges, flags, refusals, no
partial output) against a stand-in module, not TensorRT itself.

Shapes: one optimization profile per engine, covering 1..max_images cameras and prefixes from
one image + BOS up to max_images images + the longest prompt; opt is the pack's camera count
with a 48-token prompt. Precision: fp32 or fp16. INT8 is refused: it needs calibration images
from the robot's own cameras (or Q/DQ nodes from a quantised pack), which this build cannot
invent.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from vla_edge.errors import PackError, TargetUnavailableError
from vla_edge.staging import atomic_dir
from vla_edge.targets.onnx.export import read_export_description

PRECISIONS = ("fp32", "fp16")
OPT_PROMPT_TOKENS = 48


def import_tensorrt():
    try:
        import tensorrt
    except ImportError as exc:
        raise TargetUnavailableError(
            f"TensorRT is not installed ({exc}). It comes with JetPack on Jetson Orin and as the 'tensorrt' wheel "
            "on x86 machines with an NVIDIA GPU; it cannot be installed in the vla-edge development workplace, so "
            "engine builds have not been run there (the ONNX export they start from is checked with onnxruntime)") from exc
    return tensorrt


def profiles(description: dict[str, Any]) -> dict[str, dict[str, tuple[tuple[int, ...], ...]]]:
    """stage -> input name -> (min, opt, max) shapes."""
    s, n_max = description["shapes"], description["max_images"]
    patches, size = s["patches_per_image"], s["image_size"]
    t_min = patches + 1
    t_max = n_max * patches + s["max_prompt_tokens"]
    t_opt = min(t_max, n_max * patches + OPT_PROMPT_TOKENS)

    def kv(t: int) -> tuple[int, ...]:
        return (s["layers"], t, s["kv_heads"], s["head_dim"])

    return {
        "vision": {"images": ((1, size, size, 3), (n_max, size, size, 3), (n_max, size, size, 3))},
        "prefix": {"prefix": ((t_min, s["llm_hidden"]), (t_opt, s["llm_hidden"]), (t_max, s["llm_hidden"])),
                   "positions": ((t_min,), (t_opt,), (t_max,))},
        "expert": {"keys": (kv(t_min), kv(t_opt), kv(t_max)), "values": (kv(t_min), kv(t_opt), kv(t_max))},
    }


def _network_flags(trt) -> int:
    flag = getattr(trt.NetworkDefinitionCreationFlag, "EXPLICIT_BATCH", None)  # required by 8.6, implied by 10
    return 0 if flag is None else 1 << int(flag)


def _build_one(trt, logger, onnx_path: Path, shapes: dict, precision: str, workspace_bytes: int) -> bytes:
    builder = trt.Builder(logger)
    network = builder.create_network(_network_flags(trt))
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):  # from the path, so external weight files are found
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise PackError(str(onnx_path), f"TensorRT's ONNX parser refused it: {errors or 'no details'}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_bytes)
    if precision == "fp16":
        config.set_flag(trt.BuilderFlag.FP16)
    profile = builder.create_optimization_profile()
    for name, (lo, opt, hi) in shapes.items():
        profile.set_shape(name, lo, opt, hi)
    config.add_optimization_profile(profile)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise PackError(str(onnx_path), "TensorRT built no engine (see the TensorRT log above for why)")
    return bytes(serialized)


def build_engines(export_dir: Path, out: Path, precision: str = "fp16", workspace_gb: float = 4.0,
                  overwrite: bool = False) -> dict[str, Any]:
    """One engine per exported graph, written atomically with engines.json (versions, shapes)."""
    if precision not in PRECISIONS:
        raise PackError("--precision", f"expected one of {PRECISIONS}, got '{precision}'"
                        + ("; INT8 needs calibration images from the robot's cameras, not supported yet"
                           if precision.lower() == "int8" else ""))
    export_dir, out = Path(export_dir), Path(out)
    description = read_export_description(export_dir)
    if out.exists() and not overwrite:
        raise PackError(str(out), "output directory already exists (use --overwrite to replace it)")
    trt = import_tensorrt()
    logger = trt.Logger(trt.Logger.WARNING)
    ranges = profiles(description)
    with atomic_dir(out) as staging:
        engines = {}
        for stage, name in description["files"].items():
            data = _build_one(trt, logger, export_dir / name, ranges[stage], precision, int(workspace_gb * 2**30))
            (staging / f"{stage}.engine").write_bytes(data)
            engines[stage] = f"{stage}.engine"
        summary = {"pack": description["pack"], "tensorrt": getattr(trt, "__version__", "unknown"),
                   "precision": precision, "engines": engines,
                   "profiles": {st: {k: [list(s) for s in v] for k, v in d.items()} for st, d in ranges.items()},
                   "note": "engines are specific to the GPU and TensorRT version they were built with"}
        (staging / "engines.json").write_text(json.dumps(summary, indent=1) + "\n")
    return summary
