"""The error of each quantised product on real activations: what an importance matrix is for.

Weighing a pack's rounding error by the importance its quantiser fitted (the calibration file's own
statistics) cannot tell whether the imatrix helps on other inputs, nor catch an importance row laid
against the wrong input channels. This measures it directly: ||X (W - Q(W))^T||^2 per K-quant
tensor, X being the parent's own product inputs (its x86 graph's matmul observer) on observations
the caller chooses (e.g. those a calibration file held out)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from vla_edge.packs.pack import Pack
from vla_edge.packs.quantize import K_QUANT_TYPES

PARTS = {"v.": "vision", "pali.": "llm", "action.": "expert"}


def product_errors(parent: Any, observations: Iterable[tuple[Any, np.ndarray | None]], variants: Mapping[str, Path],
                   rows_per_call: int | None = None, seed: int = 0) -> dict[str, Any]:
    """`parent`: the parent pack's x86 Policy (its observer is set for the run and cleared after).
    Per variant of `variants` (name -> quantised pack of that parent) the squared product error
    summed over every K-quant tensor the graph runs, in total and per part of the model, float64.
    rows_per_call: rows sampled per product call (None: all of them), drawn from `seed`. Also
    returned: how many K-quant tensors the variants have and which were measured (the graph skips
    what feeds nothing the action needs, e.g. the last LLM block's q / o / FFN)."""
    rng = np.random.default_rng(seed)
    inputs: dict[str, list[np.ndarray]] = {}

    def keep(name: str, x: np.ndarray) -> None:
        x = np.asarray(x)
        if rows_per_call is not None and x.shape[0] > rows_per_call:
            x = x[rng.choice(x.shape[0], size=rows_per_call, replace=False)]
        inputs.setdefault(name, []).append(np.array(x, np.float64))

    runtime = parent._backend.runtime
    runtime.set_matmul_observer(keep)
    try:
        for obs, noise in observations:
            parent.infer(obs, noise=noise)
    finally:
        runtime.set_matmul_observer(None)
    packs = {name: Pack.open(path, check="size").weights for name, path in variants.items()}
    types = {n: i.ggml_type for n, i in next(iter(packs.values())).tensor_infos().items()}
    k_quant = [n for n, t in types.items() if t in K_QUANT_TYPES]
    measured = [n for n in k_quant if n in inputs]
    out: dict[str, Any] = {name: {"total": 0.0, "by_part": {}} for name in packs}
    for tensor in measured:
        x = np.concatenate(inputs[tensor])
        w = parent.pack.weights.float32(tensor)
        n_in = w.shape[-1]
        w = w.reshape(-1, n_in).astype(np.float64)
        part = next((p for prefix, p in PARTS.items() if tensor.startswith(prefix)), "other")
        for name, pack in packs.items():
            q = pack.float32(tensor)[..., :n_in].reshape(-1, n_in)
            err = float(np.sum((x[:, :n_in] @ (w - q).T) ** 2))
            out[name]["total"] += err
            out[name]["by_part"][part] = out[name]["by_part"].get(part, 0.0) + err
    return {"k_quant_tensors": len(k_quant), "measured": measured, "rows_per_call": rows_per_call, "variants": out}
