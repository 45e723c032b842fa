"""The calibration file `vla-edge calibrate` writes and the quantisers read.

One `.npz` (NumPy's zip of arrays, no pickles): a JSON header under the key `header` and, per
weight tensor T, the arrays `T/sum_sq` [steps, n_in] float64, `T/count` [steps] int64,
`T/absmax` [steps] float32, `T/absmax_channel` [n_in] float32 and `T/hist` [steps, N_BINS] int64
(see stats.py). The header carries the format name and version, the pack's identity (manifest
and weights sha256, name, variant, flow steps), the data's provenance (sources, the ids and paths
of the samples used and of those held out, the noise seed) and the histogram's bin layout.
Consumers call `check_matches` before using it, which refuses a file made for another pack.
"""

from __future__ import annotations

import json
import os
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from vla_edge.errors import ConfigError

from .stats import BINS_PER_OCTAVE, LOG2_HI, LOG2_LO, N_BINS, TensorStats

FORMAT = "vla-edge-calibration"
VERSION = 1
_FIELDS = ("sum_sq", "count", "absmax", "absmax_channel", "hist")


@dataclass
class Calibration:
    header: dict[str, Any]
    tensors: dict[str, TensorStats]

    @property
    def pack(self) -> dict[str, Any]:
        return self.header["pack"]

    @property
    def held_out(self) -> list[dict[str, str]]:
        """[{id, path}] of the observations kept out of the statistics."""
        return list(self.header["data"]["held_out"])


def histogram_layout() -> dict[str, int]:
    return {"log2_lo": LOG2_LO, "log2_hi": LOG2_HI, "bins_per_octave": BINS_PER_OCTAVE, "n_bins": N_BINS}


def save_calibration(path: Path, calib: Calibration) -> Path:
    """Write atomically (a temporary file renamed into place): no partial file on any error."""
    path = Path(path)
    if not path.parent.is_dir():
        raise ConfigError("--out", f"directory {path.parent} does not exist")
    header = {**calib.header, "format": FORMAT, "version": VERSION, "histogram": histogram_layout(),
              "tensors": {n: {"n_in": s.n_in, "steps": s.steps, "rows": int(s.count.sum())}
                          for n, s in calib.tensors.items()}}
    arrays = {"header": np.array(json.dumps(header))}
    for name, stats in calib.tensors.items():
        arrays.update({f"{name}/{f}": getattr(stats, f) for f in _FIELDS})
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            np.savez_compressed(fh, **arrays)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    calib.header = header
    return path


def load_calibration(path: Path) -> Calibration:
    """Read and check a calibration file; a defect names the file and the key."""
    path = Path(path)
    where = str(path)
    try:
        with np.load(path, allow_pickle=False) as data:
            if "header" not in data.files:
                raise ConfigError(where, f"not a {FORMAT} file (no 'header')")
            header = json.loads(str(data["header"]))
            if header.get("format") != FORMAT:
                raise ConfigError(where, f"format '{header.get('format')}', expected '{FORMAT}'")
            if header.get("version") != VERSION:
                raise ConfigError(where, f"version {header.get('version')}, this vla-edge reads version {VERSION}")
            if header.get("histogram") != histogram_layout():
                raise ConfigError(f"{where}:histogram", f"bin layout {header.get('histogram')}, "
                                                        f"expected {histogram_layout()}")
            tensors = {}
            for name, info in header["tensors"].items():
                stats = TensorStats(*(data[f"{name}/{f}"] for f in _FIELDS))
                if stats.sum_sq.shape != (info["steps"], info["n_in"]) or stats.hist.shape != (info["steps"], N_BINS):
                    raise ConfigError(f"{where}:{name}", f"arrays {stats.sum_sq.shape} do not match the header "
                                                         f"({info['steps']} steps x {info['n_in']} channels)")
                tensors[name] = stats
    except ConfigError:
        raise
    except (OSError, ValueError, KeyError, zipfile.BadZipFile, json.JSONDecodeError) as exc:
        raise ConfigError(where, f"unreadable calibration file: {exc}") from exc
    return Calibration(header, tensors)
