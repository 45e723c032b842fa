"""Pack synth / inspect / verify, and every way a pack can be broken."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import yaml

from vla_edge import PackError, load_policy
from vla_edge.packs.gguf_io import GGUFFile, PlannedTensor, write_gguf
from vla_edge.packs.hashing import sha256_file
from vla_edge.packs.pack import Pack
from vla_edge.packs.verify import verify_pack


def reseal(pack_dir: Path, role: str = "weights") -> None:
    """Update pack.yaml's checksum/size for a file a test rewrote on purpose (so the defect
    under test is the content, not the checksum)."""
    path = pack_dir / "pack.yaml"
    data = yaml.safe_load(path.read_text())
    f = pack_dir / data["files"][role]["path"]
    data["files"][role].update(sha256=sha256_file(f), size=f.stat().st_size)
    path.write_text(yaml.safe_dump(data, sort_keys=False))


def edit_manifest(pack_dir: Path, edit) -> None:
    path = pack_dir / "pack.yaml"
    data = yaml.safe_load(path.read_text())
    edit(data)
    path.write_text(yaml.safe_dump(data, sort_keys=False))


def rewrite_gguf(pack_dir: Path, change: dict[str, np.ndarray | None]) -> None:
    """Rewrite pi05.gguf with some tensors replaced (array) or dropped (None)."""
    src = GGUFFile(pack_dir / "pi05.gguf")
    meta, infos = src.metadata, src.tensor_infos()
    meta.pop("general.architecture", None)
    planned = []
    for name, info in infos.items():
        if name in change and change[name] is None:
            continue
        value = change.get(name, src.float32(name))
        planned.append(PlannedTensor(name, tuple(value.shape), "F32", lambda v=value: v))
    out = pack_dir / "rewritten.gguf"
    write_gguf(out, "pi05", meta, planned)
    del src
    out.replace(pack_dir / "pi05.gguf")
    reseal(pack_dir)


def errors(pack_dir: Path) -> list[str]:
    return [f"{f.where}: {f.message}" for f in verify_pack(pack_dir) if f.level == "error"]


def test_synth_is_deterministic_and_verifies(tiny_pack_dir, tmp_path):
    from vla_edge.families.pi05.synth import synth_pack

    again = synth_pack(tmp_path / "again", size="tiny", seed=0)
    other = synth_pack(tmp_path / "other", size="tiny", seed=1)
    for name in ("pi05.gguf", "tokenizer.model", "golden.npz", "pack.yaml"):
        assert sha256_file(again / name) == sha256_file(tiny_pack_dir / name)
    assert sha256_file(other / "pi05.gguf") != sha256_file(tiny_pack_dir / "pi05.gguf")
    assert errors(tiny_pack_dir) == []
    assert not list(tmp_path.glob(".*partial*"))
    # a pack folder gets mkdir's permissions, not a temp folder's owner-only 0700
    umask = os.umask(0)
    os.umask(umask)
    assert (again.stat().st_mode & 0o777) == 0o777 & ~umask


def test_synth_refuses_existing_dir_and_leaves_nothing_on_failure(tmp_path, monkeypatch):
    from vla_edge.families.pi05 import synth

    (tmp_path / "exists").mkdir()
    with pytest.raises(PackError, match="already exists"):
        synth.synth_pack(tmp_path / "exists", size="tiny")

    def boom(*a, **k):
        raise RuntimeError("disk full")

    monkeypatch.setattr(synth, "train_tokenizer", boom)
    with pytest.raises(RuntimeError):
        synth.synth_pack(tmp_path / "new", size="tiny")
    assert not (tmp_path / "new").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["exists"]


def test_cli_inspect_json_and_verify_exit_codes(tiny_pack_copy, cli):
    out = cli("pack", "inspect", str(tiny_pack_copy), "--json")
    assert out.returncode == 0, out.stderr
    info = json.loads(out.stdout)
    assert info["family"] == "pi05" and info["variant"] == "tiny"
    assert info["groups"]["llm"]["tensors"] == 18 and info["quantization"]["bits_per_weight"] == 32.0
    assert cli("pack", "verify", str(tiny_pack_copy)).returncode == 0
    with open(tiny_pack_copy / "pi05.gguf", "r+b") as fh:
        fh.seek(4_000_000)
        byte = fh.read(1)
        fh.seek(4_000_000)
        fh.write(bytes([byte[0] ^ 0x5A]))
    bad = cli("pack", "verify", str(tiny_pack_copy), "--json")
    assert bad.returncode == 1
    report = json.loads(bad.stdout)
    assert not report["ok"] and any("sha256 mismatch" in f["message"] and "pi05.gguf" in f["where"]
                                    for f in report["findings"])


def test_corrupt_byte_is_refused_at_load(tiny_pack_copy):
    with open(tiny_pack_copy / "tokenizer.model", "r+b") as fh:
        fh.seek(100)
        fh.write(b"\x00\x01")
    with pytest.raises(PackError, match="tokenizer.model.*corrupted"):
        load_policy(tiny_pack_copy)


def test_missing_file(tiny_pack_copy, cli):
    (tiny_pack_copy / "norm_stats.json").unlink()
    assert any("norm_stats.json: missing norm_stats" in e for e in errors(tiny_pack_copy))
    with pytest.raises(PackError, match="missing norm_stats"):
        Pack.open(tiny_pack_copy)
    out = cli("infer", "--pack", str(tiny_pack_copy), "--golden")
    assert out.returncode == 2 and "missing norm_stats" in out.stderr and "Traceback" not in out.stderr


def test_wrong_tensor_shape_is_named(tiny_pack_copy):
    rng = np.random.default_rng()
    rewrite_gguf(tiny_pack_copy, {"pali.blk.1.attn_k.weight": rng.standard_normal((32, 256)).astype(np.float32)})
    errs = errors(tiny_pack_copy)
    assert any("pali.blk.1.attn_k.weight" in e and "shape [32, 256], expected [64, 256]" in e for e in errs), errs


def test_missing_tensor_is_named(tiny_pack_copy):
    rewrite_gguf(tiny_pack_copy, {"action.blk.0.ffn_norm.bias": None})
    assert any("'action.blk.0.ffn_norm.bias'" in e and "missing" in e for e in errors(tiny_pack_copy))


@pytest.mark.parametrize("keep", [0.5, 0.999])
def test_truncated_gguf_never_crashes(tiny_pack_copy, keep):
    path = tiny_pack_copy / "pi05.gguf"
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    reseal(tiny_pack_copy)
    errs = errors(tiny_pack_copy)
    assert any("pi05.gguf" in e and ("truncated" in e or "not a readable GGUF" in e) for e in errs), errs


def test_garbage_gguf_is_reported(tiny_pack_copy):
    (tiny_pack_copy / "pi05.gguf").write_bytes(np.random.default_rng().bytes(4096))
    reseal(tiny_pack_copy)
    assert any("not a readable GGUF" in e for e in errors(tiny_pack_copy))


@pytest.mark.parametrize(
    "edit, fragment",
    [
        (lambda d: d.update(family="gr00t-n1.5"), "not supported yet"),
        (lambda d: d.update(family="llama"), "unknown model family"),
        (lambda d: d.update(format_version=9), "unsupported pack format version 9"),
        (lambda d: d.update(surprise=1), "field 'surprise'"),
        (lambda d: d["files"]["weights"].update(path="../../etc/passwd"), "files.weights.path"),
        (lambda d: d.update(required_cameras=["thermal"]), "required camera 'thermal'"),
        (lambda d: d["action_space"].update(units=["rad"]), "action_space"),
    ],
)
def test_bad_manifest_is_named(tiny_pack_copy, edit, fragment):
    edit_manifest(tiny_pack_copy, edit)
    errs = errors(tiny_pack_copy)
    assert any(fragment in e for e in errs), errs


def test_pack_for_another_config_is_refused(tiny_pack_copy):
    edit_manifest(tiny_pack_copy, lambda d: d["config"]["llm"].update(num_layers=3))
    # the expert must match the LLM depth, so change both: a different, self-consistent config
    edit_manifest(tiny_pack_copy, lambda d: d["config"]["expert"].update(num_layers=3))
    errs = errors(tiny_pack_copy)
    assert any("llm.num_layers: file 2 vs pack.yaml 3" in e for e in errs), errs
    assert any("'pali.blk.2.attn_q.weight'" in e and "missing" in e for e in errs), errs


def test_golden_mismatch_is_reported(tiny_pack_copy):
    path = tiny_pack_copy / "golden.npz"
    with np.load(path) as data:
        arrays = dict(data)
    arrays["actions"] = arrays["actions"] * 1.01
    np.savez(path, **arrays)
    reseal(tiny_pack_copy, "golden")
    errs = errors(tiny_pack_copy)
    assert any(e.startswith("golden (reference)") and "rel-L2 9.90e-03 vs tolerance 1e-04" in e for e in errs), errs


def test_demo_pack_is_created_on_first_use_and_repaired(tmp_path, monkeypatch):
    from vla_edge.packs import demo

    monkeypatch.setenv("VLA_EDGE_CACHE_DIR", str(tmp_path))
    path = demo.demo_pack_path()
    assert path.parent == tmp_path / "packs" and verify_pack(path)[-1].level == "ok"
    (path / "pi05.gguf").write_bytes(b"junk")
    assert demo.demo_pack_path() == path
    assert errors(path) == []


def test_synth_follows_the_robot_spaces(tmp_path):
    from vla_edge.families.pi05.synth import synth_pack
    from vla_edge.robots.registry import load_registered_config

    pack_dir = synth_pack(tmp_path / "bi", size="tiny", seed=2, robot="arx5-bimanual")
    pack = Pack.open(pack_dir)
    joints = load_registered_config("arx5-bimanual").joints
    assert pack.manifest.action_space.names == list(joints) and len(joints) == 14
    assert set(pack.manifest.cameras.values()) == {"base", "left_wrist", "right_wrist"}
    assert errors(pack_dir) == []
