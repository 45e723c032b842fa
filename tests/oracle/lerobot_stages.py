"""vla-edge's side of the LeRobot oracle: run a pack on LeRobot's recorded inputs, stage by stage.

`lerobot_pi05_run.py` (under LeRobot's interpreter) records what LeRobot's PI05Pytorch computes;
this module recomputes each stage with a vla-edge target from the *same* inputs and reports the
relative L2 error per stage, so a mismatch is located, not just detected:

  vision      SigLIP + projector tokens of each present camera
  prefix_k/v  per-layer K (after RoPE) and V of the prefix, LeRobot's padding dropped
  time_cond   the AdaRMS conditioning (sinusoidal time -> MLP) of each flow step
  velocity    each step's velocity, evaluated at LeRobot's own x_t for that step (so errors of
              earlier steps do not compound into later ones)
  chunk       the whole chunk after all Euler steps, from the same noise
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vla_edge.families.pi05.inputs import Pi05Inputs
from vla_edge.packs.writer import rel_l2

RUNNER = Path(__file__).with_name("lerobot_pi05_run.py")
ENV_PYTHON = "VLA_EDGE_LEROBOT_PYTHON"  # an interpreter with lerobot[pi]==0.6.1 installed
DEFAULT_PYTHON = Path(__file__).resolve().parents[2] / ".venv-lerobot" / "bin" / "python"  # make_lerobot_env.sh
CAMERA_SLOTS = ("base_0_rgb", "left_wrist_0_rgb")  # the slots lerobot_pi05_run.py fills, in order


def lerobot_python() -> Path | None:
    """The interpreter that has LeRobot, or None (tests then skip, saying how to make one)."""
    configured = os.environ.get(ENV_PYTHON)
    candidate = Path(configured) if configured else DEFAULT_PYTHON
    if not candidate.is_file():
        return None
    probe = subprocess.run([str(candidate), "-c", "import lerobot.policies.pi05"], capture_output=True)
    return candidate if probe.returncode == 0 else None


def run_lerobot(python: Path, out: Path, *, vision_layers: int | None, llm_layers: int | None,
                expert_layers: int | None, obs: int, seed: int) -> Path:
    """Record LeRobot's stages into `out` (ckpt/ + stages.npz); returns `out`."""
    args = [str(python), str(RUNNER), "--out", str(out), "--obs", str(obs), "--seed", str(seed)]
    for flag, value in (("--vision-layers", vision_layers), ("--llm-layers", llm_layers),
                        ("--expert-layers", expert_layers)):
        if value is not None:
            args += [flag, str(value)]
    done = subprocess.run(args, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"LeRobot oracle failed (exit {done.returncode}):\n{done.stdout[-2000:]}\n"
                           f"{done.stderr[-4000:]}")
    return out


@dataclass(frozen=True)
class Observation:
    """One recorded observation: LeRobot's inputs and every stage it computed."""

    stages: dict[str, np.ndarray]

    def inputs(self) -> Pi05Inputs:
        s = self.stages
        return Pi05Inputs(images=s["images"], image_slots=CAMERA_SLOTS[: len(s["images"])], tokens=s["tokens"],
                          noise=s["noise"], num_steps=len(s["velocity"]))


def observations(run_dir: Path) -> list[Observation]:
    data = np.load(run_dir / "stages.npz")
    n = int(data["num_obs"])
    return [Observation({key.split("_", 1)[1]: data[key] for key in data.files if key.startswith(f"obs{i}_")})
            for i in range(n)]


def reference_stage_errors(model, obs: Observation) -> dict[str, float]:
    """rel-L2 of each stage of the NumPy reference (`Pi05Reference`) against LeRobot's."""
    s, inputs = obs.stages, obs.inputs()
    errors: dict[str, float] = {}
    vision = [model.vision(img) for img in inputs.images]
    errors["vision"] = rel_l2(np.stack(vision), s["vision"])
    cache = model.prefix_cache(np.concatenate(vision + [model.embed_text(inputs.tokens)]).astype(np.float32))
    for i in range(len(cache.keys)):
        errors[f"prefix_k.{i}"] = rel_l2(cache.keys[i], s["keys"][i])
        errors[f"prefix_v.{i}"] = rel_l2(cache.values[i], s["values"][i])
    steps = inputs.num_steps
    for step in range(steps):
        t = float(s["time"][step])
        errors[f"time_cond.{step}"] = rel_l2(model.time_condition(t, (step, steps)), s["time_cond"][step])
        errors[f"velocity.{step}"] = rel_l2(model.velocity(s["x_t"][step], t, cache, (step, steps)),
                                            s["velocity"][step])
    chunk, _ = model.sample_actions(inputs)
    errors["chunk"] = rel_l2(chunk, s["actions"])
    return errors


def worst(errors: dict[str, float], stage: str) -> float:
    """The largest error of a stage family (`prefix_k` covers every layer's K)."""
    return max(v for k, v in errors.items() if k == stage or k.startswith(stage + "."))


def main() -> None:
    """python tests/oracle/lerobot_stages.py RUN_DIR PACK_DIR: print every stage's error."""
    from vla_edge.packs.pack import Pack
    from vla_edge.targets.reference.pi05_model import Pi05Reference

    run_dir, pack_dir = Path(sys.argv[1]), Path(sys.argv[2])
    pack = Pack.open(pack_dir)
    model = Pi05Reference(pack.config, pack.weights.float32)
    for i, obs in enumerate(observations(run_dir)):
        errors = reference_stage_errors(model, obs)
        for name in ("vision", "prefix_k", "prefix_v", "time_cond", "velocity", "chunk"):
            print(f"obs {i} {name:10s} worst rel-L2 {worst(errors, name):.2e}")


if __name__ == "__main__":
    main()
