"""`vla-edge pack export-onnx`: the graphs written atomically and checked before they are kept.

The export is moved into place only after onnxruntime has reproduced the pack's golden chunk
from the files just written (within the pack's own golden tolerance), so an export directory on
disk is always one that ran correctly here — the input a TensorRT engine build then trusts.
"""

from __future__ import annotations

import json
from pathlib import Path

from vla_edge.errors import PackError
from vla_edge.staging import atomic_dir


def write_export(pack_dir: Path, out: Path, max_images: int | None = None, overwrite: bool = False) -> dict:
    from vla_edge.packs.golden import load_golden
    from vla_edge.packs.pack import Pack
    from vla_edge.packs.writer import rel_l2
    from vla_edge.policy import load_policy

    from .pi05_export import export_pi05

    out = Path(out)
    if out.exists() and not overwrite:
        raise PackError(str(out), "output directory already exists (use --overwrite to replace it)")
    pack = Pack.open(pack_dir)
    with atomic_dir(out) as staging:
        description = export_pi05(pack, staging, max_images)
        golden = pack.manifest.golden
        if golden is not None:
            obs, noise, expected = load_golden(pack.path("golden"))
            with load_policy(pack, target="onnx", onnx_dir=staging) as policy:
                err = rel_l2(policy.infer(obs, noise=noise).actions, expected)
            if not err <= golden.rel_l2_tolerance:
                raise PackError(f"{out} (onnx export)", f"golden chunk reproduced with rel-L2 {err:.2e}, "
                                f"above the pack's tolerance {golden.rel_l2_tolerance:.0e}; export not kept")
            description["golden_rel_l2"] = err
        else:
            description["golden_rel_l2"] = None  # nothing recorded to check against
        (staging / "onnx_export.json").write_text(json.dumps(description, indent=1) + "\n")
    return description


def read_export_description(export_dir: Path) -> dict:
    """onnx_export.json of an export directory (what the onnx target and engine builds start from)."""
    description_file = Path(export_dir) / "onnx_export.json"
    if not description_file.is_file():
        raise PackError(str(description_file), "missing: not a directory written by `vla-edge pack export-onnx`")
    try:
        return json.loads(description_file.read_text())
    except json.JSONDecodeError as exc:
        raise PackError(str(description_file), f"not valid JSON ({exc.msg}); re-run `vla-edge pack export-onnx`") from exc
