"""Writes Omega-QVLA pi0.5 W4A4 packs (`quantized.pt`) in the released layout, built the way
tools/build_pi05_a2lite_gptq_perstep.py builds them (github.com/UCMP13753/Omega-QVLA @ 4ddc959),
written here independently of the importer:

- per expert linear: zigzag input permutation by weight energy, svd_hadamard input rotation
  blocks (U of the block's SVD times a normalised Hadamard), SVD output rotation blocks;
- RTN weights (`--use-rtn`) on the rotated weight: per row and 128-column block, symmetric,
  scale from the MSE grid max|w| / 7 / alpha, alpha in {0.5, 0.75, 1, 1.25, 1.5}; stored dense fp16;
- per-step activation scale table: quantile 99.9 % of |x_rotated| / 7 per channel, from inputs
  captured while the fp32 reference runs the base pack (step = 0-based Euler step);
- record keys, dtypes and the `__meta__` dict as the builder writes them.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from checkpoint_layout import source_key
from vla_edge import load_policy
from vla_edge.packs.golden import random_observation
from vla_edge.targets.reference import ops

BLOCK, BLOCK_OUT, GPTQ_BLOCK, PERCENTILE = 64, 64, 128, 0.999
EXPERT_PROJ = ("attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down")


def expert_layers(num_layers: int) -> list[str]:
    return [f"action.blk.{i}.{p}.weight" for i in range(num_layers) for p in EXPERT_PROJ]


def module_name(pack_name: str) -> str:
    return source_key(pack_name).removesuffix(".weight")


def capture_inputs(pack_dir: Path, names: list[str], n_obs: int, seed: int) -> dict[str, dict[int, np.ndarray]]:
    """Inputs of each named linear per flow step, from the fp32 reference on random observations."""
    policy = load_policy(pack_dir, target="reference")
    model = policy._backend.model
    seen: dict[str, dict[int, list[np.ndarray]]] = {n: defaultdict(list) for n in names}

    def recorder(name: str) -> Callable:
        def run(x, step, num_steps):
            seen[name][step].append(np.asarray(x, np.float32).reshape(-1, x.shape[-1]))
            return ops.linear(x, model.w(name))
        return run

    model.quantized = {n: recorder(n) for n in names}
    rng = np.random.default_rng(seed)
    for _ in range(n_obs):
        noise = rng.standard_normal(policy.noise_shape).astype(np.float32)
        policy.infer(random_observation(policy.pack, rng), noise=noise)
    return {n: {t: np.concatenate(v) for t, v in steps.items()} for n, steps in seen.items()}


def _hadamard(n: int) -> np.ndarray:
    h = np.array([[1.0]])
    while h.shape[0] < n:
        h = np.block([[h, h], [h, -h]])
    return h / np.sqrt(n)


def _zigzag(energy: np.ndarray) -> np.ndarray:
    order = list(np.argsort(-energy))
    return np.array([order.pop(0) if i % 2 == 0 else order.pop() for i in range(len(energy))], np.int64)


def _block_diag(blocks: np.ndarray) -> np.ndarray:
    n, b, _ = blocks.shape
    full = np.zeros((n * b, n * b))
    for i, r in enumerate(blocks):
        full[i * b:(i + 1) * b, i * b:(i + 1) * b] = r
    return full


def _pad_blocks(blocks: np.ndarray, size: int) -> np.ndarray:
    """The builder stacks blocks zero-padded to the configured block size (a short last block
    then does not tile the width, and GptqLinear falls back to the dense rotation)."""
    n, b, _ = blocks.shape
    out = np.zeros((n, size, size))
    out[:, :b, :b] = blocks
    return out


def rtn_mse(w: np.ndarray) -> np.ndarray:
    """Symmetric 4-bit RTN per row and GPTQ block, best of Omega's alpha grid; dense values."""
    out = np.empty_like(w)
    for start in range(0, w.shape[1], GPTQ_BLOCK):
        blk = w[:, start:start + GPTQ_BLOCK]
        base = np.maximum(np.abs(blk).max(axis=1), 1e-8) / 7
        best, best_err = None, None
        for alpha in (0.5, 0.75, 1.0, 1.25, 1.5):
            s = (base / alpha)[:, None]
            rec = np.clip(np.rint(blk / s), -8, 7) * s
            err = ((rec - blk) ** 2).mean(axis=1)
            if best is None:
                best, best_err = rec, err
            else:
                better = err < best_err
                best[better], best_err[better] = rec[better], err[better]
        out[:, start:start + GPTQ_BLOCK] = best
    return out


