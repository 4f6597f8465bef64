"""Inference runtime: backends behind one interface (built-in int-matmul model, OpenAI-
compatible HTTP endpoint, local Hugging Face checkpoint), calibration and evaluation."""

from swarm.runtime.base import (
    Answer,
    BackendError,
    BackendTimeout,
    InferenceBackend,
    Judgment,
    Outcome,
    UnsupportedArchitecture,
    UnsupportedPrompt,
)

__all__ = [
    "Answer",
    "BackendError",
    "BackendTimeout",
    "InferenceBackend",
    "Judgment",
    "Outcome",
    "UnsupportedArchitecture",
    "UnsupportedPrompt",
]
