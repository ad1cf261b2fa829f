"""Fixtures for the inference tests."""

from __future__ import annotations

import importlib.util
from collections.abc import Callable, Sequence
from types import ModuleType

import numpy as np
import pytest

from tests.inference.onnx_models import REPO


@pytest.fixture(scope="session")
def blob_tool() -> ModuleType:
    """``tools/make_blob_model.py``, imported from its file (tools/ is not a package)."""
    spec = importlib.util.spec_from_file_location("make_blob_model", REPO / "tools" / "make_blob_model.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def frames() -> Callable[[int, Sequence[float], int], np.ndarray]:
    """``frames(n, values, size)``: an ``[n, 3, size, size]`` batch, item i filled with ``values[i]``."""

    def make(n: int, values: Sequence[float], size: int = 64) -> np.ndarray:
        batch = np.empty((n, 3, size, size), dtype=np.float32)
        batch[:] = np.asarray(values, dtype=np.float32)[:, None, None, None]
        return batch

    return make
