"""pi0.5 hyper-parameters: one typed config, real values by default, a `tiny` variant for tests.

Field names follow the GGUF metadata keys of the released ActQuant `pi05.gguf` where one exists
(see metadata.py), so a real pack's hyper-parameters round-trip without renaming.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class VisionConfig(_Frozen):
    """SigLIP So400m/14 vision tower."""

    hidden_size: int = 1152
    intermediate_size: int = 4304
    # Stored MLP width. The released exporter zero-pads 4304 -> 4352 so ffn_down rows are 256-aligned
    # for K-quants; zero rows/cols leave the math unchanged.
    intermediate_size_stored: int = 4352
    num_layers: int = 27
    num_heads: int = 16
    image_size: int = 224
    patch_size: int = 14
    layer_norm_eps: float = 1e-6

    @property
    def num_patches(self) -> int:
        return (self.image_size // self.patch_size) ** 2

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_heads


class _GemmaStack(_Frozen):
    """A Gemma decoder stack; the LLM and the action expert differ only in widths and depth."""

    hidden_size: int
    intermediate_size: int
    num_layers: int = 18
    num_heads: int = 8
    num_kv_heads: int = 1
    head_dim: int = 256
    rms_norm_eps: float = 1e-6


class LLMConfig(_GemmaStack):
    """PaliGemma's Gemma-2B language model: it turns the prefix into a per-layer KV cache."""

    vocab_size: int = 257152
    hidden_size: int = 2048
    intermediate_size: int = 16384
    rope_theta: float = 10000.0


class ExpertConfig(_GemmaStack):
    """Gemma-300M action expert with adaptive RMSNorm time conditioning (pi0.5)."""

    hidden_size: int = 1024
    intermediate_size: int = 4096


class Pi05Config(_Frozen):
    """Everything needed to build and run the pi0.5 graph."""

    variant: str = "full"
    vision: VisionConfig = Field(default_factory=VisionConfig)
    llm: LLMConfig = Field(default_factory=LLMConfig)
    expert: ExpertConfig = Field(default_factory=ExpertConfig)
    action_dim: int = 32  # padded model action width; robots use a prefix of it
    state_dim: int = 32  # padded model state width
    action_horizon: int = 50
    num_flow_steps: int = 10
    # Sinusoidal time embedding (openpi): periods log-spaced in [min_period, max_period].
    time_min_period: float = 4e-3
    time_max_period: float = 4.0
    max_token_len: int = 200  # prompt tokens incl. BOS; longer prompts are an error, not truncated
    image_slots: tuple[str, ...] = ("base_0_rgb", "left_wrist_0_rgb", "right_wrist_0_rgb")
    discrete_state_input: bool = True  # pi0.5: state is discretised into the prompt
    bos_token_id: int = 2

    @model_validator(mode="after")
    def _check_joint_attention(self) -> "Pi05Config":
        # The expert attends to the LLM's KV cache layer by layer, so the attention geometry must match.
        llm, exp = self.llm, self.expert
        if exp.num_layers != llm.num_layers:
            raise ValueError(f"expert.num_layers ({exp.num_layers}) must equal llm.num_layers ({llm.num_layers})")
        if (exp.head_dim, exp.num_kv_heads) != (llm.head_dim, llm.num_kv_heads):
            raise ValueError("expert and llm must share head_dim and num_kv_heads (joint attention)")
        if llm.num_heads % llm.num_kv_heads or exp.num_heads % exp.num_kv_heads:
            raise ValueError("num_heads must be a multiple of num_kv_heads")
        if self.vision.image_size % self.vision.patch_size:
            raise ValueError("vision.image_size must be a multiple of vision.patch_size")
        if self.vision.intermediate_size_stored < self.vision.intermediate_size:
            raise ValueError("vision.intermediate_size_stored must be >= vision.intermediate_size")
        if self.expert.hidden_size % 2:
            raise ValueError("expert.hidden_size must be even (sin/cos time embedding)")
        return self


FULL = Pi05Config()

# Small enough to run the whole graph in milliseconds, but keeps every structural feature of the
# real model: MQA, vision MLP padding, vision width not a multiple of 256 (as 1152 is), 3 slots.
TINY = Pi05Config(
    variant="tiny",
    vision=VisionConfig(
        hidden_size=96, intermediate_size=200, intermediate_size_stored=256, num_layers=2, num_heads=4
    ),
    llm=LLMConfig(vocab_size=512, hidden_size=256, intermediate_size=512, num_layers=2, num_heads=4, head_dim=64),
    expert=ExpertConfig(hidden_size=128, intermediate_size=256, num_layers=2, num_heads=4, head_dim=64),
    action_horizon=10,
    num_flow_steps=10,
    max_token_len=64,
)

VARIANTS = {"full": FULL, "tiny": TINY}
