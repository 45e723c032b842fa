"""Ahead-of-time half of the GPU targets: `vla-edge pack build-engine PACK --target gb10|orin`.

For each precision the pack asks for, the pack is exported to ONNX in that precision (weights in
the pack's own form where ONNX has one, targets/onnx/precision.py), the export is checked on the
golden chunk with onnxruntime where onnxruntime can run it, and each graph (vision, prefix,
expert step) is parsed node by node and built into an engine. The engines go into the pack under
`engines/<target>/`, named `<stage>.<precision>.sm<cc>.<runtime>-<version>.engine`, with their
sha256, size and build settings in pack.yaml (`engines:`).

Atomic: everything is built in a staging folder inside the pack; the previous `engines/<target>`
folder is moved aside, the new one renamed into place and pack.yaml replaced (write + rename);
any failure before the end puts the previous folder back and leaves pack.yaml as it was. A build
replaces the target's whole engine set.

Shapes: one optimization profile per engine, covering 1..max_images cameras and prefixes from one
image + BOS up to max_images images + the longest prompt; opt is the pack's camera count with a
48-token prompt.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from vla_edge.errors import PackError
from vla_edge.packs.hashing import sha256_file
from vla_edge.packs.manifest import MANIFEST_NAME, EngineSet, FileEntry
from vla_edge.packs.pack import Pack
from vla_edge.staging import staging_dir_beside

from .flavours import FLAVOURS, Flavour, build_serialized, import_flavour, version_of

ENGINES_DIR = "engines"
OPT_PROMPT_TOKENS = 48
# What a pack's recipe asks for: fp16 and bf16 products, each with the pack's weights in their own
# form (float packs: plain fp16/bf16 engines; a q8_0 pack: fp16-w8/bf16-w8; q4_k_m: -w4w8 ...).
DEFAULT_PRECISIONS = ("fp16", "bf16")


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


def engine_file_name(stage: str, precision: str, flavour: Flavour, version: str) -> str:
    return f"{stage}.{precision}.sm{flavour.device_cc[0]}{flavour.device_cc[1]}.{flavour.key}-{version}.engine"


def _build_precision(pack: Pack, trt: Any, flavour: Flavour, precision: str, work: Path, out: Path,
                     workspace_bytes: int, max_images: int | None, check: bool, log) -> EngineSet:
    from vla_edge.targets.onnx.export import check_golden
    from vla_edge.targets.onnx.pi05_export import export_pi05
    from vla_edge.targets.onnx.precision import require_precision

    export_precision = require_precision(precision)
    export_dir = work / f"onnx-{precision}"
    t0 = time.perf_counter()
    description = export_pi05(pack, export_dir, max_images, export_precision)
    golden = check_golden(pack, export_dir, export_precision) if check else None
    log(f"{precision}: exported {description['precision']} graphs in {time.perf_counter() - t0:.1f} s"
        + (f", golden rel-L2 {golden:.1e}" if golden is not None else ", golden not checked"))
    ranges = profiles(description)
    version = version_of(trt)
    files: dict[str, FileEntry] = {}
    for stage, onnx_name in description["files"].items():
        t0 = time.perf_counter()
        data = build_serialized(trt, flavour, export_dir / onnx_name, ranges[stage], workspace_bytes)
        name = engine_file_name(stage, description["precision"], flavour, version)
        path = out / name
        path.write_bytes(data)
        del data
        files[stage] = FileEntry(path=f"{ENGINES_DIR}/{flavour.target}/{name}", sha256=sha256_file(path),
                                 size=path.stat().st_size)
        log(f"{precision}: {stage} engine {files[stage].size / 1e6:.1f} MB in {time.perf_counter() - t0:.1f} s")
    shutil.rmtree(export_dir)  # the graphs are re-made from the pack whenever needed
    settings = {"onnx_opset": description["opset"], "max_images": description["max_images"],
                "max_positions": description["max_positions"], "workspace_bytes": workspace_bytes,
                "profiles": {st: {k: " / ".join("x".join(map(str, s)) for s in v) for k, v in d.items()}  # min / opt / max
                             for st, d in ranges.items()},
                "weight_forms": description["weight_forms"], "golden_rel_l2_onnxruntime": golden,
                "strongly_typed": True}
    return EngineSet(target=flavour.target, precision=description["precision"], runtime=flavour.key,
                     runtime_version=version, compute_capability=flavour.cc,
                     weights_sha256=pack.manifest.files.weights.sha256, files=files, settings=settings)


def _write_manifest_atomically(pack_dir: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{MANIFEST_NAME}.", dir=pack_dir)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, (pack_dir / MANIFEST_NAME).stat().st_mode & 0o777)
        os.replace(tmp, pack_dir / MANIFEST_NAME)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _swap_in(pack_dir: Path, target: str, staging: Path, manifest_text: str) -> None:
    """engines/<target> <- staging and pack.yaml <- manifest_text, both or neither."""
    final = pack_dir / ENGINES_DIR / target
    final.parent.mkdir(exist_ok=True)
    previous = None
    if final.exists():
        previous = staging_dir_beside(final, "previous") / target
        final.replace(previous)
    try:
        staging.replace(final)
        _write_manifest_atomically(pack_dir, manifest_text)
    except BaseException:
        if final.exists():
            shutil.rmtree(final, ignore_errors=True)
        if previous is not None:
            previous.replace(final)
        raise
    finally:
        if previous is not None:
            shutil.rmtree(previous.parent, ignore_errors=True)


def build_pack_engines(pack_dir: str | Path, target: str, precisions: tuple[str, ...] | None = None,
                       workspace_gb: float = 4.0, max_images: int | None = None, check: bool = True,
                       log=lambda msg: None) -> list[EngineSet]:
    """Build `target`'s engines for every precision into the pack; returns the new engine sets."""
    if target not in FLAVOURS:
        raise PackError("--target", f"engines are built for {sorted(FLAVOURS)}, not '{target}' "
                        "(the cuda target runs the pack's GGUF directly and needs no engine)")
    flavour = FLAVOURS[target]
    trt = import_flavour(flavour)
    if not flavour.builds_without_gpu:
        from .facts import probe  # full TensorRT builds for the GPU it runs on: only on the Orin itself
        from .selection import hardware_problem

        problem = hardware_problem(flavour, probe())
        if problem:
            raise PackError("--target", f"{flavour.title} builds engines for the GPU it runs on, so {target} engines "
                            f"are built on the {flavour.device} itself: {problem}")
    pack = Pack.open(pack_dir, check="sha256")
    precisions = precisions or DEFAULT_PRECISIONS
    staging = staging_dir_beside(pack.dir / f".{ENGINES_DIR}-{target}", "partial")
    try:
        out = staging / "engines"
        out.mkdir()
        sets = [_build_precision(pack, trt, flavour, p, staging, out, int(workspace_gb * 2**30), max_images, check, log)
                for p in precisions]
        kept = [e for e in pack.manifest.engines if e.target != target]
        manifest = pack.manifest.model_copy(update={"engines": kept + sets})
        _swap_in(pack.dir, target, out, manifest.to_yaml())
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return sets
