"""Build an MJCF scene (table, objects, arms, grippers, cameras) from a RobotConfig.

Why generated instead of hand-written XML: the arm geometry must equal what the safety filter's
forward kinematics computes, and one robot YAML can describe one arm or a bimanual pair. So each
arm becomes a chain of bodies whose frames are exactly the DH / URDF-chain frames of
`vla_edge.robots.kinematics`, with capsules drawn between joint origins (no meshes are shipped).

Frame conventions (what tests/robots/test_sim_fk.py checks against RobotKinematics):
- DH arm: body `{p}link{k}` carries hinge k about its local z; its child is placed at the DH link
  transform Tz(d) Tx(a) Rx(alpha) (with theta_offset folded in), the last one is `{p}flange`.
- Chain arm: body `{p}link{k}` sits at the URDF joint origin (xyz, rpy) and carries hinge k about
  `axis`; `{p}flange` coincides with the last link.
- Site `{p}tcp` is at the config's tool offset in the flange frame.
"""

from __future__ import annotations

from dataclasses import dataclass
from xml.sax.saxutils import quoteattr

import numpy as np

from ..config import RobotConfig
from ..kinematics import RobotKinematics
from ..kinematics.forward import ArmChain
from ..kinematics.transforms import dh_transforms, fixed_transform

LINK_RADIUS = 0.03
FINGER_HALF = (0.008, 0.008, 0.025)  # finger box half-sizes (m)


@dataclass(frozen=True)
class ArmLayout:
    """Names the simulator needs to find an arm's parts in the compiled model."""

    prefix: str
    joint_names: tuple[str, ...]  # hinge joint names, action order
    joint_indices: tuple[int, ...]  # indices into the robot's DOF vector
    gripper_index: int | None  # DOF index of this arm's gripper (opening width, m)
    finger_joints: tuple[str, str] | None
    wrist_camera: str | None


def _quat(rot: np.ndarray) -> str:
    """Rotation matrix -> MuJoCo 'w x y z' (Shepperd's method, robust near 180 deg)."""
    m = rot
    tr = m[0, 0] + m[1, 1] + m[2, 2]
    if tr > 0:
        s = 2.0 * np.sqrt(tr + 1.0)
        q = [0.25 * s, (m[2, 1] - m[1, 2]) / s, (m[0, 2] - m[2, 0]) / s, (m[1, 0] - m[0, 1]) / s]
    else:
        i = int(np.argmax([m[0, 0], m[1, 1], m[2, 2]]))
        j, k = (i + 1) % 3, (i + 2) % 3
        s = 2.0 * np.sqrt(1.0 + m[i, i] - m[j, j] - m[k, k])
        q = [0.0] * 4
        q[0] = (m[k, j] - m[j, k]) / s
        q[1 + i] = 0.25 * s
        q[1 + j] = (m[j, i] + m[i, j]) / s
        q[1 + k] = (m[k, i] + m[i, k]) / s
    return " ".join(f"{v:.12g}" for v in q)


def _vec(v: np.ndarray) -> str:
    return " ".join(f"{float(x):.12g}" for x in v)


def _pose_attr(t: np.ndarray) -> str:
    return f'pos="{_vec(t[:3, 3])}" quat="{_quat(t[:3, :3])}"'


def _link_frames(arm: ArmChain) -> tuple[list[np.ndarray], list[np.ndarray], np.ndarray]:
    """Per joint: body pose in its parent, hinge axis in the body frame; plus the flange pose in
    the last link body. All at q = 0, which is where MuJoCo's qpos0 puts the bodies."""
    n = arm.n_joints
    poses, axes = [], []
    if arm.dh is not None:
        offsets = arm.dh.theta_offset or [0.0] * n
        link = [dh_transforms(np.array([offsets[k]]), arm.dh.a[k], arm.dh.alpha[k], arm.dh.d[k])[0] for k in range(n)]
        poses = [np.eye(4)] + link[:-1]
        axes = [np.array([0.0, 0.0, 1.0])] * n
        return poses, axes, link[-1]
    for joint in arm.chain:
        poses.append(fixed_transform(np.array(joint.xyz), np.array(joint.rpy)))
        axes.append(np.asarray(joint.axis, dtype=float))
    return poses, axes, np.eye(4)


