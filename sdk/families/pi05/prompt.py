"""pi0.5 prompt construction and SentencePiece tokenisation (openpi PaligemmaTokenizer semantics),
run by the C++ implementation (native/src/policy/prompt.cpp, SentencePiece's C++ library) that
the C ABI uses too.

With discrete state input (pi0.5 default) the normalised state is written into the prompt as
256-bin integers: "Task: <prompt>, State: 12 200 ...;\nAction: ". Without it, openpi's pi0
format is used: BOS + prompt + "\n".
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ...native_io import policy_io

STATE_BINS = 256


def clean_prompt(prompt: str) -> str:
    return policy_io().clean_prompt(prompt)


def discretize_state(normalized_state: np.ndarray) -> np.ndarray:
    """[-1, 1] floats -> integers 0..255. Values outside [-1, 1] are clipped first so an
    out-of-distribution state gives an edge bin rather than openpi's unseen '-1'/'256' tokens."""
    return policy_io().discretize_state(np.asarray(normalized_state, dtype=np.float64).ravel())


class PromptTokenizer:
    """PackError naming the file when it is not a SentencePiece model or its BOS id differs."""

    def __init__(self, model_path: Path, max_len: int, discrete_state: bool, bos_id: int):
        self._tok = policy_io().PromptTokenizer(str(model_path), max_len, discrete_state, bos_id)
        self.max_len = max_len
        self.discrete_state = discrete_state

    @property
    def vocab_size(self) -> int:
        return int(self._tok.vocab_size)

    def encode(self, prompt: str, normalized_state: np.ndarray | None) -> np.ndarray:
        return self._tok.encode(prompt, normalized_state)
