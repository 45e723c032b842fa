"""Target selection errors and the `infer` command on real image files."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from vla_edge import TargetUnavailableError, load_policy


def test_unknown_target_lists_what_can_run(tiny_pack_dir):
    with pytest.raises(TargetUnavailableError) as info:
        load_policy(tiny_pack_dir, target="tpu")
    msg = str(info.value)
    assert "unknown target 'tpu'" in msg and "reference (available" in msg


def test_target_not_listed_by_pack_is_refused(tiny_pack_copy):
    import yaml

    path = tiny_pack_copy / "pack.yaml"
    data = yaml.safe_load(path.read_text())
    data["targets"] = ["x86"]
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(TargetUnavailableError, match="does not list target 'reference'"):
        load_policy(tiny_pack_copy, target="reference")


def test_policy_info_reports_quantisation_and_memory(tiny_pack_dir):
    info = load_policy(tiny_pack_dir).info
    assert info.family == "pi05" and info.target == "reference" and info.quant_recipe == "f32"
    assert info.memory["weights_file_bytes"] > 1e6 and info.memory["process_rss_bytes"] > 1e6
    assert info.horizon == 10 and info.required_cameras == ("base",)


def test_infer_cli_reads_images_and_state(tiny_pack_dir, tmp_path, cli):
    rng = np.random.default_rng()
    base, wrist = tmp_path / "base.png", tmp_path / "wrist.jpg"
    Image.fromarray(rng.integers(0, 256, (240, 320, 3), dtype=np.uint8)).save(base)
    Image.fromarray(rng.integers(0, 256, (100, 100, 3), dtype=np.uint8)).save(wrist)
    state = ",".join(f"{v:.3f}" for v in rng.uniform(-0.2, 0.2, 6))
    out = cli("infer", "--pack", str(tiny_pack_dir), "--image", f"base={base}", "--image", f"wrist={wrist}",
              "--state", state, "--prompt", "close the drawer", "--seed", "3", "--json")
    assert out.returncode == 0, out.stderr
    chunk = json.loads(out.stdout)["chunk"]
    actions = np.array(chunk["actions"])
    assert actions.shape == (10, 6) and np.all(np.isfinite(actions))
    again = cli("infer", "--pack", str(tiny_pack_dir), "--image", f"base={base}", "--image", f"wrist={wrist}",
                "--state", state, "--prompt", "close the drawer", "--seed", "3", "--json")
    assert json.loads(again.stdout)["chunk"]["actions"] == chunk["actions"]


@pytest.mark.parametrize("args, fragment", [
    (["--image", "base"], "expected NAME=PATH"),
    (["--image", "base=/nonexistent.png", "--state", "1,2"], "cannot read image"),
    (["--state", "1,x,3", "--image", "base=/nonexistent.png"], "cannot read image"),
    ([], "give --image"),
])
def test_infer_cli_bad_arguments(tiny_pack_dir, args, fragment, cli):
    out = cli("infer", "--pack", str(tiny_pack_dir), *args)
    assert out.returncode == 2 and fragment in out.stderr and "Traceback" not in out.stderr
