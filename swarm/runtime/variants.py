"""The shipped arithmetic variants by name: where their files are and their int8 weights,
without torch (the node lists and explores them; swarm.runtime.builtin runs them).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from safetensors import safe_open

MODELS_DIR = Path(__file__).resolve().parent.parent / "models"
#: Shipped variants, worst to best (sizes and training steps in train.py).
VARIANT_NAMES: tuple[str, ...] = ("arith-xs", "arith-s", "arith-m", "arith-l")
#: The suffix of a weight operand's tensor name in a variant's file.
WEIGHT_SUFFIX = ".wq"


def variant_path(name: str) -> Path:
    return MODELS_DIR / f"{name}.safetensors"


def model_weights(path: Path) -> dict[str, np.ndarray]:
    """The int8 weight operands (k x n) of the model file at ``path``, by layer name: the B of
    every product the model computes (`swarm.runtime.builtin.ArithModel.weights`)."""
    with safe_open(str(path), framework="np") as f:
        return {k[:-len(WEIGHT_SUFFIX)]: f.get_tensor(k) for k in f.keys()
                if k.endswith(WEIGHT_SUFFIX)}
