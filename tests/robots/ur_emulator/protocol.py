"""RTDE wire format, written from UR's public RTDE guide (protocol version 2).

Every message is `uint16 size (header included) | uint8 type | payload`, big-endian. The
controller answers recipe setups with the RTDE type name of each requested variable (or
NOT_FOUND), and data packages carry `uint8 recipe id | values packed in recipe order`.
"""

from __future__ import annotations

import socket
import struct

HEADER = struct.Struct(">HB")

REQUEST_PROTOCOL_VERSION = ord("V")
GET_URCONTROL_VERSION = ord("v")
TEXT_MESSAGE = ord("M")
DATA_PACKAGE = ord("U")
SETUP_OUTPUTS = ord("O")
SETUP_INPUTS = ord("I")
START = ord("S")
PAUSE = ord("P")

# RTDE type name -> struct format of one value (big-endian, no header).
TYPE_FORMATS = {
    "BOOL": "?",
    "UINT8": "B",
    "UINT32": "I",
    "UINT64": "Q",
    "INT32": "i",
    "DOUBLE": "d",
    "VECTOR3D": "3d",
    "VECTOR6D": "6d",
    "VECTOR6INT32": "6i",
    "VECTOR6UINT32": "6I",
}

_VECTOR6D_OUT = (
    "target_q target_qd target_qdd target_current target_moment actual_q actual_qd actual_qdd "
    "actual_current actual_moment joint_control_output actual_TCP_pose actual_TCP_speed "
    "actual_TCP_force target_TCP_pose target_TCP_speed joint_temperatures actual_joint_voltage "
    "ft_raw_wrench payload_inertia tcp_offset"
).split()
_DOUBLE_OUT = (
    "timestamp actual_execution_time speed_scaling target_speed_fraction actual_momentum "
    "actual_main_voltage actual_robot_voltage actual_robot_current standard_analog_input0 "
    "standard_analog_input1 standard_analog_output0 standard_analog_output1 payload"
).split()

OUTPUT_TYPES: dict[str, str] = {name: "VECTOR6D" for name in _VECTOR6D_OUT}
OUTPUT_TYPES.update({name: "DOUBLE" for name in _DOUBLE_OUT})
OUTPUT_TYPES.update(
    {
        "actual_digital_input_bits": "UINT64",
        "actual_digital_output_bits": "UINT64",
        "robot_mode": "INT32",
        "safety_mode": "INT32",
        "safety_status": "INT32",
        "joint_mode": "VECTOR6INT32",
        "actual_tool_accelerometer": "VECTOR3D",
        "payload_cog": "VECTOR3D",
        "elbow_position": "VECTOR3D",
        "elbow_velocity": "VECTOR3D",
        "runtime_state": "UINT32",
        "robot_status_bits": "UINT32",
        "safety_status_bits": "UINT32",
        "output_bit_registers0_to_31": "UINT32",
        "output_bit_registers32_to_63": "UINT32",
    }
)
for _i in range(48):
    OUTPUT_TYPES[f"output_int_register_{_i}"] = "INT32"
    OUTPUT_TYPES[f"output_double_register_{_i}"] = "DOUBLE"

INPUT_TYPES: dict[str, str] = {
    "external_force_torque": "VECTOR6D",
    "speed_slider_mask": "UINT32",
    "speed_slider_fraction": "DOUBLE",
    "standard_digital_output_mask": "UINT8",
    "standard_digital_output": "UINT8",
    "configurable_digital_output_mask": "UINT8",
    "configurable_digital_output": "UINT8",
    "tool_digital_output_mask": "UINT8",
    "tool_digital_output": "UINT8",
    "standard_analog_output_mask": "UINT8",
    "standard_analog_output_type": "UINT8",
    "standard_analog_output_0": "DOUBLE",
    "standard_analog_output_1": "DOUBLE",
}
for _i in range(48):
    INPUT_TYPES[f"input_int_register_{_i}"] = "INT32"
    INPUT_TYPES[f"input_double_register_{_i}"] = "DOUBLE"


def recipe_struct(types: list[str]) -> struct.Struct:
    """Struct for the values of one recipe (the recipe id byte excluded)."""
    return struct.Struct(">" + "".join(TYPE_FORMATS[t] for t in types))


def flatten(types: list[str], values: list[object]) -> list[object]:
    """Vector-typed values become their elements, in order, as struct.pack expects."""
    flat: list[object] = []
    for rtde_type, value in zip(types, values):
        if rtde_type.startswith("VECTOR"):
            flat.extend(value)  # type: ignore[arg-type]
        else:
            flat.append(value)
    return flat


def regroup(types: list[str], flat: tuple) -> list[object]:
    """Inverse of `flatten`: element tuples back into one value per variable."""
    out: list[object] = []
    i = 0
    for rtde_type in types:
        n = {"VECTOR3D": 3, "VECTOR6D": 6, "VECTOR6INT32": 6, "VECTOR6UINT32": 6}.get(rtde_type, 1)
        out.append(list(flat[i : i + n]) if n > 1 else flat[i])
        i += n
    return out


def encode(msg_type: int, payload: bytes = b"") -> bytes:
    return HEADER.pack(HEADER.size + len(payload), msg_type) + payload


def read_message(sock: socket.socket) -> tuple[int, bytes] | None:
    """One whole message, or None when the peer closed the connection."""
    header = _read_exact(sock, HEADER.size)
    if header is None:
        return None
    size, msg_type = HEADER.unpack(header)
    payload = _read_exact(sock, size - HEADER.size) if size > HEADER.size else b""
    if payload is None:
        return None
    return msg_type, payload


def _read_exact(sock: socket.socket, n: int) -> bytes | None:
    chunks = bytearray()
    while len(chunks) < n:
        try:
            part = sock.recv(n - len(chunks))
        except OSError:
            return None
        if not part:
            return None
        chunks += part
    return bytes(chunks)
