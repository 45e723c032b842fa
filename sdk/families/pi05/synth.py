"""Deterministic random-weight pi0.5 packs.

Real weights cannot be downloaded here, and latency/memory do not depend on weight values, so
tests (tiny) and benchmarks (full, ~3.4B parameters) run on packs synthesised by this module.
Weights are drawn per tensor from a generator keyed by (seed, tensor name) and written one tensor
at a time, so a full pack never needs more memory than its largest tensor.
"""

from __future__ import annotations

import io
import json
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import sentencepiece as spm

from ...packs.gguf_io import PlannedTensor, write_gguf
from ...packs.writer import PackBuilder
from .config import VARIANTS, Pi05Config
from .metadata import ARCH, config_to_metadata
from .tensors import TensorSpec, tensor_specs

TOKENIZER_VOCAB = 512

# Robot the synthesised pack is shaped for (spaces, cameras, stats); the demo drives a UR3.
DEFAULT_ROBOT = "ur3"
# model slot -> robot camera, by how many cameras the robot's simulator renders
_CAMERA_SLOTS = {
    "single": {"base_0_rgb": "base", "left_wrist_0_rgb": "wrist"},
    "bimanual": {"base_0_rgb": "base", "left_wrist_0_rgb": "left_wrist", "right_wrist_0_rgb": "right_wrist"},
}

_TASKS = [
    "pick up the red block and place it in the bowl", "open the top drawer", "close the drawer",
    "stack the blue cube on the green cube", "push the button", "put the cup on the plate",
    "wipe the table with the sponge", "fold the towel", "hand over the marker", "pour water into the glass",
    "move the arm to the left", "grasp the bottle", "turn the knob clockwise", "place the fork in the tray",
]


def _tensor_values(spec: TensorSpec, cfg: Pi05Config, seed: int) -> np.ndarray:
    rng = np.random.default_rng([seed, zlib.crc32(spec.name.encode())])
    name, shape = spec.name, spec.shape
    if len(shape) == 1:
        if ".ln" in name or "post_ln.weight" in name:
            values = 1.0 + 0.1 * rng.standard_normal(shape) if name.endswith("weight") else 0.02 * rng.standard_normal(shape)
        elif "norm.weight" in name:  # Gemma RMSNorm deltas
            values = 0.1 * rng.standard_normal(shape)
        else:  # biases
            values = 0.02 * rng.standard_normal(shape)
    else:
        fan_in = int(np.prod(shape[1:]))
        scale = 1.0 / np.sqrt(fan_in)
        if "_norm.weight" in name or "output_norm.weight" in name:  # AdaRMS modulation: keep it gentle
            scale *= 0.3
        values = scale * rng.standard_normal(shape, dtype=np.float32)
    values = values.astype(np.float32, copy=False)
    # The stored vision MLP is wider than the real one (alignment padding): padding must be zero.
    real, stored = cfg.vision.intermediate_size, cfg.vision.intermediate_size_stored
    if stored != real and name.startswith("v.blk."):
        if name.endswith("ffn_up.weight") or name.endswith("ffn_up.bias"):
            values[real:] = 0.0
        elif name.endswith("ffn_down.weight"):
            values[:, real:] = 0.0
    return values


def train_tokenizer(path: Path, seed: int) -> None:
    """Train a small SentencePiece model with PaliGemma's special ids (pad 0, eos 1, bos 2, unk 3)
    on robot-instruction text that includes the state-token template, so prompts tokenise sensibly."""
    rng = np.random.default_rng(seed)
    lines = []
    for _ in range(3000):
        task = _TASKS[rng.integers(len(_TASKS))]
        state = " ".join(str(v) for v in rng.integers(0, 256, size=rng.integers(6, 15)))
        lines.append(f"Task: {task}, State: {state};\nAction: ")
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(lines), model_writer=model, vocab_size=TOKENIZER_VOCAB, model_type="bpe",
        pad_id=0, eos_id=1, bos_id=2, unk_id=3, byte_fallback=True, user_defined_symbols=["\n"],
        normalization_rule_name="identity", remove_extra_whitespaces=False, split_digits=False,
        add_dummy_prefix=False,  # as Gemma's tokenizer: "\n" encodes to one piece, no leading space
        num_threads=1, shuffle_input_sentence=False, minloglevel=2,
    )
    path.write_bytes(model.getvalue())


