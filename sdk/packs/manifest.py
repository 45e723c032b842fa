"""`pack.yaml`: the schema every pack is validated against before anything runs."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from ..errors import PackError

FORMAT_VERSION = 1
MANIFEST_NAME = "pack.yaml"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class FileEntry(_Strict):
    path: str
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    size: int = Field(ge=0)

    @field_validator("path")
    @classmethod
    def _relative(cls, v: str) -> str:
        p = Path(v)
        if p.is_absolute() or ".." in p.parts:
            raise ValueError("must be a path inside the pack directory")
        return v


class PackFiles(_Strict):
    weights: FileEntry
    tokenizer: FileEntry
    norm_stats: FileEntry
    golden: FileEntry | None = None


class Space(_Strict):
    """Names and units of a robot vector, in the order the policy reads/writes it."""

    names: list[str] = Field(min_length=1)
    units: list[str]

    @model_validator(mode="after")
    def _same_length(self) -> "Space":
        if len(self.units) != len(self.names):
            raise ValueError(f"units has {len(self.units)} entries but names has {len(self.names)}")
        return self


class ActionSpace(Space):
    control_period_s: float = Field(gt=0, le=1.0)
    # Dimensions whose actions are deltas relative to the current state (openpi DeltaActions).
    delta_mask: list[bool] | None = None


class RotationBlocks(_Strict):
    """Block sizes of one layer's rotation, as its GGUF tensors hold them."""

    # B of `L.w4a4.rot_in` [in/B, B, B] (1: no input rotation beyond the permutation)
    input: int = Field(gt=0)
    # C of `L.w4a4.rot_out` [out/C, C, C]; absent: the layer has no output rotation tensor
    output: int | None = Field(default=None, gt=0)


class W4A4Rotation(_Strict):
    """The basis change every W4A4 layer's codes live in, stated so that a manifest and its GGUF
    tensors can be checked against each other (`pack verify`, loading) instead of trusting
    whatever rotation tensors happen to be present.

    kind `duquant` (DuQuant / block-Hadamard form, as Omega-QVLA builds it): an input permutation
    `rot_perm`, then a block-diagonal orthogonal input rotation `rot_in`; optionally a
    block-diagonal orthogonal output rotation `rot_out`. The codes hold R_out · W · P · R_in. The
    blocks are stored as built (Omega: SVD·Hadamard input blocks, SVD output blocks), so any
    orthogonal blocks are of this kind; `blocks` are the sizes most layers use and
    `layer_blocks` lists every layer whose sizes differ (e.g. a width the block size does not
    divide, which Omega rotates with one dense block of the full width)."""

    kind: Literal["duquant"]
    blocks: RotationBlocks
    layer_blocks: dict[str, RotationBlocks] = Field(default_factory=dict)

    def blocks_of(self, layer: str) -> RotationBlocks:
        return self.layer_blocks.get(layer, self.blocks)


class W4A4(_Strict):
    """Layers stored as 4-bit weights with 4-bit activations (see docs/importers.md, "W4A4 pack
    form"): the tensors of each listed layer replace its `.weight` in the GGUF. Only the
    reference target executes them (integer-exact), so such a pack lists `targets: [reference]`."""

    weight_bits: Literal[4] = 4
    act_bits: Literal[4] = 4
    # input columns of one output row that share one weight scale
    weight_group_size: int = Field(gt=0)
    # per_step: static scales from a [steps, in / act_group_size] table, row = flow step;
    # per_token: dynamic, max|x| / 7 of each token's group of act_group_size channels
    act_scales: Literal["per_step", "per_token"]
    act_group_size: int = Field(gt=0)
    # rows of every per-step table; must equal config.num_flow_steps
    num_steps: int | None = Field(default=None, gt=0)
    # pack tensor names (e.g. action.blk.0.attn_q.weight) held in W4A4 form
    layers: list[str] = Field(min_length=1)
    # the basis the codes live in, checked against the rotation tensors on verify and load
    rotation: W4A4Rotation

    @model_validator(mode="after")
    def _steps_given(self) -> "W4A4":
        if (self.act_scales == "per_step") != (self.num_steps is not None):
            raise ValueError("num_steps is required with act_scales 'per_step' and not allowed otherwise")
        return self

    @model_validator(mode="after")
    def _rotation_layers_listed(self) -> "W4A4":
        stray = sorted(set(self.rotation.layer_blocks) - set(self.layers))
        if stray:
            raise ValueError(f"rotation.layer_blocks names '{stray[0]}', which is not in layers")
        return self


