"""Full-size pi0.5 fidelity against LeRobot's PI05Pytorch (issue 15's "done when"), as JSON.

    python benchmarks/fidelity_lerobot.py WORK_DIR [--obs 2] [--targets reference,x86,onnx]
        [--recipes q8_0,q4_k_m] [--reuse]

Runs LeRobot 0.6.1 (its own interpreter: tests/oracle/make_lerobot_env.sh) at full depth
(27 SigLIP, 18 + 18 Gemma layers, fp32, ~3.4B parameters + LeRobot's untied LM heads), records
every stage, imports the checkpoint LeRobot saved with `pack import --from checkpoint` (F32), and
reports the relative L2 error of every stage of the reference and of each target's chunk; then
each quantisation recipe on x86 against its F32 parent. Needs ~17 GB of RAM for LeRobot and
~35 GB of disk in WORK_DIR; --reuse keeps an earlier recording. Results go to
benchmarks/results/fidelity_lerobot.json. tests/oracle/test_lerobot_pi05.py checks the same
stages at every real width with 2 layers per stack.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "oracle"))

from lerobot_stages import lerobot_python, observations, reference_stage_errors, run_lerobot, worst  # noqa: E402

STAGES = ("vision", "prefix_k", "prefix_v", "time_cond", "velocity", "chunk")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("work", type=Path)
    ap.add_argument("--obs", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--targets", default="reference,x86,onnx")
    ap.add_argument("--recipes", default="q8_0,q4_k_m")
    ap.add_argument("--reuse", action="store_true", help="use WORK/stages.npz + WORK/ckpt from an earlier run")
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "fidelity_lerobot.json")
    args = ap.parse_args()

    from vla_edge.families.pi05.synth import synth_pack
    from vla_edge.importers.checkpoint import import_checkpoint
    from vla_edge.packs.pack import Pack
    from vla_edge.packs.quantize import quantize_pack
    from vla_edge.packs.writer import rel_l2
    from vla_edge.targets.reference.pi05_model import Pi05Reference
    from vla_edge.targets.registry import create_backend

    result: dict = {"lerobot": "0.6.1", "depth": "full", "obs": args.obs, "seed": args.seed}
    if args.reuse and args.out.is_file():  # same recording: add to what earlier runs measured
        earlier = json.loads(args.out.read_text())
        if all(earlier.get(k) == result[k] for k in ("obs", "seed")):
            result = earlier
    if not (args.reuse and (args.work / "stages.npz").is_file()):
        python = lerobot_python()
        if python is None:
            sys.exit("no interpreter with lerobot[pi]==0.6.1: run tests/oracle/make_lerobot_env.sh")
        start = time.perf_counter()
        run_lerobot(python, args.work, vision_layers=None, llm_layers=None, expert_layers=None, obs=args.obs,
                    seed=args.seed)
        result["lerobot_s"] = round(time.perf_counter() - start, 1)
    runs = observations(args.work)

    pack_dir = args.work / "pack-f32"
    if not pack_dir.is_dir():
        donor = synth_pack(args.work / "tiny", size="tiny", seed=0)  # tokenizer + stats: ids are fed directly
        for name in ("tokenizer.model", "norm_stats.json"):
            shutil.copy(donor / name, args.work / "ckpt" / name)
        import_checkpoint(args.work / "ckpt", pack_dir, dtype="f32", golden=False)
    pack = Pack.open(pack_dir)

    targets = [t for t in args.targets.split(",") if t]
    result.setdefault("targets", {})
    if "reference" in targets:
        model = Pi05Reference(pack.config, pack.weights.float32)
        per_obs = [reference_stage_errors(model, obs) for obs in runs]
        result["targets"]["reference"] = {
            "stages": {s: max(worst(e, s) for e in per_obs) for s in STAGES}, "per_obs": per_obs}
        print("reference", json.dumps(result["targets"]["reference"]["stages"]))
    for target in (t for t in targets if t != "reference"):
        backend = create_backend(target, pack)
        errs = [rel_l2(backend.sample_actions(obs.inputs()).actions, obs.stages["actions"]) for obs in runs]
        backend.close()
        result["targets"][target] = {"chunk": max(errs), "per_obs": errs}
        print(target, f"chunk rel-L2 vs LeRobot {max(errs):.2e}")

    result.setdefault("recipes_vs_f32_on_x86", {})
    recipes = [r for r in args.recipes.split(",") if r]
    if recipes:
        parent = create_backend("x86", pack)
        parent_chunks = [parent.sample_actions(obs.inputs()).actions for obs in runs]
        for recipe in recipes:
            child_dir = args.work / f"pack-{recipe}"
            if not child_dir.is_dir():
                quantize_pack(pack_dir, recipe, child_dir, golden=False)
            child = create_backend("x86", Pack.open(child_dir))
            errs = [rel_l2(child.sample_actions(obs.inputs()).actions, ref) for obs, ref in zip(runs, parent_chunks)]
            child.close()
            result["recipes_vs_f32_on_x86"][recipe] = {"mean": sum(errs) / len(errs), "max": max(errs)}
            print(recipe, f"chunk rel-L2 vs F32 parent: max {max(errs):.2e}")
    commit = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    result["commit"] = commit.stdout.strip()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
