"""benchmarks/libero_sim_bundle.py: how the LIBERO simulator reaches a machine without a package index
(a ~41 MB bundle instead of ~690 MB of wheels). The tracing needs LIBERO itself (run by hand, docs/eval.md);
what decides what travels is tested here: MJCF file references, the asset rule, and the split tarball
coming back byte for byte with the checksums its manifest states."""

from __future__ import annotations

import hashlib
import importlib.util
import io
import sys
import tarfile
from pathlib import Path, PurePosixPath

import numpy as np

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "libero_sim_bundle.py"


def _module():
    spec = importlib.util.spec_from_file_location("libero_sim_bundle", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # its dataclasses look their module up while being defined
    spec.loader.exec_module(mod)
    return mod


def test_mjcf_references_resolve_through_the_compiler_dirs(tmp_path):
    bundle = _module()
    (tmp_path / "meshes").mkdir()
    (tmp_path / "textures").mkdir()
    (tmp_path / "meshes" / "bowl.obj").write_text("o bowl\n")
    (tmp_path / "textures" / "wood.png").write_bytes(b"\x89PNG")
    (tmp_path / "textures" / "sky_right.png").write_bytes(b"\x89PNG")
    absolute = tmp_path / "plate.stl"
    absolute.write_bytes(b"solid")
    xml = f"""<mujoco><compiler meshdir="meshes" texturedir="textures"/>
      <asset><mesh name="b" file="bowl.obj"/><mesh name="p" file="{absolute}"/>
      <texture name="w" file="wood.png"/><texture name="s" type="skybox" fileright="sky_right.png"/>
      <mesh name="gone" file="missing.stl"/></asset></mujoco>"""
    found, missing = bundle._mjcf_file_refs(xml, tmp_path)
    assert found == {tmp_path / "meshes" / "bowl.obj", absolute, tmp_path / "textures" / "wood.png",
                     tmp_path / "textures" / "sky_right.png"}
    assert missing == {"missing.stl"}


def test_only_mesh_texture_and_xml_files_under_an_assets_folder_are_assets():
    bundle = _module()
    assert bundle._is_asset(PurePosixPath("robosuite/models/assets/robots/panda/meshes/link0.stl"))
    assert bundle._is_asset(PurePosixPath("libero/libero/assets/scenes/kitchen.xml"))
    assert not bundle._is_asset(PurePosixPath("robosuite/models/robots/panda.py"))       # code
    assert not bundle._is_asset(PurePosixPath("libero/libero/assets/README.bddl"))        # not a mesh/texture
    assert not bundle._is_asset(PurePosixPath("libero/libero/init_files/task.pruned_init"))
    assert not bundle._is_asset(PurePosixPath("mujoco/include/mujoco.xml"))               # no assets folder


def test_split_bundle_reassembles_to_the_same_files_and_checksums(tmp_path):
    bundle = _module()
    rng = np.random.default_rng()
    src = tmp_path / "src"
    src.mkdir()
    files = {}
    for i in range(6):  # incompressible contents, so the 3-part split is real
        data = rng.integers(0, 256, int(rng.integers(20_000, 60_000)), dtype=np.uint8).tobytes()
        (src / f"f{i}.bin").write_bytes(data)
        files[f"pkg/sub{i % 2}/f{i}.bin"] = data
    entries = [bundle.Entry(name, len(data), source=src / Path(name).name) for name, data in files.items()]
    entries.append(bundle.Entry("pkg/mod.so", 5, data=b"\x7fELF!"))
    files["pkg/mod.so"] = b"\x7fELF!"
    out = tmp_path / "out"
    out.mkdir()
    part_bytes = sum(len(d) for d in files.values()) // 3 + 1
    whole_sha, parts, tar_bytes = bundle.pack(entries, out, part_bytes, 1)
    written = sorted(out.glob("part-*"))
    assert len(written) >= 3 and all(p.stat().st_size <= part_bytes for p in written)
    joined = b"".join(p.read_bytes() for p in written)
    assert hashlib.sha256(joined).hexdigest() == whole_sha
    assert [p["sha256"] for p in parts] == [hashlib.sha256(p.read_bytes()).hexdigest() for p in written]
    with tarfile.open(fileobj=io.BytesIO(joined), mode="r:xz") as tar:
        got = {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}
        so_mode = tar.getmember("pkg/mod.so").mode
    assert got == files and tar_bytes > sum(len(d) for d in files.values())
    assert so_mode & 0o111  # shared objects stay loadable
