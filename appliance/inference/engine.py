"""The Engine protocol: what every inference backend (ONNX Runtime, TensorRT) offers."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np


@dataclass(frozen=True, slots=True)
class TensorSpec:
    """A model input or output. Dynamic dimensions are ``None``."""

    name: str
    shape: tuple[int | None, ...]
    dtype: str  # numpy dtype name, e.g. "float32"


class ModelMismatch(ValueError):
    """A model file does not fit its configuration (expected versus found)."""


class Engine(Protocol):
    """Runs one model on a batch of preprocessed images.

    ``infer`` takes an ``[N, 3, H, W]`` float32 array (RGB, 0..1, letterboxed) with
    ``1 <= N <= max_batch`` and returns the model's outputs in declaration order.
    """

    name: str
    input: TensorSpec
    outputs: tuple[TensorSpec, ...]
    max_batch: int

    def infer(self, batch: np.ndarray) -> list[np.ndarray]: ...

    def close(self) -> None: ...
