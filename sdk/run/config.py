"""The `--config run.yaml` file: one place for robot, loop, camera and health settings.

Example:
    robot: ur3-sim                 # a registry name
    robot_config: cell.yaml        # or a --robot-config file (relative to this file)
    pack: demo
    target: reference
    prompt: pick up the red cube
    cameras: {base: synthetic}     # camera name -> device index, /dev/videoN or 'synthetic'
    loop: {replan_s: 0.25, inference_timeout_s: 1.0, blend_s: 0.0}
    health: {}                     # passed to the health governor (vla_edge.health)
Command-line options win over the file. Unknown keys are errors, named with their path.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..errors import ConfigError


class LoopConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    replan_s: float | None = Field(default=None, gt=0, le=10,
                                   description="seconds between inference starts (default: half a chunk)")
    inference_timeout_s: float | None = Field(default=None, gt=0, le=60,
                                              description="no chunk for this long -> hold (default: 4 x replan_s)")
    blend_s: float | None = Field(default=None, ge=0, le=1,
                                  description="cross-fade between chunks (default 0; the demo pack: replan_s)")
    control_timeout_s: float | None = Field(default=None, gt=0, le=5,
                                            description="real time: no control tick for this long -> stop the arm")
    simulated_latency_s: float | None = Field(default=None, ge=0, le=10,
                                              description="fast simulation only: model inference as taking exactly "
                                              "this long (reproducible runs); default: the measured latency")
    record_obs_every: int | None = Field(default=None, ge=1,
                                         description="store every N-th observation the policy saw under "
                                         "<run>/observations/ (calibration data for `vla-edge calibrate`)")
    state_fill: dict[str, float] = Field(default_factory=dict,
                                         description="values for policy state entries the robot does not measure")


class RunFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    robot: str | None = None
    robot_config: str | None = None
    pack: str | None = None
    target: str | None = None
    prompt: str | None = None
    duration_s: float | None = Field(default=None, gt=0)
    cameras: dict[str, str | int] = Field(default_factory=dict)
    loop: LoopConfig = Field(default_factory=LoopConfig)
    health: dict[str, Any] = Field(default_factory=dict)


def load_run_file(path: Path | None) -> RunFile:
    if path is None:
        return RunFile()
    from ..robots.config import read_yaml  # noqa: PLC0415 - one YAML reader with one error style

    data = read_yaml(Path(path))
    try:
        return RunFile.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = ".".join(str(p) for p in err["loc"])
        raise ConfigError(f"{path}: {loc}", err["msg"]) from None


def resolve_relative(base_file: Path | None, value: str | None) -> Path | None:
    """Paths inside a run file are relative to that file, not to the working directory."""
    if value is None:
        return None
    p = Path(value).expanduser()
    return p if p.is_absolute() or base_file is None else Path(base_file).parent / p
