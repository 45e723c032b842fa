"""The released ActQuant pi0.5 pack: `pi05.gguf` + `tokenizer.model` + `norm_stats.json`.

The GGUF is kept byte for byte (copied, and the manifest's sha256 is checked against the
source's); hyper-parameters come from its metadata, and where the released exporter wrote none
(the Gemma-2B LLM) from the tensors' shapes. Its norm stats are accepted in openpi's nested form
or the flat `action_q01`/`state_q99`… form ActQuant's server reads, with the GGUF's `norm.*`
tensors as a fallback; they are stored in openpi form. pi0.5 normalises with quantiles, so
q01/q99 for both state and actions are required.

A directory without a pi0.5 GGUF is checked file by file for ActQuant's OpenVLA-OFT export
(`general.architecture`, `clip.projector_type`, tensor names) and refused as a recognised but
unsupported family rather than as a bad file.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import PackError
from ..families import get_family
from ..packs.gguf_io import GGUFFile
from ..packs.hashing import sha256_file
from ..packs.writer import PackBuilder
from .common import STAT_FIELDS, check_tensor_shapes, check_tokenizer, openpi_stats, read_json_object, \
    robot_spaces_for_stats

COMPANIONS = ("pi05.gguf", "tokenizer.model", "norm_stats.json")
GOLDEN_AUTO_LIMIT_BYTES = 1 << 30  # the reference target takes minutes per call on a full-size pack


def _source_files(src: Path) -> dict[str, Path]:
    root = src.parent if src.is_file() else src
    files = {name: root / name for name in COMPANIONS}
    if not files["pi05.gguf"].is_file():
        found = _scan_ggufs(root) if root.is_dir() else []
        _reject_openvla(root, found)
        held = f"; the directory holds {', '.join(s.describe() for s in found)}" if found else ""
        raise PackError(str(files["pi05.gguf"]), "missing: an ActQuant pi0.5 pack has pi05.gguf, tokenizer.model "
                                                  f"and norm_stats.json side by side{held}")
    for name in ("tokenizer.model",):
        if not files[name].is_file():
            raise PackError(str(files[name]), "missing companion file of pi05.gguf (copied from PaliGemma by the "
                                              "ActQuant exporter)")
    return files


# ActQuant's OpenVLA-OFT export (tools/openvla-oft/export_openvla_oft.py at e1da494) writes one GGUF
# per component, each with its own general.architecture: dinov2.gguf / siglip.gguf ('dinov2',
# 'siglip', both with clip.projector_type 'openvla'; tools/quantize-vision copies these keys into
# dinov2_q4_k_m.gguf, siglip_q4_k_m_padded.gguf), proj.gguf ('proj'), action_head.gguf
# ('openvla_oft_action_head'), proprio_projector.gguf ('openvla_proprio_projector'), and an LLM
# converted by llama.cpp (llm_bf16.gguf, llm_q4_k_m.gguf …: 'llama', which alone proves nothing).
OPENVLA_PROJECTOR_TYPE = "openvla"
OPENVLA_TENSORS = {"model.mlp_resnet_blocks.": "OFT action head", "v.reg_embd": "DINOv2 register tokens"}
EVIDENCE_SHOWN = 3


@dataclass(frozen=True)
class GGUFSummary:
    """What one GGUF of the source directory says about the model it belongs to."""

    name: str
    arch: str
    openvla: tuple[str, ...]  # reasons it belongs to an OpenVLA(-OFT) export, empty if none

    def describe(self) -> str:
        return f"{self.name} (architecture '{self.arch}')"


def _openvla_evidence(gguf: GGUFFile) -> tuple[str, ...]:
    """'openvla' in the architecture or name, OpenVLA's vision projector type, or tensors only the
    OFT action head or DINOv2 have: each a reason this file belongs to an OpenVLA(-OFT) export."""
    meta, names = gguf.metadata, gguf.tensor_infos()
    found = [f"{key} '{meta[key]}'" for key in ("general.architecture", "general.name")
             if "openvla" in str(meta.get(key, "")).lower()]
    if str(meta.get("clip.projector_type", "")) == OPENVLA_PROJECTOR_TYPE:
        found.append(f"clip.projector_type '{OPENVLA_PROJECTOR_TYPE}'")
    for prefix, what in OPENVLA_TENSORS.items():
        hit = next((n for n in names if n.startswith(prefix)), None)
        if hit is not None:
            found.append(f"tensor '{hit}' ({what})")
    return tuple(found)


def _summarise(path: Path) -> GGUFSummary:
    try:
        gguf = GGUFFile(path)
        try:
            return GGUFSummary(path.name, str(gguf.metadata.get("general.architecture", "")),
                               _openvla_evidence(gguf))
        finally:
            gguf.close()
    except PackError:  # damaged files are no evidence either way
        return GGUFSummary(path.name, "unreadable", ())


def _scan_ggufs(root: Path) -> list[GGUFSummary]:
    """Every *.gguf in `root` (headers and tensor names only; nothing is dequantised)."""
    return [_summarise(path) for path in sorted(root.glob("*.gguf"))]


def _reject_openvla(root: Path, found: list[GGUFSummary]) -> None:
    """An OpenVLA-OFT export is refused as a recognised-but-unsupported family, with the evidence
    (the first reason of up to EVIDENCE_SHOWN files)."""
    telling = [f"{s.name}: {s.openvla[0]}" for s in found if s.openvla]
    if not telling:
        return
    more = len(telling) - EVIDENCE_SHOWN
    shown = "; ".join(telling[:EVIDENCE_SHOWN]) + (f"; {more} more file(s)" if more > 0 else "")
    what = f"an ActQuant OpenVLA-OFT export, not an ActQuant pi0.5 pack ({shown})"
    try:
        get_family("openvla-oft")
    except PackError as exc:  # the family registry's own "recognised but not supported yet"
        raise PackError(str(root), f"{what}: model family {exc.problem}") from None
    raise PackError(str(root), f"{what}: `--from actquant` imports pi0.5 packs only")


def _reject_other_family(path: Path, arch: str) -> None:
    """pi05.gguf is not a pi0.5 export: say which family the directory holds, if it is a known one."""
    _reject_openvla(path.parent, _scan_ggufs(path.parent))
    raise PackError(str(path), f"GGUF architecture '{arch}' is not an ActQuant pi0.5 export (expected 'pi05')")


def _gguf_stats(gguf: GGUFFile) -> dict[str, dict[str, list[float]]]:
    infos = gguf.tensor_infos()
    return {key: {f: gguf.float32(f"norm.{prefix}_{f}").tolist() for f in STAT_FIELDS
                  if f"norm.{prefix}_{f}" in infos} for key, prefix in (("state", "state"), ("actions", "action"))}


def read_norm_stats(path: Path, gguf: GGUFFile) -> dict[str, Any]:
    """openpi-form norm stats from norm_stats.json (nested or flat) or the GGUF's norm.* tensors."""
    data = read_json_object(path) if path.is_file() else {}
    return openpi_stats(data, f"{path} (or {gguf.path} norm.*)", fallback=_gguf_stats(gguf))


