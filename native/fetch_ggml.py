#!/usr/bin/env python3
"""Obtain the pinned ggml source from a package registry, verify it, and print its directory.

ggml is not vendored in this repository. The pinned release is the ggml tree shipped inside the
`llama-cpp-python` source distribution on PyPI (vendor/llama.cpp/ggml). The archive's sha256 is
checked before anything is extracted; the extracted tree is cached under
$VLA_EDGE_GGML_CACHE (default ~/.cache/vla-edge/ggml) so rebuilds do not download again.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import tarfile
import tempfile
import urllib.request
from pathlib import Path

PACKAGE = "llama-cpp-python"
VERSION = "0.3.36"
SHA256 = "832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e"
MEMBER_PREFIX = f"llama_cpp_python-{VERSION}/vendor/llama.cpp/ggml/"


def _download(dest: Path) -> None:
    """Find the sdist through the index's simple JSON API (PEP 691), as pip does, and fetch it."""
    index = os.environ.get("PIP_INDEX_URL", "https://pypi.org/simple").rstrip("/")
    request = urllib.request.Request(f"{index}/{PACKAGE}/", headers={"Accept": "application/vnd.pypi.simple.v1+json"})
    with urllib.request.urlopen(request, timeout=60) as resp:
        files = json.load(resp)["files"]
    wanted = f"{PACKAGE.replace('-', '_')}-{VERSION}.tar.gz"
    match = [f for f in files if f["filename"] == wanted]
    if not match:
        raise SystemExit(f"fetch_ggml: {wanted} not found on {index}")
    with urllib.request.urlopen(match[0]["url"], timeout=600) as resp, open(dest, "wb") as out:
        shutil.copyfileobj(resp, out)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def ensure_ggml(cache: Path) -> Path:
    target = cache / SHA256[:16] / "ggml"
    if (target / "CMakeLists.txt").is_file():
        return target
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache) as tmp:
        archive = Path(tmp) / "src.tar.gz"
        local = os.environ.get("VLA_EDGE_GGML_ARCHIVE")  # an already-downloaded copy of the same file
        if local:
            shutil.copyfile(local, archive)
        else:
            _download(archive)
        got = _sha256(archive)
        if got != SHA256:
            raise SystemExit(f"fetch_ggml: sha256 mismatch for {PACKAGE}-{VERSION}: got {got}, expected {SHA256}")
        out = Path(tmp) / "out"
        with tarfile.open(archive) as tar:
            members = [m for m in tar.getmembers() if m.name.startswith(MEMBER_PREFIX)]
            tar.extractall(out, members=members, filter="data")
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(target, ignore_errors=True)
        (out / MEMBER_PREFIX).rename(target)
    return target


if __name__ == "__main__":
    cache = Path(os.environ.get("VLA_EDGE_GGML_CACHE", Path.home() / ".cache" / "vla-edge" / "ggml"))
    try:
        print(ensure_ggml(cache))
    except OSError as exc:
        sys.exit(f"fetch_ggml: cannot obtain ggml source ({exc}); pass -DVLA_EDGE_GGML_DIR=/path/to/ggml")
