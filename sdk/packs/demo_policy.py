"""The built-in demo policy: a tiny pi0.5 pack fitted, when it is built, to a demonstration
rendered in the simulator.

What it is (and is not): the vision tower and language model keep seeded random weights; the
action expert is *set* so that the flow lands, in its first Euler step, on a target read out
linearly from the prefix (the expert attends uniformly to the cached prefix values, and its
output projection holds the readout); the readout is *fitted* by ridge regression (closed form,
float64) to the simulator's scripted demonstration (robots/sim/operator.py): the camera
images of the arm along its reach toward the red cube, each paired with where the arm is
`LOOKAHEAD_S` later. It is a real pi0.5 pack run by the real forward pass on every target, with
delta joint actions; it is not a trained VLA: it follows one demonstration it has seen, from the
camera alone, and its chunk holds one target pose (every row equal), which the run loop reaches
with a smooth cross-fade. Deterministic; a few seconds to build on 2 cores.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import VlaEdgeError

log = logging.getLogger(__name__)

DEMO_HORIZON = 50  # rows per chunk: pi0.5's own horizon
DEMO_PERIOD_S = 0.1  # a chunk covers 5 s: latency + one replan interval (1.5 s) with room, even on the NumPy reference
LOOKAHEAD_S = 1.5  # the target is where the demonstrated arm is this much later (latency + cross-fade)
DEMO_SAMPLES = 40  # observations rendered along one demonstration loop
DEMO_PROMPT = "reach toward the red cube"
DEMO_FLOW_STEPS = 1
_RIDGE = 1e-3  # ridge strength, relative to the mean feature variance
_BIAS = 1e4  # constant residual component: keeps RMSNorm's scale fixed, so the expert stays linear


@dataclass(frozen=True)
class DemoFit:
    """What the fit achieved, recorded in the pack's provenance."""

    samples: int
    features: int
    rms_error_rad: float  # leave-one-out, in robot units
    demonstration: str


def sim_robot_name(robot: str) -> str:
    """The simulator that renders a robot's demonstration (ur3 -> ur3-sim)."""
    return robot if robot.endswith("-sim") else f"{robot}-sim"


def _render_demonstration(robot: str):
    """(camera images: n dicts name -> [H,W,3], states [n,dof], future [n,dof], loop, config)
    along one loop of the scripted operator, from the simulator in fast mode."""
    from ..robots.config import load_robot_config
    from ..robots.registry import create_robot

    cfg = load_robot_config(sim_robot_name(robot))
    cfg = cfg.model_copy(update={"connection": {**dict(cfg.connection or {}), "operator": "demo", "realtime": False}})
    sim = create_robot(cfg, shadow=True)
    sim.connect()
    try:
        loop = sim.operator
        period = cfg.control_period_s
        every = max(1, int(round(loop.period_s / DEMO_SAMPLES / period)))
        images, states, times = [], [], []
        for _ in range(DEMO_SAMPLES):
            state = sim.read_state()
            images.append(sim.read_cameras())  # every camera the simulator renders, as in a run
            states.append(state.q.copy())
            times.append(float(state.status["sim_time"]))
            sim.step(every)
        synthetic = getattr(sim._renderer, "synthetic", False)
    finally:
        sim.disconnect()
    future = loop.positions(np.asarray(times) + LOOKAHEAD_S)
    if synthetic:
        log.warning("demo pack fitted to SYNTHETIC camera images (MuJoCo rendering unavailable here)")
    return images, np.stack(states), future, loop, cfg


def _spaces(robot: str, deltas: np.ndarray) -> dict:
    """The robot's spaces with delta joint actions and action stats from the demonstration."""
    from ..families.pi05.synth import robot_spaces

    spaces = robot_spaces(robot.removesuffix("-sim"))
    dof = deltas.shape[1]
    pad = np.maximum(0.1 * (deltas.max(0) - deltas.min(0)), 0.02)
    lo, hi = deltas.min(0) - pad, deltas.max(0) + pad
    stats = spaces["norm_stats"]["norm_stats"]
    stats["actions"] = {"mean": ((lo + hi) / 2).tolist(), "std": ((hi - lo) / 4).tolist(),
                        "q01": lo.tolist(), "q99": hi.tolist()}
    spaces["action_space"] = {**spaces["action_space"], "control_period_s": DEMO_PERIOD_S,
                              "delta_mask": [True] * dof}
    return spaces  # cameras: the robot's (base required, wrists optional), as the demonstration renders them


def _prefix_features(pack_dir: Path, images: list[dict[str, np.ndarray]], states: np.ndarray) -> np.ndarray:
    """What the expert's uniform attention reads: per LLM layer, the prefix values summed and
    divided by (prefix + horizon) tokens - exactly as the forward computes it."""
    from ..families.pi05.pi05_features import prefix_value_pool

    return prefix_value_pool(pack_dir, images, states, DEMO_PROMPT)


