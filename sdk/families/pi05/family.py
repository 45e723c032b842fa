"""pi0.5 as a Family: config, tensors, observation -> Pi05Inputs, model actions -> robot actions."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from ...errors import ObservationError, PackError
from ..base import Family, Preprocessor
from .config import Pi05Config
from .images import resize_with_pad, to_model_range
from .inputs import Pi05Inputs
from .metadata import ARCH, config_to_metadata
from .prompt import PromptTokenizer
from .tensors import tensor_specs

if TYPE_CHECKING:
    from ...packs.pack import Pack
    from ...types import Observation


class Pi05Preprocessor(Preprocessor):
    def __init__(self, pack: "Pack"):
        cfg: Pi05Config = pack.config
        m = pack.manifest
        self.config = cfg
        unknown = sorted(set(m.cameras) - set(cfg.image_slots))
        if unknown:
            raise PackError(f"{pack.dir / 'pack.yaml'}: cameras", f"unknown model slots {unknown}; "
                                                                  f"pi0.5 slots are {list(cfg.image_slots)}")
        # slot order is the model's, not the manifest's: the prefix layout depends on it
        self.slot_cameras = [(slot, m.cameras[slot]) for slot in cfg.image_slots if slot in m.cameras]
        self.required = tuple(m.required_cameras)
        self.state_dim = len(m.state_space.names)
        if self.state_dim > cfg.state_dim:
            raise PackError(f"{pack.dir / 'pack.yaml'}: state_space", f"{self.state_dim} dims > model {cfg.state_dim}")
        self.stats = pack.norm_stats
        self.tokenizer = PromptTokenizer(pack.tokenizer_path, cfg.max_token_len, cfg.discrete_state_input,
                                         cfg.bos_token_id)
        if self.tokenizer.vocab_size > cfg.llm.vocab_size:
            raise PackError(str(pack.tokenizer_path),
                            f"tokenizer has {self.tokenizer.vocab_size} pieces, model vocab is {cfg.llm.vocab_size}")

    def noise_shape(self) -> tuple[int, int]:
        return (self.config.action_horizon, self.config.action_dim)

    def __call__(self, obs: "Observation", noise: np.ndarray) -> Pi05Inputs:
        obs.validate(required_cameras=self.required, state_dim=self.state_dim)
        size = self.config.vision.image_size
        slots, images = [], []
        for slot, camera in self.slot_cameras:
            if camera in obs.cameras:  # optional cameras that are absent are masked = left out
                slots.append(slot)
                images.append(to_model_range(resize_with_pad(obs.cameras[camera], size)))
        if not images:
            raise ObservationError("cameras", f"at least one of {[c for _, c in self.slot_cameras]}",
                                   f"{sorted(obs.cameras) or 'none'}")
        if noise.shape != self.noise_shape() or noise.dtype != np.float32 or not np.all(np.isfinite(noise)):
            raise ObservationError("noise", f"finite float32 {self.noise_shape()}", f"{noise.dtype} {noise.shape}")
        state = self.stats.state.normalize(obs.state.astype(np.float64))
        return Pi05Inputs(
            images=np.stack(images),
            image_slots=tuple(slots),
            tokens=self.tokenizer.encode(obs.prompt, state),
            noise=noise,
            num_steps=self.config.num_flow_steps,
        )


class Pi05Family(Family):
    name = "pi05"

    def parse_config(self, data: dict[str, Any]) -> Pi05Config:
        return Pi05Config.model_validate(data)

    def tensor_specs(self, config: Pi05Config) -> dict[str, Any]:
        return tensor_specs(config)

    def gguf_header(self, config: Pi05Config) -> tuple[str, dict[str, Any]]:
        return ARCH, config_to_metadata(config)

    def preprocessor(self, pack: "Pack") -> Pi05Preprocessor:
        return Pi05Preprocessor(pack)

    def postprocess(self, pack: "Pack", model_actions: np.ndarray, obs: "Observation") -> np.ndarray:
        space = pack.manifest.action_space
        n = len(space.names)
        actions = pack.norm_stats.actions.unnormalize(model_actions[:, :n].astype(np.float64))
        if space.delta_mask is not None and any(space.delta_mask):
            mask = np.asarray(space.delta_mask)
            actions[:, mask] += obs.state[:n][mask].astype(np.float32)
        return actions.astype(np.float32)


FAMILY = Pi05Family()
