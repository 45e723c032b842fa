"""`pack verify`: every defect a pack can have, each reported with the file/tensor/field it is in."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..errors import PackError, VlaEdgeError
from .gguf_io import GGUFFile
from .hashing import sha256_file
from .manifest import load_manifest
from .pack import Pack
from .w4a4 import is_w4a4_tensor, read_layers

# ggml types the targets execute (reference dequantises them with gguf; x86 runs them natively).
SUPPORTED_TYPES = {"F32", "F16", "BF16", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0",
                   "Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K"}
# Extra tensors real packs may carry that the runtime does not need (ActQuant writes norm stats).
ALLOWED_EXTRA_PREFIXES = ("norm.",)


@dataclass(frozen=True)
class Finding:
    level: str  # "error" | "warning" | "ok"
    where: str
    message: str


def _check_tensors(pack: Pack, gguf: GGUFFile) -> list[Finding]:
    out: list[Finding] = []
    specs = pack.family.tensor_specs(pack.config)
    infos = gguf.tensor_infos()
    where = str(pack.weights_path)
    w4a4 = pack.manifest.quantization.w4a4
    if w4a4 is not None:  # those layers are stored as W4A4 tensors instead of their .weight
        try:
            read_layers(gguf, w4a4, specs)
        except PackError as exc:
            out.append(Finding("error", exc.where, exc.problem))
        specs = {n: s for n, s in specs.items() if n not in set(w4a4.layers)}
        infos = {n: i for n, i in infos.items() if not is_w4a4_tensor(n)}
    for name, spec in specs.items():
        info = infos.get(name)
        if info is None:
            out.append(Finding("error", f"{where}: tensor '{name}'", "missing"))
            continue
        if info.shape not in spec.allowed_shapes():
            out.append(Finding("error", f"{where}: tensor '{name}'",
                               f"shape {list(info.shape)}, expected {' or '.join(str(list(s)) for s in spec.allowed_shapes())}"))
        if info.ggml_type not in SUPPORTED_TYPES:
            out.append(Finding("error", f"{where}: tensor '{name}'",
                               f"type {info.ggml_type} is not supported (supported: {sorted(SUPPORTED_TYPES)})"))
    for name in sorted(set(infos) - set(specs)):
        if not name.startswith(ALLOWED_EXTRA_PREFIXES):
            out.append(Finding("warning", f"{where}: tensor '{name}'", "not used by this model family"))
    if not [f for f in out if f.level == "error"]:
        w4 = f" ({len(w4a4.layers)} layers in W4A4 form)" if w4a4 is not None else ""
        out.append(Finding("ok", where, f"{len(specs)} tensors present with expected shapes and supported types{w4}"))
    return out


def _check_metadata(pack: Pack, gguf: GGUFFile) -> list[Finding]:
    if pack.manifest.family != "pi05":
        return []
    from ..families.pi05.metadata import config_from_metadata

    shapes = {n: i.shape for n, i in gguf.tensor_infos().items()}
    file_cfg, _missing = config_from_metadata(gguf.metadata, shapes)
    a = file_cfg.model_dump(exclude={"variant"})
    b = pack.config.model_dump(exclude={"variant"})
    def same(x: object, y: object) -> bool:  # GGUF stores floats as float32
        if isinstance(x, float) or isinstance(y, float):
            return math.isclose(float(x), float(y), rel_tol=1e-6)
        return x == y

    diffs = []
    for section in ("vision", "llm", "expert"):
        for key, value in a[section].items():
            if not same(b[section][key], value):
                diffs.append(f"{section}.{key}: file {value} vs pack.yaml {b[section][key]}")
    for key in ("action_dim", "state_dim", "action_horizon"):
        if a[key] != b[key]:
            diffs.append(f"{key}: file {a[key]} vs pack.yaml {b[key]}")
    if diffs:
        return [Finding("error", f"{pack.weights_path}: metadata", "disagrees with pack.yaml config: " + "; ".join(diffs))]
    return [Finding("ok", f"{pack.weights_path}: metadata", "hyper-parameters match pack.yaml")]


def _check_golden(pack: Pack, target: str | None) -> list[Finding]:
    from ..policy import load_policy
    from .golden import load_golden
    from .writer import rel_l2

    golden = pack.manifest.golden
    if golden is None:
        return [Finding("warning", "golden", "pack has no golden output; numerical correctness not checked")]
    target = target or golden.target
    obs, noise, expected = load_golden(pack.path("golden"))
    policy = load_policy(pack, target=target)
    got = policy.infer(obs, noise=noise).actions
    if got.shape != expected.shape:
        return [Finding("error", f"golden ({target})", f"chunk shape {got.shape}, golden {expected.shape}")]
    err = rel_l2(got, expected)
    level = "ok" if err <= golden.rel_l2_tolerance else "error"
    return [Finding(level, f"golden ({target})", f"rel-L2 {err:.2e} vs tolerance {golden.rel_l2_tolerance:.0e}")]


def verify_pack(directory: str | Path, golden_target: str | None = None,
                on_hash: Callable[[str, int], None] | None = None) -> list[Finding]:
    """Run every check; never raises for a defect in the pack (it becomes an error Finding)."""
    directory = Path(directory)
    try:
        manifest = load_manifest(directory)
    except PackError as exc:
        return [Finding("error", exc.where, exc.problem)]
    findings = [Finding("ok", str(directory / "pack.yaml"), "schema valid")]
    # Hash every file first so a corrupted byte is reported as such, whatever else it breaks.
    files = {"weights": manifest.files.weights, "tokenizer": manifest.files.tokenizer,
             "norm_stats": manifest.files.norm_stats, "golden": manifest.files.golden}
    for engines in manifest.engines:  # TensorRT engines (docs/gpu.md): files, and built from these weights
        files.update({f"{engines.target} {engines.precision} {stage} engine": entry for stage, entry in engines.files.items()})
        if engines.weights_sha256 != manifest.files.weights.sha256:
            findings.append(Finding("error", str(directory / "pack.yaml") + f" engines {engines.target} {engines.precision}",
                                    "built from other weights than the pack's; rebuild with `vla-edge pack build-engine`"))
    for role, entry in files.items():
        if entry is None:
            continue
        path = directory / entry.path
        if not path.is_file():
            findings.append(Finding("error", str(path), f"missing {role} file listed in pack.yaml"))
        elif path.stat().st_size != entry.size:
            findings.append(Finding("error", str(path), f"size {path.stat().st_size} bytes, pack.yaml says {entry.size}"))
        else:
            digest = sha256_file(path, (lambda n, r=role: on_hash(r, n)) if on_hash else None)
            if digest != entry.sha256:
                findings.append(Finding("error", str(path), f"sha256 mismatch (file {digest[:16]}…, pack.yaml "
                                                            f"{entry.sha256[:16]}…): corrupted or modified"))
            else:
                findings.append(Finding("ok", str(path), "sha256 matches"))
    if any(f.level == "error" for f in findings):
        return findings
    try:
        pack = Pack.open(directory, check="size")
        gguf = pack.weights
        findings += _check_metadata(pack, gguf) + _check_tensors(pack, gguf)
        pack.family.preprocessor(pack)  # tokenizer + norm stats + camera slots
        findings.append(Finding("ok", "tokenizer/norm_stats/cameras", "load and match the config"))
    except VlaEdgeError as exc:
        findings.append(Finding("error", getattr(exc, "where", "pack"), getattr(exc, "problem", str(exc))))
    if any(f.level == "error" for f in findings):
        return findings
    try:
        findings += _check_golden(pack, golden_target)
    except VlaEdgeError as exc:
        findings.append(Finding("error", "golden", str(exc)))
    return findings
