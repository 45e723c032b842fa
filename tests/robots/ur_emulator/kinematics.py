"""UR3 forward kinematics (UR's published standard DH parameters) so the emulator can report
a TCP pose that moves consistently with the joints. Test-only; accuracy is the DH model's."""

from __future__ import annotations

import numpy as np

UR3_D = (0.1519, 0.0, 0.0, 0.11235, 0.08535, 0.0819)
UR3_A = (0.0, -0.24365, -0.21325, 0.0, 0.0, 0.0)
UR3_ALPHA = (np.pi / 2, 0.0, 0.0, np.pi / 2, -np.pi / 2, 0.0)


def _dh(theta: float, d: float, a: float, alpha: float) -> np.ndarray:
    ct, st, ca, sa = np.cos(theta), np.sin(theta), np.cos(alpha), np.sin(alpha)
    return np.array(
        [[ct, -st * ca, st * sa, a * ct], [st, ct * ca, -ct * sa, a * st], [0, sa, ca, d], [0, 0, 0, 1.0]]
    )


def rotation_vector(r: np.ndarray) -> np.ndarray:
    """Axis-angle vector of a rotation matrix (UR's rx, ry, rz convention)."""
    cos_angle = np.clip((np.trace(r) - 1.0) / 2.0, -1.0, 1.0)
    angle = float(np.arccos(cos_angle))
    if angle < 1e-9:
        return np.zeros(3)
    if np.pi - angle < 1e-6:  # near pi: axis from the diagonal
        axis = np.sqrt(np.maximum((np.diag(r) + 1.0) / 2.0, 0.0))
        axis[1] = np.copysign(axis[1], r[0, 1] + r[1, 0]) if axis[0] > 1e-6 else axis[1]
        axis[2] = np.copysign(axis[2], r[0, 2] + r[2, 0]) if axis[0] > 1e-6 else axis[2]
        return axis / np.linalg.norm(axis) * angle
    axis = np.array([r[2, 1] - r[1, 2], r[0, 2] - r[2, 0], r[1, 0] - r[0, 1]]) / (2.0 * np.sin(angle))
    return axis * angle


def ur3_tcp_pose(q: np.ndarray) -> list[float]:
    """[x, y, z, rx, ry, rz] of the tool flange in the base frame."""
    t = np.eye(4)
    for i in range(6):
        t = t @ _dh(float(q[i]), UR3_D[i], UR3_A[i], UR3_ALPHA[i])
    return [float(v) for v in (*t[:3, 3], *rotation_vector(t[:3, :3]))]