def robot_spaces(robot: str) -> dict:
    """State/action spaces, cameras and norm stats for a robot from its shipped config: joints in
    the robot's order, stats centred on where its simulator starts (0 clipped into the operating
    range) so a random policy's chunks stay near the start pose. `libero` is not a robot but the
    LIBERO benchmark's spaces (end-effector state and delta actions, see eval/conventions.py)."""
    from ...robots.registry import load_registered_config

    if robot == "libero":
        from ...eval.conventions import libero_spaces

        return libero_spaces()

    cfg = load_registered_config(robot)
    grippers = {g.index for g in cfg.grippers}
    units = ["m" if i in grippers else "rad" for i in range(len(cfg.joints))]
    lo = np.array(cfg.limits.position_min or cfg.hardware_limits.position_min) + cfg.limits.position_margin
    hi = np.array(cfg.limits.position_max or cfg.hardware_limits.position_max) - cfg.limits.position_margin
    centre = np.clip(0.0, lo, hi)
    spread = np.minimum((hi - lo) / 4, 0.3)
    stats = {"mean": centre.tolist(), "std": (spread / 2).tolist(), "q01": (centre - spread).tolist(),
             "q99": (centre + spread).tolist()}
    cameras = _CAMERA_SLOTS["bimanual" if len(cfg.kinematics.arms) > 1 else "single"]
    return {
        "state_space": {"names": list(cfg.joints), "units": units},
        "action_space": {"names": list(cfg.joints), "units": units, "control_period_s": 0.05},
        "cameras": cameras,
        "required_cameras": ["base"],
        "norm_stats": {"norm_stats": {"state": stats, "actions": stats}},
    }


def _matrix_dtype(size: str, dtype: str | None) -> str:
    return (dtype or ("F32" if size == "tiny" else "F16")).upper()


TensorOverride = Callable[[str], "np.ndarray | None"]


def tensor_values(cfg: Pi05Config, seed: int) -> dict[str, np.ndarray]:
    """Every tensor of a synthesised pack, in memory (tiny packs only: the demo builder edits them)."""
    return {spec.name: _tensor_values(spec, cfg, seed) for spec in tensor_specs(cfg).values()}


def _planned(cfg: Pi05Config, dtype: str, seed: int, override: TensorOverride | None = None) -> list[PlannedTensor]:
    def values(spec: TensorSpec) -> np.ndarray:
        given = override(spec.name) if override is not None else None
        return _tensor_values(spec, cfg, seed) if given is None else np.asarray(given, dtype=np.float32)

    def plan(spec: TensorSpec) -> PlannedTensor:
        ggml_type = "F32" if len(spec.shape) == 1 else dtype
        return PlannedTensor(spec.name, spec.shape, ggml_type, lambda: values(spec))

    return [plan(s) for s in tensor_specs(cfg).values()]


def weight_bytes(size: str, dtype: str | None = None) -> int:
    """Bytes of tensor data a synthesised pack will hold (for progress bars and disk checks)."""
    return sum(t.n_bytes for t in _planned(VARIANTS[size], _matrix_dtype(size, dtype), 0))


def synth_pack(
    out: Path,
    size: str = "tiny",
    seed: int = 0,
    dtype: str | None = None,
    overwrite: bool = False,
    golden: bool | None = None,
    robot: str = DEFAULT_ROBOT,
    on_tensor: Callable[[str, int], None] | None = None,
    config: Pi05Config | None = None,
    spaces: dict | None = None,
    override: TensorOverride | None = None,
    name: str | None = None,
    source: dict | None = None,
    default_prompt: str | None = None,
) -> Path:
    """Write a complete, verifiable pack. dtype defaults to F32 for tiny and F16 (as released)
    for full; the golden output is computed for tiny packs (full would take minutes on a CPU).
    The demo builder passes its own config (horizon, state input), spaces (fitted norm stats),
    `override` (name -> tensor, or None for the seeded random one), name and provenance."""
    cfg = config or VARIANTS[size]
    spaces = dict(spaces or robot_spaces(robot))
    dtype = _matrix_dtype(size, dtype)
    golden = (size == "tiny") if golden is None else golden
    with PackBuilder(out, overwrite=overwrite) as builder:
        write_gguf(builder.staging / "pi05.gguf", ARCH, config_to_metadata(cfg), _planned(cfg, dtype, seed, override),
                   on_tensor=(lambda t: on_tensor(t.name, t.n_bytes)) if on_tensor else None)
        train_tokenizer(builder.staging / "tokenizer.model", seed)
        (builder.staging / "norm_stats.json").write_text(json.dumps(spaces.pop("norm_stats"), indent=1))
        return builder.finish(
            name=name or f"pi05-{size}-synthetic-seed{seed}",
            family="pi05",
            config=cfg.model_dump(mode="json"),
            recipe=dtype.lower(),
            targets=["reference", "x86"],
            **spaces,
            default_prompt=default_prompt or _TASKS[0],
            source=source or {"synthesized": True, "seed": seed, "size": size, "robot": robot,
                                "note": "random weights; not a trained policy"},
            golden_seed=seed if golden else None,
        )
