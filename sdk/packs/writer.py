"""Atomic pack creation: everything is written into a staging directory beside the target and
moved into place only when the manifest, checksums and golden output are complete. A failure at
any point leaves no partial pack behind."""

from __future__ import annotations

import shutil
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import PackError
from ..families import get_family
from ..staging import move_into_place, staging_dir_beside
from .gguf_io import GGUFFile
from .hashing import sha256_file
from .manifest import FORMAT_VERSION, MANIFEST_NAME, W4A4, FileEntry, Golden, Manifest, PackFiles, Quantization
from .w4a4 import is_w4a4_tensor, logical_weight


def quantization_summary(weights: Path, specs: dict[str, Any], recipe: str,
                         exceptions: dict[str, str] | None = None, w4a4: W4A4 | None = None) -> Quantization:
    """Per-group tensor-type counts and overall bits per weight, read from the GGUF itself. A W4A4
    layer counts once (as "W4A4", its codes standing for the weight); its scales, rotations and
    activation tables count as cost."""
    groups: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    total_bytes = total_elems = 0
    for name, info in GGUFFile(weights).tensor_infos().items():
        total_bytes += info.n_bytes
        if is_w4a4_tensor(name):
            if name.endswith(".w4a4.codes"):
                spec = specs[logical_weight(name)]
                groups[spec.group]["W4A4"] += 1
                total_elems += int(np.prod(spec.shape))
            continue
        group = specs[name].group if name in specs else "other"
        groups[group][info.ggml_type] += 1
        # per *logical* weight: zero columns a K-quant needed for padding count as cost, not weights
        total_elems += int(np.prod(specs[name].shape)) if name in specs else info.n_elements
    return Quantization(
        recipe=recipe,
        groups={g: dict(sorted(t.items())) for g, t in groups.items()},
        bits_per_weight=round(8.0 * total_bytes / max(total_elems, 1), 4),
        exceptions=dict(exceptions or {}),
        w4a4=w4a4,
    )


class PackBuilder:
    """Usage: with PackBuilder(out) as b: write files into b.staging; b.finish(**manifest)."""

    def __init__(self, out_dir: str | Path, overwrite: bool = False):
        self.out_dir = Path(out_dir)
        if self.out_dir.exists() and not overwrite:
            raise PackError(str(self.out_dir), "output directory already exists (use --overwrite to replace it)")
        self.staging = staging_dir_beside(self.out_dir)
        self._done = False

    def __enter__(self) -> "PackBuilder":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if not self._done:
            shutil.rmtree(self.staging, ignore_errors=True)

    def _entry(self, name: str) -> FileEntry:
        path = self.staging / name
        if not path.is_file():
            raise PackError(str(path), "expected file was not produced")
        return FileEntry(path=name, sha256=sha256_file(path), size=path.stat().st_size)

    def finish(
        self,
        *,
        name: str,
        family: str,
        config: dict[str, Any],
        recipe: str,
        targets: list[str],
        state_space: dict[str, Any],
        action_space: dict[str, Any],
        cameras: dict[str, str],
        required_cameras: list[str],
        default_prompt: str | None = None,
        source: dict[str, Any] | None = None,
        golden_seed: int | None = 0,
        golden_tolerance: float = 1e-4,
        weights: str = "pi05.gguf",
        tokenizer: str = "tokenizer.model",
        norm_stats: str = "norm_stats.json",
        quant_exceptions: dict[str, str] | None = None,
        w4a4: W4A4 | None = None,
    ) -> Path:
        """Write pack.yaml (optionally with a golden output from the reference target), then move
        the staging directory into place. golden_seed=None skips the golden (full-size packs)."""
        specs = get_family(family).tensor_specs(get_family(family).parse_config(config))
        files = PackFiles(weights=self._entry(weights), tokenizer=self._entry(tokenizer),
                          norm_stats=self._entry(norm_stats))
        manifest = Manifest(
            format_version=FORMAT_VERSION, name=name, family=family, config=config, files=files,
            quantization=quantization_summary(self.staging / weights, specs, recipe, quant_exceptions, w4a4),
            targets=targets,
            state_space=state_space, action_space=action_space, cameras=cameras,
            required_cameras=required_cameras, default_prompt=default_prompt, source=source or {},
        )
        self._write_manifest(manifest)
        if golden_seed is not None:
            from .golden import record_golden

            record_golden(self.staging, self.staging / "golden.npz", seed=golden_seed)
            manifest = manifest.model_copy(update={
                "files": files.model_copy(update={"golden": self._entry("golden.npz")}),
                "golden": Golden(target="reference", rel_l2_tolerance=golden_tolerance),
            })
            self._write_manifest(manifest)
        Manifest.model_validate(manifest.model_dump())  # re-check cross-field rules after updates
        move_into_place(self.staging, self.out_dir)
        self._done = True
        return self.out_dir

    def _write_manifest(self, manifest: Manifest) -> None:
        tmp = self.staging / (MANIFEST_NAME + ".tmp")
        tmp.write_text(manifest.to_yaml())
        tmp.replace(self.staging / MANIFEST_NAME)


def rel_l2(a: np.ndarray, b: np.ndarray) -> float:
    """||a - b|| / ||b||: the error measure used by golden checks and target comparisons."""
    a64, b64 = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.linalg.norm(a64 - b64) / max(np.linalg.norm(b64), 1e-30))
