"""pi0.5 prompt construction and SentencePiece tokenisation (openpi PaligemmaTokenizer semantics).

With discrete state input (pi0.5 default) the normalised state is written into the prompt as
256-bin integers: "Task: <prompt>, State: 12 200 ...;\nAction: ". Without it, openpi's pi0
format is used: BOS + prompt + "\n".
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import sentencepiece as spm

from ...errors import ObservationError, PackError

STATE_BINS = 256


def clean_prompt(prompt: str) -> str:
    return prompt.strip().replace("_", " ").replace("\n", " ")


def discretize_state(normalized_state: np.ndarray) -> np.ndarray:
    """[-1, 1] floats -> integers 0..255. Values outside [-1, 1] are clipped first so an
    out-of-distribution state gives an edge bin rather than openpi's unseen '-1'/'256' tokens."""
    clipped = np.clip(normalized_state, -1.0, 1.0)
    bins = np.linspace(-1.0, 1.0, STATE_BINS + 1)[:-1]
    return np.digitize(clipped, bins=bins) - 1


class PromptTokenizer:
    def __init__(self, model_path: Path, max_len: int, discrete_state: bool, bos_id: int):
        try:
            self._sp = spm.SentencePieceProcessor(model_file=str(model_path))
        except (OSError, RuntimeError) as exc:
            raise PackError(str(model_path), f"not a loadable SentencePiece model: {exc}") from exc
        if self._sp.bos_id() != bos_id:
            raise PackError(str(model_path), f"BOS id is {self._sp.bos_id()}, the model config expects {bos_id}")
        self.max_len = max_len
        self.discrete_state = discrete_state

    @property
    def vocab_size(self) -> int:
        return int(self._sp.get_piece_size())

    def encode(self, prompt: str, normalized_state: np.ndarray | None) -> np.ndarray:
        cleaned = clean_prompt(prompt)
        if self.discrete_state:
            if normalized_state is None:
                raise ObservationError("state", "a state vector (pack uses discrete state input)", "None")
            state_str = " ".join(str(int(b)) for b in discretize_state(normalized_state))
            ids = self._sp.encode(f"Task: {cleaned}, State: {state_str};\nAction: ", add_bos=True)
        else:
            ids = self._sp.encode(cleaned, add_bos=True) + self._sp.encode("\n")
        if len(ids) > self.max_len:
            raise ObservationError(
                "prompt", f"at most {self.max_len} tokens including state tokens", f"{len(ids)} tokens"
            )
        return np.asarray(ids, dtype=np.int32)