def _ridge(features: np.ndarray, targets: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """targets ~ features @ P.T + c (float64); returns P, c and the leave-one-out RMS residual."""
    f = features.astype(np.float64)
    mu, y_mu = f.mean(0), targets.mean(0)
    fc, yc = f - mu, targets - y_mu
    lam = _RIDGE * float(np.mean(fc.var(0))) * len(f)
    gram = fc @ fc.T  # dual form: fewer samples than features
    inv = np.linalg.inv(gram + lam * np.eye(len(f)))
    alpha = inv @ yc
    p = (fc.T @ alpha).T
    hat = gram @ inv
    loo = (yc - hat @ yc) / (1.0 - np.diag(hat))[:, None]
    return p, y_mu - p @ mu, float(np.sqrt(np.mean(loo**2)))


def _expert_tensors(cfg, readout: np.ndarray, offset: np.ndarray) -> dict[str, np.ndarray]:
    """Action-expert weights for v(x) = N (x - a_hat), a_hat = offset + readout @ pooled values:
    one Euler step of size 1/N lands on a_hat exactly and later steps stay there."""
    e, a_dim, n = cfg.expert, cfg.action_dim, cfg.num_flow_steps
    d, head = e.hidden_size, e.head_dim
    if d < 2 * a_dim + 1:
        raise VlaEdgeError(f"demo policy needs expert width >= {2 * a_dim + 1}, got {d}")
    t: dict[str, np.ndarray] = {}
    w_in = np.zeros((d, a_dim))
    w_in[:a_dim] = np.eye(a_dim)
    t["action.action_in.weight"], t["action.action_in.bias"] = w_in, np.eye(d)[d - 1] * _BIAS
    for i in range(e.num_layers):
        b = f"action.blk.{i}."
        for name in ("attn_q", "attn_k", "attn_v"):  # q = 0: uniform attention; suffix values 0
            t[b + name + ".weight"] = np.zeros(((e.num_heads if name == "attn_q" else e.num_kv_heads) * head, d))
        w_o = np.zeros((d, e.num_heads * head))
        w_o[a_dim:2 * a_dim, :head] = -readout[:, i * head:(i + 1) * head]
        t[b + "attn_output.weight"] = w_o
        gate_on = np.concatenate([np.zeros(2 * d), np.ones(d)])  # [scale | shift | gate]
        t[b + "attn_norm.weight"], t[b + "attn_norm.bias"] = np.zeros((3 * d, d)), gate_on
        t[b + "ffn_norm.weight"], t[b + "ffn_norm.bias"] = np.zeros((3 * d, d)), np.zeros(3 * d)
    rms = _BIAS / np.sqrt(d)  # the residual's RMS, fixed by the bias to < 1e-6 relative
    t["action.output_norm.weight"] = np.zeros((3 * d, d))
    t["action.output_norm.bias"] = np.concatenate([np.full(d, rms - 1.0), np.zeros(2 * d)])
    w_out = np.zeros((a_dim, d))
    w_out[:, :a_dim] = n * np.eye(a_dim)
    w_out[:, a_dim:2 * a_dim] = n * np.eye(a_dim)
    t["action.action_out.weight"], t["action.action_out.bias"] = w_out, -n * offset
    return t


def build_demo_pack(out: Path, robot: str, seed: int = 0) -> Path:
    """Render the demonstration, fit the readout, write the pack (atomically) to `out`."""
    from ..families.pi05.config import TINY
    from ..families.pi05.synth import synth_pack
    from .norm_stats import Stats

    # One flow step: the set expert lands on its target in the first Euler step anyway, and ten
    # steps over 50 action tokens would cost the NumPy reference seconds per chunk.
    cfg = TINY.model_copy(update={"action_horizon": DEMO_HORIZON, "discrete_state_input": False,
                                  "num_flow_steps": DEMO_FLOW_STEPS})
    images, states, future, loop, robot_cfg = _render_demonstration(robot)
    deltas = future - states
    spaces = _spaces(robot, deltas)
    # Stage 1: the random pack, to compute the prefix features exactly as the forward will.
    scratch = out.with_name(out.name + ".features")
    synth_pack(scratch, size="tiny", seed=seed, overwrite=True, golden=False, config=cfg, spaces=spaces,
               default_prompt=DEMO_PROMPT)
    try:
        features = _prefix_features(scratch, images, states)
    finally:
        import shutil

        shutil.rmtree(scratch, ignore_errors=True)
    stats = spaces["norm_stats"]["norm_stats"]["actions"]
    action_stats = Stats(**{k: np.asarray(v) for k, v in stats.items()})
    targets = action_stats.normalize(deltas)
    readout, offset, loo = _ridge(features, targets)
    dof = deltas.shape[1]
    full_readout = np.zeros((cfg.action_dim, features.shape[1]))
    full_readout[:dof] = readout
    full_offset = np.zeros(cfg.action_dim)
    full_offset[:dof] = offset
    tensors = _expert_tensors(cfg, full_readout, full_offset)
    scale = (np.asarray(stats["q99"]) - np.asarray(stats["q01"])) / 2
    fit = DemoFit(len(features), features.shape[1], float(loo * np.sqrt(np.mean(scale**2))), loop.describe())
    name = out.name
    return synth_pack(out, size="tiny", seed=seed, overwrite=True, config=cfg, spaces=spaces,
                      override=tensors.get, name=name, default_prompt=DEMO_PROMPT,
                      source={"synthesized": True, "seed": seed, "size": "tiny", "robot": robot_cfg.name,
                              "demo_fit": fit.__dict__,
                              "note": "demo policy: random vision/LLM, action expert set to a ridge readout "
                                      "fitted to a scripted simulator demonstration; not a trained VLA"})
