"""setup.py hook: build vla_edge._safety (+ libvla_edge_safety) and vla_edge._native (+ libvla_edge)
with CMake during `pip install .`.

The safety filter's core (vla_edge._safety) needs only a C++17 compiler, no ggml, and is always
built; without it every robot run refuses to start (the filter fails closed). The VLA_EDGE_* build
switches below are about the ggml runtime (vla_edge._native):

VLA_EDGE_BUILD_NATIVE=auto (default): try, and if the build fails install without the native
module, printing why (the `x86` target then reports itself unavailable with that reason).
=1: a failure fails the install. =0: skip. VLA_EDGE_GGML_DIR=/path: use that ggml tree instead of
downloading the pinned release (likewise VLA_EDGE_SENTENCEPIECE_DIR, VLA_EDGE_RAPIDYAML_DIR for the
Policy's pre/post-processing, vla_edge._policy_io, built with the safety core). VLA_EDGE_CUDA=1: also build ggml's CUDA backend.
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
    def __init__(self, name: str, source_dir: Path, runtime: bool = True, made_by_safety_build: bool = False):
        # optional: when the build is skipped or fails (VLA_EDGE_BUILD_NATIVE=0/auto), setuptools'
        # editable install must not try to copy a module that was never built.
        super().__init__(name, sources=[], optional=True)
        self.source_dir = source_dir
        self.runtime = runtime
        # vla_edge._policy_io comes out of the safety build (no ggml); it is declared as its own
        # extension only so that setuptools installs it (editable installs copy declared ones).
        self.made_by_safety_build = made_by_safety_build


class CMakeBuild(build_ext):
    def build_extension(self, ext: Extension) -> None:
        if ext.made_by_safety_build:
            built = getattr(self, "_safety_build", None)
            if built is not None and "_policy_io" in built[1]:
                self._install_module(built[0], ext, "_policy_io")
            return
        if not ext.runtime:
            self._build_safety(ext)
            return
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

    def _build_safety(self, ext: CMakeExtension) -> None:
        """The safety filter and the Policy's pre/post-processing (-DVLA_EDGE_RUNTIME=OFF: no ggml).
        The latter needs the pinned sentencepiece + rapidyaml sources (fetched from PyPI, ~1 min to
        build on 2 cores); if that fails the safety filter is still built, and Policy says why it
        cannot run (vla_edge.native_io)."""
        try:
            build = self._configure(ext, "cmake-safety", ["-DVLA_EDGE_RUNTIME=OFF"])
            self._build(build, "_safety", "vla_edge_safety", "_policy_io")
            modules = ("_safety", "_policy_io")
        except (OSError, subprocess.CalledProcessError) as exc:
            if os.environ.get("VLA_EDGE_BUILD_NATIVE") == "1":
                raise
            print(f"vla-edge: WARNING: Policy pre/post-processing (vla_edge._policy_io) not built ({exc}); "
                  "retrying the safety filter alone.", file=sys.stderr)
            try:
                build = self._configure(ext, "cmake-safety-only", ["-DVLA_EDGE_RUNTIME=OFF", "-DVLA_EDGE_POLICY_IO=OFF"])
                self._build(build, "_safety", "vla_edge_safety")
                modules = ("_safety",)
            except (OSError, subprocess.CalledProcessError) as exc2:
                print(f"vla-edge: WARNING: safety filter core not built ({exc2}); every robot run will refuse to "
                      "start until it is (it needs a C++17 compiler and CMake).", file=sys.stderr)
                return
        self._install_module(build, ext, "_safety")
        self._safety_build = (build, modules)  # vla_edge._policy_io's extension installs its module
        self._ship(build, ext, "libvla_edge_safety.so", "vla_edge_safety.h")

    def _configure(self, ext: CMakeExtension, name: str, args: list[str]) -> Path:
        build = Path(self.build_temp).resolve() / name
        build.mkdir(parents=True, exist_ok=True)
        cmake = shutil.which("cmake") or "cmake"
        base = [f"-DPython3_EXECUTABLE={sys.executable}", "-DCMAKE_BUILD_TYPE=Release"]
        for dep in ("SENTENCEPIECE", "RAPIDYAML"):  # existing source trees instead of the pinned downloads
            if os.environ.get(f"VLA_EDGE_{dep}_DIR"):
                base.append(f"-DVLA_EDGE_{dep}_DIR={os.environ[f'VLA_EDGE_{dep}_DIR']}")
        subprocess.run([cmake, "-S", str(ext.source_dir), "-B", str(build), *base, *args], check=True)
        return build

    def _build(self, build: Path, *targets: str) -> None:
        cmake = shutil.which("cmake") or "cmake"
        jobs = str(max(1, min(os.cpu_count() or 1, 8)))
        subprocess.run([cmake, "--build", str(build), "-j", jobs, "--target", *targets], check=True)

    def _install_module(self, build: Path, ext: CMakeExtension, stem: str) -> None:
        module = next((build / "native").glob(f"{stem}.*so"))
        dest = Path(self.get_ext_fullpath(ext.name))
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(module, dest)

    def _ship(self, build: Path, ext: CMakeExtension, *names: str) -> None:
        """The C ABI libraries, headers and example ship inside the package for vendor integration."""
        lib_dir = Path(self.get_ext_fullpath(ext.name)).parent / "native_lib"
        lib_dir.mkdir(parents=True, exist_ok=True)
        for name in names:
            src = ext.source_dir / "native" / "include" / name if name.endswith(".h") else build / "native" / name
            shutil.copy2(src, lib_dir / name)

    def _cmake(self, ext: CMakeExtension) -> None:
        args = []
        if os.environ.get("VLA_EDGE_GGML_DIR"):
            args.append(f"-DVLA_EDGE_GGML_DIR={os.environ['VLA_EDGE_GGML_DIR']}")
        if os.environ.get("VLA_EDGE_CUDA") == "1":
            args.append("-DVLA_EDGE_CUDA=ON")
        if os.environ.get("VLA_EDGE_LLAMAFILE") == "0":
            args.append("-DVLA_EDGE_LLAMAFILE=OFF")
        build = self._configure(ext, "cmake", args)
        self._build(build, "_native", "vla_edge", "vla_edge_safety", "vla_edge_example")
        self._install_module(build, ext, "_native")
        # libvla_edge finds libvla_edge_safety next to it (RPATH $ORIGIN).
        self._ship(build, ext, "libvla_edge.so", "libvla_edge_safety.so", "vla_edge.h", "vla_edge_safety.h", "vla_edge_policy.h",
                   "vla_edge_example")


def setup_kwargs(root: Path) -> dict:
    modules = [CMakeExtension("vla_edge._safety", root, runtime=False),
               CMakeExtension("vla_edge._policy_io", root, runtime=False, made_by_safety_build=True)]
    if os.environ.get("VLA_EDGE_BUILD_NATIVE") == "0":
        # No runtime extension at all: an editable install would otherwise try to copy a module
        # that was never built ("can't copy ..._native...so") and fail.
        print("vla-edge: VLA_EDGE_BUILD_NATIVE=0, skipping the native runtime (the safety core is still built)",
              file=sys.stderr)
    else:
        modules.append(CMakeExtension("vla_edge._native", root))
    return {"ext_modules": modules, "cmdclass": {"build_ext": CMakeBuild}}