def omega_record(w: np.ndarray, per_step: dict[int, np.ndarray], num_steps: int, rotate: bool = True) -> dict:
    """rotate=False: a record without any duquant_* key (GptqLinear then runs the layer
    unrotated), the weight quantised as it is."""
    out_f, in_f = w.shape
    perm = _zigzag(0.85 * (w ** 2).mean(axis=0) + 0.15 * (w ** 2).mean()) if rotate else np.arange(in_f)
    wp = w[:, perm]
    bi, bo = min(BLOCK, in_f), min(BLOCK_OUT, out_f)  # a narrow layer is one short block
    if rotate:
        r_in = np.stack([np.linalg.svd(wp[:, b:b + bi].T)[0] @ _hadamard(bi) for b in range(0, in_f, bi)])
        r_out = np.stack([np.linalg.svd(w[b:b + bo, :])[0] for b in range(0, out_f, bo)])
    else:
        r_in, r_out = np.ones((in_f, 1, 1)), np.ones((out_f, 1, 1))  # identity, as blocks of one
    r_in_full, r_out_full = _block_diag(r_in), _block_diag(r_out)
    w_rot = r_out_full @ wp @ r_in_full
    table = np.zeros((num_steps, in_f), np.float32)
    for t, x in per_step.items():
        xr = x[:, perm].astype(np.float64) @ r_in_full
        table[t] = np.maximum(np.quantile(np.abs(xr), PERCENTILE, axis=0), 1e-6) / 7
    dense_rot = np.zeros((in_f, in_f))
    dense_rot[perm, np.arange(in_f)] = 1
    dense_rot = dense_rot @ r_in_full
    f16 = lambda a: torch.from_numpy(np.ascontiguousarray(a, np.float32)).to(torch.float16)  # noqa: E731
    record = {
        "format": "dit_svdquant_v1",
        "weight_res_q": f16(rtn_mse(w_rot)),
        "lowrank_A": torch.zeros(out_f, 0, dtype=torch.float16),
        "lowrank_B": torch.zeros(in_f, 0, dtype=torch.float16),
        "act_scale_table": torch.from_numpy(table),
        "duquant_rotation": f16(dense_rot),
        "duquant_rotation_blocks": f16(_pad_blocks(r_in, BLOCK)),
        "duquant_rotation_perm": torch.from_numpy(perm),
        "weight_bits": 4, "a_bits": 4, "rank": 0, "in_features": in_f, "out_features": out_f,
        "n_calib_total": int(sum(len(x) for x in per_step.values())),
        "n_calib_per_step": [int(len(per_step.get(t, ()))) for t in range(num_steps)],
        "act_percentile": 99.9, "gptq_damp_percent": 0.05,
        "duquant_rotation_out": f16(r_out_full),
        "duquant_rotation_out_blocks": f16(_pad_blocks(r_out, BLOCK_OUT)),
    }
    return record if rotate else {k: v for k, v in record.items() if not k.startswith("duquant_")}


def build_records(pack_dir: Path, names: list[str] | None = None, n_obs: int = 2, seed: int = 7,
                  rotate: bool = True) -> dict:
    """{module name: record, "__meta__": meta} for the base pack's expert linears (fp16 weights)."""
    policy = load_policy(pack_dir, target="reference")
    cfg = policy.pack.config
    names = names or expert_layers(cfg.expert.num_layers)
    captured = capture_inputs(pack_dir, names, n_obs, seed)
    gguf = policy.pack.weights
    records: dict = {}
    for name in names:
        w = gguf.float32(name).astype(np.float16).astype(np.float64)  # as the fp16 base checkpoint holds it
        records[module_name(name)] = omega_record(w, captured[name], cfg.num_flow_steps, rotate)
    records["__meta__"] = {
        "format": "pi05_a2lite_gptq_perstep_v1", "checkpoint": "/ckpts/pi05_libero_pytorch", "max_samples": n_obs,
        "gptq_damp_percent": 0.05, "duquant_block_size": BLOCK, "duquant_block_out": BLOCK_OUT,
        "rot_mode": "svd_hadamard", "perm": "weight-zigzag", "num_steps": cfg.num_flow_steps,
        "act_percentile": 99.9, "a_bits": 4, "w_bits": 4,
    }
    return records


def write_quantized_pt(records: dict, out_dir: Path) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    torch.save(records, out_dir / "quantized.pt")
    return out_dir / "quantized.pt"