def _arm_xml(
    arm: ArmChain, layout: ArmLayout, lo: list[float], hi: list[float], gripper_range: tuple[float, float] | None
) -> str:
    poses, axes, flange = _link_frames(arm)
    p = layout.prefix
    out = [f'<body name="{p}base" childclass="arm" {_pose_attr(arm.base)}>',
           f'<geom type="cylinder" size="0.05 0.02" pos="0 0 0.02" rgba="0.2 0.2 0.2 1"/>']
    for k, (pose, axis) in enumerate(zip(poses, axes)):
        j = layout.joint_indices[k]
        if np.linalg.norm(pose[:3, 3]) > 1e-6:  # capsule from the parent frame origin to this joint
            out.append(f'<geom type="capsule" size="{LINK_RADIUS}" fromto="0 0 0 {_vec(pose[:3, 3])}" rgba="0.7 0.7 0.75 1"/>')
        out.append(f'<body name="{p}link{k + 1}" {_pose_attr(pose)}>')
        out.append(
            f'<joint name="{layout.joint_names[k]}" type="hinge" axis="{_vec(axis)}" range="{lo[j]:.9g} {hi[j]:.9g}" '
            'limited="true" armature="0.05" damping="1"/>'
        )
        out.append(f'<geom type="sphere" size="{LINK_RADIUS * 1.3}" rgba="0.3 0.4 0.8 1" mass="0.3"/>')
    if np.linalg.norm(flange[:3, 3]) > 1e-6:
        out.append(f'<geom type="capsule" size="{LINK_RADIUS}" fromto="0 0 0 {_vec(flange[:3, 3])}" rgba="0.7 0.7 0.75 1"/>')
    out.append(f'<body name="{p}flange" {_pose_attr(flange)}>')
    out.append(_tool_xml(arm, layout, gripper_range))
    out.append("</body>" * (len(poses) + 2))
    return "\n".join(out)


def _tool_xml(arm: ArmChain, layout: ArmLayout, gripper_range: tuple[float, float] | None) -> str:
    """TCP site, a two-finger gripper opening across the approach axis, and the wrist camera."""
    p = layout.prefix
    tcp = arm.tool[:3, 3]
    approach = tcp / np.linalg.norm(tcp) if np.linalg.norm(tcp) > 1e-6 else np.array([0.0, 0.0, 1.0])
    side = np.cross(approach, [0.0, 0.0, 1.0] if abs(approach[2]) < 0.9 else [1.0, 0.0, 0.0])
    side /= np.linalg.norm(side)
    up = np.cross(approach, side)
    frame = np.column_stack([side, up, approach])  # finger frame: x = opening direction, z = approach
    parts = [f'<site name="{p}tcp" pos="{_vec(tcp)}" size="0.01" rgba="1 0 0 1"/>']
    palm = tcp - approach * min(FINGER_HALF[2] * 2.0, max(float(np.dot(tcp, approach)) - 0.01, 0.0))
    if np.linalg.norm(palm) > 1e-3:
        parts.append(f'<geom type="capsule" size="0.02" fromto="0 0 0 {_vec(palm)}" rgba="0.25 0.25 0.25 1"/>')
    if layout.finger_joints is not None and gripper_range is not None:
        half_max = gripper_range[1] / 2.0
        for sign, jname in zip((1.0, -1.0), layout.finger_joints):
            parts.append(
                f'<body name="{jname}_body" pos="{_vec(palm + approach * FINGER_HALF[2])}" quat="{_quat(frame)}">'
                f'<joint name="{jname}" type="slide" axis="{sign:g} 0 0" range="0 {half_max:.9g}" limited="true" damping="5"/>'
                f'<geom type="box" size="{_vec(np.array(FINGER_HALF))}" pos="{sign * FINGER_HALF[0]:g} 0 0" '
                'rgba="0.9 0.5 0.1 1" mass="0.05" friction="1.5 0.01 0.001"/></body>'
            )
    if layout.wrist_camera is not None:
        # Behind and above the palm, looking along the approach axis; MuJoCo cameras look along -z.
        # Above the flange, looking at a point ahead of the fingertips (MuJoCo cameras look along -z).
        cam_pos = up * 0.08
        forward = tcp + approach * 0.15 - cam_pos
        forward /= np.linalg.norm(forward)
        right = np.cross(forward, up)
        right /= np.linalg.norm(right)
        cam_rot = np.column_stack([right, np.cross(right, forward), -forward])
        parts.append(f'<camera name="{layout.wrist_camera}" pos="{_vec(cam_pos)}" quat="{_quat(cam_rot)}" fovy="75"/>')
    return "\n".join(parts)


def _look_at(eye: np.ndarray, target: np.ndarray) -> str:
    """xyaxes for a fixed camera at `eye` looking at `target` with world z up."""
    forward = target - eye
    forward /= np.linalg.norm(forward)
    right = np.cross(forward, [0.0, 0.0, 1.0])
    right /= np.linalg.norm(right)
    up = np.cross(right, forward)
    return f'pos="{_vec(eye)}" xyaxes="{_vec(right)} {_vec(up)}"'


def _objects_xml(center: np.ndarray, rng: np.random.Generator) -> str:
    """A few graspable objects in front of the arms; the seed makes scenes reproducible."""
    shapes = [("box", "0.02 0.02 0.02", "0.8 0.2 0.2 1"), ("cylinder", "0.02 0.03", "0.2 0.7 0.2 1"),
              ("box", "0.025 0.015 0.015", "0.2 0.3 0.9 1")]
    out = []
    for i, (kind, size, rgba) in enumerate(shapes):
        xy = center[:2] + rng.uniform(-0.08, 0.08, size=2) + np.array([0.0, (i - 1) * 0.08])
        out.append(
            f'<body name="object{i}" pos="{xy[0]:.4f} {xy[1]:.4f} 0.04"><freejoint name="object{i}_free"/>'
            f'<geom type="{kind}" size="{size}" rgba="{rgba}" mass="0.05" conaffinity="3" friction="1.5 0.01 0.001"/></body>'
        )
    return "\n".join(out)


