"""The calibration file: exact round trip, provenance, and refusal of damaged or foreign files."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from vla_edge.calibration.calibfile import FORMAT, VERSION, Calibration, load_calibration, save_calibration
from vla_edge.calibration.matching import check_matches, input_widths
from vla_edge.errors import ConfigError
from vla_edge.packs.hashing import sha256_file
from vla_edge.packs.pack import Pack


def test_round_trip_is_exact_and_records_identity_and_provenance(calib_file, tiny_pack_dir, obs_dir, tmp_path):
    calib = load_calibration(calib_file)
    pack = Pack.open(tiny_pack_dir, check="size")
    h = calib.header
    assert (h["format"], h["version"], h["target"]) == (FORMAT, VERSION, "reference")
    assert h["pack"]["weights_sha256"] == pack.manifest.files.weights.sha256
    assert h["pack"]["manifest_sha256"] == sha256_file(tiny_pack_dir / "pack.yaml")
    assert h["pack"]["num_flow_steps"] == pack.config.num_flow_steps
    used = {d["id"] for d in h["data"]["calibration"]}
    held = {d["id"] for d in h["data"]["held_out"]}
    assert len(held) == 2 and len(used) == 6 and not used & held  # 25% of 8 kept aside
    assert all(d["path"].startswith(str(obs_dir.resolve())) for d in h["data"]["held_out"])
    assert set(calib.tensors) == set(input_widths(pack))  # every matmul weight, nothing else

    copy = save_calibration(tmp_path / "copy.npz", Calibration(dict(h), calib.tensors))
    again = load_calibration(copy)
    assert again.header == calib.header
    for name, stats in calib.tensors.items():
        for field in ("sum_sq", "count", "absmax", "absmax_channel", "hist"):
            np.testing.assert_array_equal(getattr(again.tensors[name], field), getattr(stats, field))


def _rewrite(src, dst, edit):
    with np.load(src) as data:
        arrays = {k: data[k] for k in data.files}
    header = json.loads(str(arrays["header"]))
    edit(header, arrays)
    arrays["header"] = np.array(json.dumps(header))
    np.savez(dst, **arrays)
    return dst


@pytest.mark.parametrize("edit, message", [
    (lambda h, a: h.update(format="other"), "format 'other'"),
    (lambda h, a: h.update(version=99), "version 99"),
    (lambda h, a: a.pop("v.blk.0.attn_q.weight/hist"), "unreadable calibration file"),
    (lambda h, a: a.update({"mm.0.weight/sum_sq": np.zeros((2, 3))}), "mm.0.weight"),
])
def test_damaged_files_are_refused_naming_the_problem(calib_file, tmp_path, edit, message):
    bad = _rewrite(calib_file, tmp_path / "bad.npz", edit)
    with pytest.raises(ConfigError, match=message) as err:
        load_calibration(bad)
    assert str(bad) in str(err.value)


def test_not_a_zip_is_refused(tmp_path):
    bad = tmp_path / "junk.npz"
    bad.write_bytes(b"not a zip")
    with pytest.raises(ConfigError, match="unreadable"):
        load_calibration(bad)


def test_save_into_a_missing_directory_is_refused_without_a_file(calib_file, tmp_path):
    calib = load_calibration(calib_file)
    with pytest.raises(ConfigError, match="does not exist"):
        save_calibration(tmp_path / "nope" / "c.npz", calib)
    assert not (tmp_path / "nope").exists()


# ---- matching a pack ----------------------------------------------------------------------------

def test_matching_file_is_accepted(calib_file, tiny_pack_dir):
    pack = Pack.open(tiny_pack_dir, check="size")
    check_matches(load_calibration(calib_file), pack, list(input_widths(pack)))


def test_other_pack_is_refused(calib_file, tmp_path):
    from vla_edge.families.pi05.synth import synth_pack

    other = Pack.open(synth_pack(tmp_path / "other", size="tiny", seed=7, golden=False), check="size")
    with pytest.raises(ConfigError, match="collected on pack .* not on") as err:
        check_matches(load_calibration(calib_file), other, [])
    assert "weights sha256" in str(err.value)


def test_other_step_count_is_refused(calib_file, tiny_pack_dir, tmp_path):
    bad = _rewrite(calib_file, tmp_path / "steps.npz", lambda h, a: h["pack"].update(num_flow_steps=5))
    pack = Pack.open(tiny_pack_dir, check="size")
    with pytest.raises(ConfigError, match="collected with 5 flow steps, pack .* runs 10"):
        check_matches(load_calibration(bad), pack, [])


def test_missing_tensor_and_wrong_channels_are_named(calib_file, tiny_pack_dir):
    pack = Pack.open(tiny_pack_dir, check="size")
    calib = load_calibration(calib_file)
    del calib.tensors["pali.blk.1.ffn_down.weight"]
    with pytest.raises(ConfigError, match="no statistics for tensor.*pali.blk.1.ffn_down.weight"):
        check_matches(calib, pack, ["pali.blk.0.attn_q.weight", "pali.blk.1.ffn_down.weight"])
    calib = load_calibration(calib_file)
    stats = calib.tensors["pali.blk.0.attn_q.weight"]
    stats.sum_sq = stats.sum_sq[:, :100]
    with pytest.raises(ConfigError, match=r"pali.blk.0.attn_q.weight: 100 input channels, .* has 256"):
        check_matches(calib, pack, ["pali.blk.0.attn_q.weight"])
    calib = load_calibration(calib_file)
    stats = calib.tensors["action.blk.0.ffn_up.weight"]
    stats.sum_sq, stats.count = stats.sum_sq[:1], stats.count[:1]
    with pytest.raises(ConfigError, match="action.blk.0.ffn_up.weight: 1 flow-step tables, expected 10"):
        check_matches(calib, pack, ["action.blk.0.ffn_up.weight"])


def test_observation_folder_defects_are_named(obs_dir, tmp_path):
    from vla_edge.calibration.observations import read_observation, samples_from

    bad = tmp_path / "bad"
    shutil.copytree(obs_dir / "s00", bad / "s00")
    (bad / "s00" / "state.json").write_text('{"state": [1, 2]}')
    with pytest.raises(ConfigError, match="state.json.*'prompt'"):
        read_observation(bad / "s00")
    (bad / "s00" / "state.json").write_text('{"state": [1, 2], "prompt": "x"}')
    (bad / "s00" / "base.npy").parent.mkdir(exist_ok=True)
    np.save(bad / "s00" / "base.npy", np.zeros((4, 4), np.uint8))
    with pytest.raises(ConfigError, match="base.npy.*HxWx3 uint8"):
        read_observation(bad / "s00")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ConfigError, match="no observations"):
        samples_from(empty)
