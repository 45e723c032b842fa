"""W4A4 layers inside a pack: the GGUF tensors that replace a layer's `.weight`, and reading
them back with every shape and value range checked.

A W4A4 layer `L.weight` (numpy shape [out, in]) is stored as:

  L.w4a4.codes      I8  [out, in/2]   signed 4-bit weight codes, two per byte: column 2k in the
                                      low nibble, 2k+1 in the high nibble (two's complement)
  L.w4a4.wscale     F32 [out, in/G]   weight scale per output row and group of G input columns
  L.w4a4.rot_perm   I32 [in]          input permutation: x' = x[..., perm]
  L.w4a4.rot_in     F32 [n, B, B]     block-diagonal input rotation (n * B = in): x'' = x' @ R
  L.w4a4.rot_out    F32 [m, C, C]     optional block-diagonal output rotation (m * C = out)
  L.w4a4.act_scale  F32 [steps, in/A] per-step static activation scales (absent for per-token)

The manifest's `quantization.w4a4` section names the layers and the group sizes (a layer
narrower than the weight group has one group per row) and states the rotation's block sizes,
which reading checks against rot_in / rot_out. Both the
quantised weights and the rotation are stored as they were built (nothing is folded), so a
GPU kernel can be checked against the reference target bit for bit on the integer part.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from ..errors import PackError
from .gguf_io import GGUFFile, PlannedTensor
from .manifest import RotationBlocks, W4A4, W4A4Rotation

QMIN, QMAX = -8, 7
PARTS = ("codes", "wscale", "rot_perm", "rot_in", "rot_out", "act_scale")
ORTHO_TOL = 2e-2  # rotations are often stored as fp16; R R^T = I to about 1e-3 then


def part_name(weight_name: str, part: str) -> str:
    """`action.blk.0.attn_q.weight`, "codes" -> `action.blk.0.attn_q.w4a4.codes`."""
    return f"{weight_name.removesuffix('.weight')}.w4a4.{part}"


def is_w4a4_tensor(name: str) -> bool:
    return ".w4a4." in name


def logical_weight(tensor_name: str) -> str:
    """The `.weight` a W4A4 tensor stands in for."""
    return tensor_name.split(".w4a4.")[0] + ".weight"


def pack_nibbles(codes: np.ndarray) -> np.ndarray:
    """int8 codes in [-8, 7], shape [out, in] (in even) -> uint8 [out, in/2]."""
    c = np.asarray(codes, np.int8).astype(np.uint8) & 0x0F
    return (c[:, 0::2] | (c[:, 1::2] << 4)).astype(np.uint8)


def unpack_nibbles(packed: np.ndarray) -> np.ndarray:
    """uint8/int8 [out, in/2] -> int8 codes [out, in] in [-8, 7]."""
    p = np.asarray(packed).view(np.uint8)
    lo, hi = (p & 0x0F).astype(np.int8), (p >> 4).astype(np.int8)
    out = np.empty((p.shape[0], 2 * p.shape[1]), np.int8)
    out[:, 0::2], out[:, 1::2] = lo, hi
    return np.where(out >= 8, out - 16, out).astype(np.int8)


@dataclass
class W4A4Layer:
    """One linear layer in W4A4 form, as the reference target executes it."""

    name: str
    codes: np.ndarray  # int8 [out, in]
    wscale: np.ndarray  # float32 [out, in / weight_group]
    perm: np.ndarray  # int64 [in]
    rot_in: np.ndarray  # float32 [n, B, B]
    rot_out: np.ndarray | None  # float32 [m, C, C]
    act_scale: np.ndarray | None  # float32 [steps, in / act_group]
    weight_group: int
    act_group: int

    @property
    def shape(self) -> tuple[int, int]:
        return tuple(self.codes.shape)  # type: ignore[return-value]

    def dequantised(self) -> np.ndarray:
        """float64 [out, in]: codes times their group's scale, the weight in the rotated basis."""
        return self.codes.astype(np.float64) * np.repeat(self.wscale.astype(np.float64), self.weight_group, axis=1)

    def rotate_weight(self, weight: np.ndarray) -> np.ndarray:
        """float64 R_out · W · P · R_in of a float weight [out, in]: the basis the codes live in
        (x · Wᵀ = (x P R_in) · (R_out W P R_in)ᵀ · R_out with orthogonal blocks), so a float
        weight can be compared with `dequantised()` directly."""
        out, n_in = self.shape
        n, b, _ = self.rot_in.shape
        w = np.asarray(weight, np.float64)[:, self.perm].reshape(out, n, b)
        w = np.einsum("onb,nbc->onc", w, self.rot_in.astype(np.float64)).reshape(out, n_in)
        if self.rot_out is None:
            return w
        m, c, _ = self.rot_out.shape
        return np.einsum("mdc,mcj->mdj", self.rot_out.astype(np.float64), w.reshape(m, c, n_in)).reshape(out, n_in)

    def blocks(self) -> RotationBlocks:
        """The block sizes its rotation tensors have (what the manifest's rotation must state)."""
        return RotationBlocks(input=int(self.rot_in.shape[1]),
                              output=None if self.rot_out is None else int(self.rot_out.shape[1]))

    def planned(self) -> list[PlannedTensor]:
        """GGUF tensors for write_gguf, in PARTS order."""
        out, n_in = self.shape
        arrays: list[tuple[str, tuple[int, ...], str, np.ndarray]] = [
            ("codes", (out, n_in // 2), "I8", pack_nibbles(self.codes)),
            ("wscale", self.wscale.shape, "F32", self.wscale.astype(np.float32)),
            ("rot_perm", self.perm.shape, "I32", self.perm.astype(np.int32).view(np.uint8)),
            ("rot_in", self.rot_in.shape, "F32", self.rot_in.astype(np.float32)),
        ]
        if self.rot_out is not None:
            arrays.append(("rot_out", self.rot_out.shape, "F32", self.rot_out.astype(np.float32)))
        if self.act_scale is not None:
            arrays.append(("act_scale", self.act_scale.shape, "F32", self.act_scale.astype(np.float32)))
        return [PlannedTensor(part_name(self.name, part), tuple(int(d) for d in shape), ggml, lambda a=data: a)
                for part, shape, ggml, data in arrays]

    def check(self, shape: tuple[int, ...], section: W4A4, where: str) -> None:
        """Raise PackError naming the tensor if this layer is not a valid W4A4 form of `shape`."""
        out, n_in = self.shape
        name = lambda part: f"{where}: tensor '{part_name(self.name, part)}'"  # noqa: E731
        if (out, n_in) != tuple(shape):
            raise PackError(name("codes"), f"holds a [{out}, {n_in}] weight, the layer is {list(shape)}")
        group = layer_group(section.weight_group_size, n_in)
        if n_in % 2 or n_in % group or n_in % section.act_group_size or self.weight_group != group:
            raise PackError(name("codes"), f"input width {n_in} must be even and a multiple of the weight group "
                                           f"({group}) and activation group ({section.act_group_size})")
        _expect(self.wscale, (out, n_in // group), name("wscale"), positive=False)
        if not np.array_equal(np.sort(self.perm), np.arange(n_in)):
            raise PackError(name("rot_perm"), f"not a permutation of 0..{n_in - 1}")
        _check_rotation(self.rot_in, n_in, name("rot_in"))
        if self.rot_out is not None:
            _check_rotation(self.rot_out, out, name("rot_out"))
        self._check_stated_blocks(section.rotation, where)
        if section.act_scales == "per_step":
            if self.act_scale is None:
                raise PackError(name("act_scale"), "missing: act_scales is 'per_step'")
            steps = section.num_steps
            if self.act_scale.ndim != 2 or self.act_scale.shape[0] != steps:
                raise PackError(name("act_scale"), f"scale table shape {list(self.act_scale.shape)}: expected "
                                                   f"{steps} rows, one per flow step (config.num_flow_steps)")
            _expect(self.act_scale, (steps, n_in // section.act_group_size), name("act_scale"), positive=True)
        elif self.act_scale is not None:
            raise PackError(name("act_scale"), "present, but act_scales is 'per_token' (dynamic)")

    def _check_stated_blocks(self, rotation: W4A4Rotation, where: str) -> None:
        field = (f"quantization.w4a4.rotation.layer_blocks['{self.name}']" if self.name in rotation.layer_blocks
                 else "quantization.w4a4.rotation.blocks")
        stated, held = rotation.blocks_of(self.name), self.blocks()
        for side, part in (("input", "rot_in"), ("output", "rot_out")):
            want, got = getattr(stated, side), getattr(held, side)
            if want != got:
                has = f"blocks of {got}" if got is not None else "no such tensor"
                raise PackError(f"{where}: tensor '{part_name(self.name, part)}'",
                                f"{has}, but pack.yaml {field}.{side} says "
                                f"{want if want is not None else 'no output rotation'}")


def describe_rotation(layers: Mapping[str, W4A4Layer]) -> W4A4Rotation:
    """The manifest's rotation entry for these layers: the most common block sizes, plus every
    layer whose sizes differ (ties go to the first layer's sizes)."""
    held = {name: layer.blocks() for name, layer in layers.items()}
    sizes = list(held.values())
    common = max(sizes, key=sizes.count)
    return W4A4Rotation(kind="duquant", blocks=common,
                        layer_blocks={name: b for name, b in held.items() if b != common})


def layer_group(group: int, n_in: int) -> int:
    """A layer narrower than the pack's weight group has one group per row (GPTQ blocks are cut
    at the layer's width)."""
    return min(group, n_in)


def _expect(a: np.ndarray, shape: tuple[int, ...], where: str, positive: bool) -> None:
    if a.shape != shape:
        raise PackError(where, f"shape {list(a.shape)}, expected {list(shape)}")
    if not np.all(np.isfinite(a)) or (np.any(a <= 0) if positive else np.any(a < 0)):
        raise PackError(where, f"scales must be finite and {'> 0' if positive else '>= 0'}")


def _check_rotation(blocks: np.ndarray, width: int, where: str) -> None:
    if blocks.ndim != 3 or blocks.shape[1] != blocks.shape[2] or blocks.shape[0] * blocks.shape[1] != width:
        raise PackError(where, f"shape {list(blocks.shape)}: expected [n, B, B] square blocks with n * B = {width}")
    if not np.all(np.isfinite(blocks)):
        raise PackError(where, "holds inf/nan")
    gram = np.einsum("nij,nkj->nik", blocks.astype(np.float64), blocks.astype(np.float64))
    err = float(np.max(np.abs(gram - np.eye(blocks.shape[1]))))
    if err > ORTHO_TOL:
        raise PackError(where, f"blocks are not orthogonal (max |R R^T - I| = {err:.2g} > {ORTHO_TOL}); the "
                               "rotation would not cancel between activations and weights")


def read_layers(gguf: GGUFFile, section: W4A4, specs: Mapping[str, object]) -> dict[str, W4A4Layer]:
    """Every layer the manifest lists, read from the GGUF and checked against the family's shape."""
    infos = gguf.tensor_infos()
    where = str(gguf.path)
    layers = {}
    for name in section.layers:
        spec = specs.get(name)
        if spec is None:
            raise PackError(f"{where}: quantization.w4a4.layers", f"'{name}' is not a tensor of this model")
        if name in infos:
            raise PackError(f"{where}: tensor '{name}'", "present although the layer is listed as W4A4 "
                                                         "(a layer is stored one way or the other)")

        def get(part: str, required: bool = True) -> np.ndarray | None:
            tname = part_name(name, part)
            if tname not in infos:
                if required:
                    raise PackError(f"{where}: tensor '{tname}'", "missing (W4A4 layer listed in pack.yaml)")
                return None
            data, qtype = gguf.raw(tname)
            want = {"codes": "I8", "rot_perm": "I32"}.get(part, "F32")
            if qtype.name != want:
                raise PackError(f"{where}: tensor '{tname}'", f"type {qtype.name}, expected {want}")
            return np.array(data).reshape(infos[tname].shape)

        codes = unpack_nibbles(get("codes"))
        layer = W4A4Layer(
            name=name, codes=codes, wscale=get("wscale"),
            perm=get("rot_perm").astype(np.int64), rot_in=get("rot_in"), rot_out=get("rot_out", False),
            act_scale=get("act_scale", False), weight_group=layer_group(section.weight_group_size, codes.shape[1]),
            act_group=section.act_group_size,
        )
        layer.check(spec.shape, section, where)  # type: ignore[attr-defined]
        layers[name] = layer
    stray = sorted(n for n in infos if is_w4a4_tensor(n) and logical_weight(n) not in layers)
    if stray:
        raise PackError(f"{where}: tensor '{stray[0]}'", "W4A4 tensor of a layer pack.yaml does not list")
    return layers
