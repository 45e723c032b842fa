"""setup.py hook: build vla_edge._native (and libvla_edge) with CMake during `pip install .`.

VLA_EDGE_BUILD_NATIVE=auto (default): try, and if the build fails install without the native
module, printing why (the `x86` target then reports itself unavailable with that reason).
=1: a failure fails the install. =0: skip. VLA_EDGE_GGML_DIR=/path: use that ggml tree instead of
downloading the pinned release. VLA_EDGE_CUDA=1: also build ggml's CUDA backend.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from setuptools import Extension
from setuptools.command.build_ext import build_ext


class CMakeExtension(Extension):
    def __init__(self, name: str, source_dir: Path):
        # optional: when the build is skipped or fails (VLA_EDGE_BUILD_NATIVE=0/auto), setuptools'
        # editable install must not try to copy a module that was never built.
        super().__init__(name, sources=[], optional=True)
        self.source_dir = source_dir


class CMakeBuild(build_ext):
    def build_extension(self, ext: Extension) -> None:
        mode = os.environ.get("VLA_EDGE_BUILD_NATIVE", "auto")
        if mode == "0":
            print("vla-edge: VLA_EDGE_BUILD_NATIVE=0, skipping the native core", file=sys.stderr)
            return
        try:
            self._cmake(ext)
        except (OSError, subprocess.CalledProcessError) as exc:
            if mode == "1":
                raise
            print(f"vla-edge: WARNING: native core not built ({exc}); the x86 target will be unavailable. "
                  "Set VLA_EDGE_BUILD_NATIVE=1 to make this an error.", file=sys.stderr)

    def _cmake(self, ext: CMakeExtension) -> None:
        build = Path(self.build_temp).resolve() / "cmake"
        build.mkdir(parents=True, exist_ok=True)
        args = [f"-DPython3_EXECUTABLE={sys.executable}", "-DCMAKE_BUILD_TYPE=Release"]
        if os.environ.get("VLA_EDGE_GGML_DIR"):
            args.append(f"-DVLA_EDGE_GGML_DIR={os.environ['VLA_EDGE_GGML_DIR']}")
        if os.environ.get("VLA_EDGE_CUDA") == "1":
            args.append("-DVLA_EDGE_CUDA=ON")
        if os.environ.get("VLA_EDGE_LLAMAFILE") == "0":
            args.append("-DVLA_EDGE_LLAMAFILE=OFF")
        cmake = shutil.which("cmake") or "cmake"
        subprocess.run([cmake, "-S", str(ext.source_dir), "-B", str(build), *args], check=True)
        jobs = str(max(1, min(os.cpu_count() or 1, 8)))
        subprocess.run([cmake, "--build", str(build), "-j", jobs, "--target", "_native", "vla_edge",
                        "vla_edge_example"], check=True)
        module = next((build / "native").glob("_native*.so"))
        dest = Path(self.get_ext_fullpath(ext.name))
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(module, dest)
        # The C ABI library, header and example ship inside the package for vendor integration.
        lib_dir = dest.parent / "native_lib"
        lib_dir.mkdir(exist_ok=True)
        shutil.copy2(build / "native" / "libvla_edge.so", lib_dir / "libvla_edge.so")
        shutil.copy2(ext.source_dir / "native" / "include" / "vla_edge.h", lib_dir / "vla_edge.h")
        shutil.copy2(build / "native" / "vla_edge_example", lib_dir / "vla_edge_example")


def setup_kwargs(root: Path) -> dict:
    if os.environ.get("VLA_EDGE_BUILD_NATIVE") == "0":
        # No extension at all: an editable install would otherwise try to copy a module that was
        # never built ("can't copy ..._native...so") and fail.
        print("vla-edge: VLA_EDGE_BUILD_NATIVE=0, skipping the native core", file=sys.stderr)
        return {}
    return {"ext_modules": [CMakeExtension("vla_edge._native", root)], "cmdclass": {"build_ext": CMakeBuild}}