class Quantization(_Strict):
    recipe: str
    # group -> {ggml type -> number of tensors}
    groups: dict[str, dict[str, int]]
    bits_per_weight: float = Field(gt=0)
    # tensor -> why it is stored other than its recipe rule says (padded input dim, type fallback)
    exceptions: dict[str, str] = Field(default_factory=dict)
    w4a4: W4A4 | None = None


class Golden(_Strict):
    """A recorded observation + initial noise and the chunk the producing target returned."""

    target: str
    rel_l2_tolerance: float = Field(gt=0, le=1.0)


class EngineSet(_Strict):
    """TensorRT engines for one target and precision, built by `vla-edge pack build-engine` from
    this pack's ONNX export. Loading checks every field against the files, the pack's weights, the
    installed TensorRT and the GPU before an engine is used (targets/gpu/engine_check.py)."""

    target: str  # gb10 | orin
    precision: str  # the export's: fp16, bf16, fp16-w8, fp16-w4w8, ...
    runtime: str  # tensorrt-rtx | tensorrt
    runtime_version: str
    compute_capability: str  # "12.1"
    weights_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")  # the pack weights the engines were built from
    files: dict[Literal["vision", "prefix", "expert"], FileEntry]
    # how they were built: opset, profiles (min/opt/max shapes), workspace, max images, golden check
    settings: dict[str, Any] = Field(default_factory=dict)


class Manifest(_Strict):
    format_version: int
    name: str = Field(min_length=1)
    family: str
    config: dict[str, Any]
    files: PackFiles
    quantization: Quantization
    targets: list[str] = Field(min_length=1)
    state_space: Space
    action_space: ActionSpace
    # model image slot -> robot camera name; slots not listed are absent (masked) for this robot
    cameras: dict[str, str] = Field(min_length=1)
    required_cameras: list[str]
    default_prompt: str | None = None
    golden: Golden | None = None
    source: dict[str, Any] = Field(default_factory=dict)
    engines: list[EngineSet] = Field(default_factory=list)

    @field_validator("format_version")
    @classmethod
    def _version(cls, v: int) -> int:
        if v != FORMAT_VERSION:
            raise ValueError(f"unsupported pack format version {v} (this vla-edge reads version {FORMAT_VERSION})")
        return v

    @model_validator(mode="after")
    def _consistent(self) -> "Manifest":
        robot_cams = set(self.cameras.values())
        for cam in self.required_cameras:
            if cam not in robot_cams:
                raise ValueError(f"required camera '{cam}' is not mapped to any model slot in 'cameras'")
        mask = self.action_space.delta_mask
        if mask is not None:
            if len(mask) != len(self.action_space.names):
                raise ValueError("action_space.delta_mask must have one entry per action dimension")
            if any(mask) and len(self.state_space.names) < len(mask):
                raise ValueError("delta actions need a state dimension for every action dimension")
        w4a4 = self.quantization.w4a4
        if w4a4 is not None and set(self.targets) != {"reference"}:
            raise ValueError(f"W4A4 layers run on the reference target only; targets {self.targets} must be [reference]")
        if w4a4 is not None and w4a4.num_steps is not None and w4a4.num_steps != self.config.get("num_flow_steps"):
            raise ValueError(f"quantization.w4a4.num_steps {w4a4.num_steps} (per-step scale table rows) does not "
                             f"match config.num_flow_steps {self.config.get('num_flow_steps')}")
        if (self.golden is None) != (self.files.golden is None):
            raise ValueError("'golden' and 'files.golden' must be given together")
        return self

    def to_yaml(self) -> str:
        data = self.model_dump(mode="json", exclude_none=True)
        if not data.get("engines"):
            data.pop("engines", None)  # packs without engines keep the manifest they always had
        return yaml.safe_dump(data, sort_keys=False)


def _format_validation(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"]) or "(top level)"
        parts.append(f"field '{loc}': {err['msg']}")
    return "; ".join(parts)


def load_manifest(pack_dir: Path) -> Manifest:
    path = Path(pack_dir) / MANIFEST_NAME
    if not Path(pack_dir).is_dir():
        raise PackError(str(pack_dir), "pack directory not found")
    if not path.is_file():
        raise PackError(str(path), "manifest not found (a pack directory must contain pack.yaml)")
    try:
        data = yaml.safe_load(path.read_text())
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise PackError(str(path), f"not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise PackError(str(path), f"expected a mapping at the top level, got {type(data).__name__}")
    try:
        return Manifest.model_validate(data)
    except ValidationError as exc:
        raise PackError(str(path), _format_validation(exc)) from exc