def arm_prefixes(n_arms: int) -> list[str]:
    return [""] if n_arms == 1 else (["left_", "right_"] if n_arms == 2 else [f"arm{i}_" for i in range(n_arms)])


def sim_camera_names(config: RobotConfig) -> tuple[str, ...]:
    """The config's cameras, or when it lists none (the shared YAML describes the real arm, which
    has no cameras of its own): a fixed `base` view plus one wrist camera per arm."""
    if config.cameras:
        return tuple(config.cameras)
    return ("base", *(f"{p}wrist" for p in arm_prefixes(len(config.kinematics.arms))))


def arm_layouts(config: RobotConfig) -> list[ArmLayout]:
    """Which DOFs, hinge names, gripper and wrist camera belong to each arm of `config`."""
    arms = config.kinematics.arms
    prefixes = arm_prefixes(len(arms))
    cameras = sim_camera_names(config)
    grippers = list(config.gripper_indices)
    layouts = []
    for a, (arm, p) in enumerate(zip(arms, prefixes)):
        # Action order is [arm joints, that arm's gripper] per arm, so an arm's gripper (if any)
        # is the DOF right after its last joint.
        after = max(arm.joint_indices) + 1
        gripper = after if after in grippers else None
        cam = f"{p}wrist"
        layouts.append(
            ArmLayout(
                prefix=p,
                joint_names=tuple(f"{p}joint{k + 1}" for k in range(len(arm.joint_indices))),
                joint_indices=tuple(arm.joint_indices),
                gripper_index=gripper,
                finger_joints=(f"{p}finger_a", f"{p}finger_b") if gripper is not None else None,
                wrist_camera=cam if cam in cameras else None,
            )
        )
    return layouts


def _scene_center(kin: RobotKinematics, dof: int) -> tuple[np.ndarray, np.ndarray]:
    """Where the table's objects go: 0.35 m from the arm bases in the horizontal direction the
    arms point at q = 0 (+x for ARX5, -x for a UR3 in its DH base frame), on the table top."""
    bases = np.array([a.base[:3, 3] for a in kin.arms])
    tcps = kin.tcp_positions(np.zeros(dof))[0]
    reach = (tcps - bases)[:, :2].mean(axis=0)
    direction = reach / np.linalg.norm(reach) if np.linalg.norm(reach) > 1e-3 else np.array([1.0, 0.0])
    center = bases.mean(axis=0)
    center[:2] += 0.35 * direction
    center[2] = 0.0
    return center, np.append(direction, 0.0)


def build_scene_xml(config: RobotConfig, timestep: float = 0.002, seed: int = 0) -> tuple[str, list[ArmLayout]]:
    """The whole scene as an MJCF string plus the name layout of each arm."""
    kin = RobotKinematics(config.kinematics)
    layouts = arm_layouts(config)
    hw = config.hardware_limits
    ranges = {g.index: (g.range[0], g.range[1]) for g in config.grippers}
    center, direction = _scene_center(kin, config.dof)
    arms_xml = [
        _arm_xml(arm, lay, hw.position_min, hw.position_max, ranges.get(lay.gripper_index)) for arm, lay in zip(kin.arms, layouts)
    ]
    fixed_cams = [c for c in sim_camera_names(config) if c not in {lay.wrist_camera for lay in layouts}]
    cams = []
    for i, name in enumerate(fixed_cams):
        # First fixed camera faces the arms from beyond the objects; any further ones look down.
        eye = center + 0.55 * direction + np.array([0.0, 0.0, 0.6]) if i == 0 else center + np.array([0.01, 0.0, 1.0])
        cams.append(f'<camera name={quoteattr(name)} {_look_at(eye, center)} fovy="60"/>')
    xml = f"""<mujoco model={quoteattr(config.name)}>
  <compiler angle="radian" autolimits="true"/>
  <option timestep="{timestep:g}" gravity="0 0 -9.81"/>
  <visual><global offwidth="640" offheight="640"/></visual>
  <default>
    <!-- Arms are driven kinematically: they push objects (contype 2 meets objects' conaffinity)
         but never collide with the table or themselves, which would only waste solver time. -->
    <default class="arm"><geom contype="2" conaffinity="0"/></default>
  </default>
  <worldbody>
    <light pos="0.3 0 1.5" dir="0 0 -1" directional="true"/>
    <geom name="floor" type="plane" size="2 2 0.05" pos="0 0 -0.75" rgba="0.4 0.4 0.4 1"/>
    <geom name="table" type="box" size="0.6 0.7 0.02" pos="{center[0]:.4f} {center[1]:.4f} -0.02" rgba="0.75 0.6 0.45 1"/>
    {"".join(cams)}
    {_objects_xml(center, np.random.default_rng(seed))}
    {"".join(arms_xml)}
  </worldbody>
</mujoco>"""
    return xml, layouts
