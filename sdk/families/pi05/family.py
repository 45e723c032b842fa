"""pi0.5 as a Family: config, tensors, observation -> Pi05Inputs, model actions -> robot actions."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from ...errors import ObservationError, PackError
from ...native_io import policy_io
from ..base import Family, Preprocessor
from .config import Pi05Config
from .inputs import Pi05Inputs
from .metadata import ARCH, config_to_metadata
from .tensors import tensor_specs

if TYPE_CHECKING:
    from ...packs.pack import Pack
    from ...types import Observation


class Pi05Preprocessor(Preprocessor):
    """Observation -> Pi05Inputs through the C++ ObservationProcessor (native/src/policy), the
    same code the C ABI's vla_edge_policy_infer runs: resize-with-pad, normalisation, state bins
    in the prompt, SentencePiece tokenisation."""

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
        stats = pack.norm_stats
        self._processor = policy_io().ObservationProcessor({
            "image_size": cfg.vision.image_size, "slot_cameras": self.slot_cameras,
            "required_cameras": list(self.required), "state_dim": self.state_dim,
            "action_dim": len(m.action_space.names), "model_action_dim": cfg.action_dim,
            "horizon": cfg.action_horizon, "delta_mask": list(m.action_space.delta_mask or []),
            "state_q01": stats.state.q01, "state_q99": stats.state.q99,
            "action_q01": stats.actions.q01, "action_q99": stats.actions.q99,
            "tokenizer_path": str(pack.tokenizer_path), "max_token_len": cfg.max_token_len,
            "discrete_state": cfg.discrete_state_input, "bos_id": cfg.bos_token_id,
            "model_vocab_size": cfg.llm.vocab_size,
        })

    def noise_shape(self) -> tuple[int, int]:
        return (self.config.action_horizon, self.config.action_dim)

    def __call__(self, obs: "Observation", noise: np.ndarray) -> Pi05Inputs:
        obs.validate(required_cameras=self.required, state_dim=self.state_dim)
        if noise.shape != self.noise_shape() or noise.dtype != np.float32:
            raise ObservationError("noise", f"finite float32 {self.noise_shape()}", f"{noise.dtype} {noise.shape}")
        self._processor.check_noise(noise)
        images, slots, tokens = self._processor.prepare(obs.cameras, obs.state.astype(np.float64), obs.prompt)
        return Pi05Inputs(images=images, image_slots=tuple(slots), tokens=tokens, noise=noise,
                          num_steps=self.config.num_flow_steps)


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
        """Crop, un-normalise, add the state to delta dims (C++: actions_to_robot); ObservationError
        on non-finite output, so no robot is ever handed NaN/Inf."""
        space = pack.manifest.action_space
        stats = pack.norm_stats.actions
        return policy_io().actions_to_robot(stats.q01, stats.q99, list(space.delta_mask or []), len(space.names),
                                            np.ascontiguousarray(model_actions, dtype=np.float32),
                                            np.asarray(obs.state, dtype=np.float64))


FAMILY = Pi05Family()
