"""The released ActQuant pi0.5 pack: `pi05.gguf` + `tokenizer.model` + `norm_stats.json`.

The GGUF is kept byte for byte (copied, and the manifest's sha256 is checked against the
source's); hyper-parameters come from its metadata, and where the released exporter wrote none
(the Gemma-2B LLM) from the tensors' shapes. Its norm stats are accepted in openpi's nested form
or the flat `action_q01`/`state_q99`… form ActQuant's server reads, with the GGUF's `norm.*`
tensors as a fallback; they are stored in openpi form. pi0.5 normalises with quantiles, so
q01/q99 for both state and actions are required.
"""

from __future__ import annotations

import json
import shutil
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
        other = sorted(p.name for p in root.glob("*.gguf")) if root.is_dir() else []
        if other:
            _reject_other_family(root / other[0])
        raise PackError(str(files["pi05.gguf"]), "missing: an ActQuant pi0.5 pack has pi05.gguf, tokenizer.model "
                                                  "and norm_stats.json side by side")
    for name in ("tokenizer.model",):
        if not files[name].is_file():
            raise PackError(str(files[name]), "missing companion file of pi05.gguf (copied from PaliGemma by the "
                                              "ActQuant exporter)")
    return files


def _reject_other_family(path: Path) -> None:
    """ActQuant also exports OpenVLA-OFT (a llama-architecture GGUF with a SigLIP/DINO projector
    and action head); recognise it and say the family is not supported rather than 'bad file'."""
    gguf = GGUFFile(path)
    arch = str(gguf.metadata.get("general.architecture", ""))
    names = " ".join(gguf.tensor_infos())
    text = f"{path.name} {arch} {gguf.metadata.get('general.name', '')}".lower()
    if "openvla" in text or "action_head" in names or "proprio" in names:
        get_family("openvla-oft")  # raises: recognised, not supported yet
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
        _reject_other_family(files["pi05.gguf"])
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
