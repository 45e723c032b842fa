"""Per-tensor activation statistics of every matmul input, accumulated over calibration inputs.

For each weight tensor W (used as x @ W.T) and every row x of its input activation:
- `sum_sq[c]` = sum of x[c]^2 and `count` = number of rows: llama.cpp's imatrix (the importance of
  input channel c is sum_sq[c] / count, the mean squared activation; ggml's K-quant quantisers
  minimise the rounding error weighted by it);
- `absmax` (per tensor) and `absmax_channel[c]`, and a histogram of |x| on log2-spaced bins, from
  which percentile ranges (INT8 / FP8 scales that clip the rare outliers) are read.
Tensors of the action expert are kept per flow step (leading axis = step; Omega-QVLA's A4 tables
are per step), everything else has a single "step". Sums are float64 so millions of rows add up
exactly enough; nothing here depends on the order the inputs arrive in except float rounding.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# |x| histogram: bin 0 holds |x| < 2**LOG2_LO (zeros included); then BINS_PER_OCTAVE bins per
# power of two up to 2**LOG2_HI; the last bin also takes anything larger.
LOG2_LO, LOG2_HI, BINS_PER_OCTAVE = -24, 24, 8
N_BINS = 1 + (LOG2_HI - LOG2_LO) * BINS_PER_OCTAVE


def histogram_upper_edges() -> np.ndarray:
    """Upper edge of every histogram bin (bin 0: 2**LOG2_LO; the last bin: +inf)."""
    edges = 2.0 ** (LOG2_LO + np.arange(1, N_BINS) / BINS_PER_OCTAVE)
    return np.concatenate([[2.0 ** LOG2_LO], edges[:-1], [np.inf]])


def abs_histogram(x: np.ndarray) -> np.ndarray:
    """Counts of |x| per log2 bin (see LOG2_LO / BINS_PER_OCTAVE)."""
    a = np.abs(x.ravel()).astype(np.float32)
    tiny = a < np.float32(2.0 ** LOG2_LO)
    idx = np.zeros(a.shape, np.int64)
    big = ~tiny
    idx[big] = 1 + np.floor((np.log2(a[big]) - LOG2_LO) * BINS_PER_OCTAVE).astype(np.int64)
    return np.bincount(np.clip(idx, 0, N_BINS - 1), minlength=N_BINS)


@dataclass
class TensorStats:
    """Statistics of one weight tensor's input, `steps` rows deep (1 outside the flow loop)."""

    sum_sq: np.ndarray  # [steps, n_in] float64
    count: np.ndarray  # [steps] int64, rows seen
    absmax: np.ndarray  # [steps] float32
    absmax_channel: np.ndarray  # [n_in] float32, over all steps
    hist: np.ndarray  # [steps, N_BINS] int64

    @classmethod
    def empty(cls, n_in: int, steps: int) -> "TensorStats":
        return cls(np.zeros((steps, n_in)), np.zeros(steps, np.int64), np.zeros(steps, np.float32),
                   np.zeros(n_in, np.float32), np.zeros((steps, N_BINS), np.int64))

    @property
    def n_in(self) -> int:
        return self.sum_sq.shape[1]

    @property
    def steps(self) -> int:
        return self.sum_sq.shape[0]

    def add(self, rows: np.ndarray, step: int = 0) -> None:
        """Accumulate activation rows [tokens, n_in] seen at flow step `step`."""
        x = rows.astype(np.float64, copy=False)
        self.sum_sq[step] += np.einsum("ti,ti->i", x, x)
        self.count[step] += rows.shape[0]
        a = np.abs(rows).max(axis=0)
        self.absmax_channel = np.maximum(self.absmax_channel, a)
        self.absmax[step] = max(float(self.absmax[step]), float(a.max()))
        self.hist[step] += abs_histogram(rows)

    def importance(self) -> np.ndarray:
        """llama.cpp imatrix value per input channel: mean squared activation over every step."""
        total = int(self.count.sum())
        if total == 0:
            raise ValueError("no activation rows were recorded")
        return (self.sum_sq.sum(axis=0) / total).astype(np.float32)

    def importance_spread(self) -> float:
        """max / mean of importance(): 1 when every input channel is equally loud. The imatrix can
        only protect channels that stand out (trained LLMs have outlier channels far above the
        mean); near 1 its weighting is close to uniform and cannot make a K-quant much better."""
        imp = self.importance()
        mean = float(imp.mean())
        return float(imp.max()) / mean if mean > 0 else float("nan")

    def percentile(self, q: float, step: int | None = None) -> float:
        """Upper bound of the q-th percentile (0..100) of |x| (a bin's upper edge, so a scale
        derived from it never clips more than 100-q percent), over all steps or one step."""
        hist = self.hist.sum(axis=0) if step is None else self.hist[step]
        total = int(hist.sum())
        if total == 0:
            raise ValueError("no activation rows were recorded")
        k = int(np.searchsorted(np.cumsum(hist), q / 100.0 * total, side="left"))
        absmax = float(self.absmax.max() if step is None else self.absmax[step])
        return min(float(histogram_upper_edges()[min(k, N_BINS - 1)]), absmax)


def fit_width(x: np.ndarray, n_in: int) -> np.ndarray:
    """The activation as [rows, n_in]: the zero columns a padded weight's input gets are dropped,
    a narrower activation (its weight stored padded) gets zeros, which is what the product sees."""
    rows = x.reshape(-1, x.shape[-1])
    if rows.shape[1] > n_in:
        return rows[:, :n_in]
    if rows.shape[1] < n_in:
        return np.pad(rows, ((0, 0), (0, n_in - rows.shape[1])))
    return rows


class ActivationCollector:
    """A `LinearObserver` for the reference model: one TensorStats per weight it sees.

    `widths` maps tensor name -> logical input width (the tensor inventory's); tensors not in it
    are ignored. `expert_steps` is the flow step count: inputs observed with a flow step get a
    per-step table of that depth."""

    def __init__(self, widths: dict[str, int], expert_steps: int):
        self.widths = widths
        self.expert_steps = expert_steps
        self.tensors: dict[str, TensorStats] = {}

    def __call__(self, name: str, x: np.ndarray, flow: tuple[int, int] | None) -> None:
        n_in = self.widths.get(name)
        if n_in is None:
            return
        steps = 1 if flow is None else self.expert_steps
        stats = self.tensors.get(name)
        if stats is None:
            stats = self.tensors[name] = TensorStats.empty(n_in, steps)
        if flow is not None and flow[1] != self.expert_steps:
            raise ValueError(f"{name}: flow loop has {flow[1]} steps, the collector expects {self.expert_steps}")
        if stats.steps != steps:
            raise ValueError(f"{name}: seen both inside and outside the flow loop")
        stats.add(fit_width(x, n_in), 0 if flow is None else flow[0])


def spread_summary(tensors: dict[str, TensorStats]) -> dict[str, float]:
    """Median and largest importance spread over the tensors that saw activations (see
    TensorStats.importance_spread), with the name of the largest."""
    spreads = {name: t.importance_spread() for name, t in tensors.items() if int(t.count.sum()) > 0}
    if not spreads:
        return {}
    loudest = max(spreads, key=spreads.get)
    return {"tensors": len(spreads), "median": float(np.median(list(spreads.values()))),
            "max": spreads[loudest], "max_tensor": loudest}
