"""Batched homogeneous transforms (numpy). Every function takes a leading batch axis so the safety
filter can evaluate a whole braking plan in one call instead of a Python loop per tick."""

from __future__ import annotations

import numpy as np


def rpy_matrix(rpy: np.ndarray) -> np.ndarray:
    """URDF fixed-axis roll-pitch-yaw -> rotation matrix: R = Rz(yaw) @ Ry(pitch) @ Rx(roll)."""
    r, p, y = (float(v) for v in rpy)
    cr, sr, cp, sp, cy, sy = np.cos(r), np.sin(r), np.cos(p), np.sin(p), np.cos(y), np.sin(y)
    return np.array(
        [
            [cy * cp, cy * sp * sr - sy * cr, cy * sp * cr + sy * sr],
            [sy * cp, sy * sp * sr + cy * cr, sy * sp * cr - cy * sr],
            [-sp, cp * sr, cp * cr],
        ]
    )


def fixed_transform(xyz: np.ndarray, rpy: np.ndarray) -> np.ndarray:
    """4x4 transform of a URDF `<origin xyz rpy>`."""
    t = np.eye(4)
    t[:3, :3] = rpy_matrix(rpy)
    t[:3, 3] = np.asarray(xyz, dtype=float)
    return t


def dh_transforms(theta: np.ndarray, a: float, alpha: float, d: float) -> np.ndarray:
    """Standard DH link transform Rz(theta) Tz(d) Tx(a) Rx(alpha) for a batch of angles -> (B,4,4)."""
    ct, st = np.cos(theta), np.sin(theta)
    ca, sa = np.cos(alpha), np.sin(alpha)
    out = np.zeros(theta.shape + (4, 4))
    out[:, 0, 0] = ct
    out[:, 0, 1] = -st * ca
    out[:, 0, 2] = st * sa
    out[:, 0, 3] = a * ct
    out[:, 1, 0] = st
    out[:, 1, 1] = ct * ca
    out[:, 1, 2] = -ct * sa
    out[:, 1, 3] = a * st
    out[:, 2, 1] = sa
    out[:, 2, 2] = ca
    out[:, 2, 3] = d
    out[:, 3, 3] = 1.0
    return out


def axis_rotations(angle: np.ndarray, axis: np.ndarray) -> np.ndarray:
    """Rotation by `angle` (B,) about a fixed unit `axis` (Rodrigues) -> (B,4,4)."""
    k = np.asarray(axis, dtype=float)
    k = k / np.linalg.norm(k)
    kx = np.array([[0.0, -k[2], k[1]], [k[2], 0.0, -k[0]], [-k[1], k[0], 0.0]])
    c, s = np.cos(angle)[:, None, None], np.sin(angle)[:, None, None]
    out = np.zeros(angle.shape + (4, 4))
    out[:, :3, :3] = np.eye(3) + s * kx + (1.0 - c) * (kx @ kx)
    out[:, 3, 3] = 1.0
    return out
