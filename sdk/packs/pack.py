"""An opened, validated pack: manifest + files checked, family config parsed, weights mapped."""

from __future__ import annotations

import functools
import logging
from pathlib import Path
from typing import Any, Literal

from pydantic import ValidationError

from ..errors import PackError
from ..families import get_family
from ..families.base import Family
from .gguf_io import GGUFFile
from .hashing import sha256_file
from .manifest import FileEntry, Manifest, load_manifest
from .norm_stats import NormStats, load_norm_stats

log = logging.getLogger(__name__)

# Hash files up to this size on every open; larger weights are size-checked only unless
# verification is asked for (a 6.7 GB sha256 costs ~15 s per start on an edge CPU).
AUTO_HASH_LIMIT = 2 << 30

Check = Literal["auto", "sha256", "size"]


def check_listed_file(directory: Path, role: str, entry: FileEntry, check: Check = "sha256") -> None:
    """A file pack.yaml lists (weights, tokenizer, an engine...) is there with its size and, per
    `check`, its sha256; PackError naming the file otherwise."""
    path = directory / entry.path
    if not path.is_file():
        raise PackError(str(path), f"missing {role} file listed in pack.yaml")
    size = path.stat().st_size
    if size != entry.size:
        raise PackError(str(path), f"size {size} bytes, pack.yaml says {entry.size} (truncated or replaced?)")
    if check == "sha256" or (check == "auto" and size <= AUTO_HASH_LIMIT):
        digest = sha256_file(path)
        if digest != entry.sha256:
            raise PackError(str(path), f"sha256 {digest} does not match pack.yaml ({entry.sha256}): file corrupted")
    elif check == "auto":
        log.info("skipping sha256 of %s (%.1f GB); run `vla-edge pack verify` to check it", path, size / 1e9)


class Pack:
    def __init__(self, directory: Path, manifest: Manifest, family: Family, config: Any):
        self.dir = directory
        self.manifest = manifest
        self.family = family
        self.config = config

    @classmethod
    def open(cls, directory: str | Path, check: Check = "auto") -> "Pack":
        """Validate the manifest and every listed file; raise PackError naming the first defect."""
        directory = Path(directory)
        manifest = load_manifest(directory)
        family = get_family(manifest.family)
        try:
            config = family.parse_config(manifest.config)
        except (ValidationError, ValueError) as exc:
            raise PackError(f"{directory / 'pack.yaml'}: config", str(exc)) from exc
        pack = cls(directory, manifest, family, config)
        for role, entry in pack.file_entries().items():
            pack._check_file(role, entry, check)
        return pack

    def file_entries(self) -> dict[str, FileEntry]:
        files = self.manifest.files
        entries = {"weights": files.weights, "tokenizer": files.tokenizer, "norm_stats": files.norm_stats}
        if files.golden is not None:
            entries["golden"] = files.golden
        return entries

    def _check_file(self, role: str, entry: FileEntry, check: Check) -> None:
        check_listed_file(self.dir, role, entry, check)

    def path(self, role: str) -> Path:
        return self.dir / self.file_entries()[role].path

    @property
    def weights_path(self) -> Path:
        return self.path("weights")

    @property
    def tokenizer_path(self) -> Path:
        return self.path("tokenizer")

    @functools.cached_property
    def weights(self) -> GGUFFile:
        return GGUFFile(self.weights_path)

    @functools.cached_property
    def norm_stats(self) -> NormStats:
        return load_norm_stats(
            self.path("norm_stats"),
            state_dim=len(self.manifest.state_space.names),
            action_dim=len(self.manifest.action_space.names),
        )