def _recipe(meta: dict[str, Any]) -> str:
    parts = [f"{k}={meta.get(f'pi05.quant_{k}', '?')}" for k in ("vision", "llm", "embedding")]
    return "actquant(" + ",".join(parts) + ")"


def import_actquant(src: str | Path, out: str | Path, robot: str = "ur3", overwrite: bool = False,
                    golden: bool | None = None) -> Path:
    """Write a pack at `out` from the ActQuant pack at `src` (a directory or its pi05.gguf)."""
    from ..families.pi05.metadata import config_from_metadata
    from ..families.pi05.tensors import tensor_specs

    files = _source_files(Path(src))
    gguf = GGUFFile(files["pi05.gguf"])
    meta = gguf.metadata
    if meta.get("general.architecture") != "pi05":
        _reject_other_family(files["pi05.gguf"], str(meta.get("general.architecture", "")))
    shapes = {n: i.shape for n, i in gguf.tensor_infos().items()}
    try:
        cfg, defaulted = config_from_metadata(meta, shapes)
    except ValueError as exc:
        raise PackError(f"{files['pi05.gguf']}: metadata",
                        f"hyper-parameters do not form a pi0.5 config: {exc}") from exc
    check_tensor_shapes(str(gguf.path), shapes, tensor_specs(cfg))
    stats = read_norm_stats(files["norm_stats.json"], gguf)
    spaces = robot_spaces_for_stats(stats, robot, str(files["norm_stats.json"]))
    check_tokenizer(files["tokenizer.model"])
    source_sha = sha256_file(files["pi05.gguf"])
    weights_bytes = files["pi05.gguf"].stat().st_size
    with PackBuilder(out, overwrite=overwrite) as builder:
        shutil.copyfile(files["pi05.gguf"], builder.staging / "pi05.gguf")
        if sha256_file(builder.staging / "pi05.gguf") != source_sha:
            raise PackError(str(builder.staging / "pi05.gguf"), "copy differs from the source (disk error?)")
        shutil.copyfile(files["tokenizer.model"], builder.staging / "tokenizer.model")
        (builder.staging / "norm_stats.json").write_text(json.dumps(stats, indent=1))
        want_golden = weights_bytes <= GOLDEN_AUTO_LIMIT_BYTES if golden is None else golden
        return builder.finish(
            name=f"pi05-actquant-{Path(files['pi05.gguf']).parent.name}", family="pi05",
            config=cfg.model_dump(mode="json"), recipe=_recipe(meta), targets=["reference", "x86"], **spaces,
            source={"imported_from": "actquant", "path": str(files["pi05.gguf"]), "weights_sha256": source_sha,
                    "config_keys_defaulted": defaulted, "robot_layout": robot},
            golden_seed=0 if want_golden else None,
        )
