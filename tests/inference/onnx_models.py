"""Tiny ONNX models whose outputs are known, for the inference tests."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from appliance.config.schema import ModelConfig

REPO = Path(__file__).resolve().parents[2]

Dim = int | str


def save_model(
    path: Path,
    nodes: list[onnx.NodeProto],
    inputs: list[onnx.ValueInfoProto],
    outputs: list[onnx.ValueInfoProto],
    initializers: Sequence[onnx.TensorProto] = (),
) -> Path:
    graph = helper.make_graph(nodes, "test", inputs, outputs, list(initializers))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def switch_model(path: Path, dark: np.ndarray, bright: np.ndarray, size: int = 64, batch: Dim = "N") -> Path:
    """Input ``images [batch, 3, size, size]``; output ``dark + mean(image) * (bright - dark)``.

    A black image gives exactly ``dark``, a white one exactly ``bright`` (values are
    chosen exactly representable), so each batch item can get its own known output.
    """
    dark = np.asarray(dark, dtype=np.float32)
    bright = np.asarray(bright, dtype=np.float32)
    nodes = [
        helper.make_node("ReduceMean", ["images"], ["mean"], axes=[1, 2, 3], keepdims=0),
        helper.make_node("Reshape", ["mean", "col"], ["mean_col"]),
        helper.make_node("Mul", ["mean_col", "diff"], ["scaled"]),
        helper.make_node("Add", ["dark", "scaled"], ["output0"]),
    ]
    inits = [
        numpy_helper.from_array(dark[None], "dark"),
        numpy_helper.from_array((bright - dark)[None], "diff"),
        numpy_helper.from_array(np.array([-1] + [1] * dark.ndim, dtype=np.int64), "col"),
    ]
    return save_model(
        path,
        nodes,
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, [batch, 3, size, size])],
        [helper.make_tensor_value_info("output0", TensorProto.FLOAT, [batch, *dark.shape])],
        inits,
    )


def identity_model(path: Path, shape: Sequence[Dim], elem: int = TensorProto.FLOAT, name: str = "images") -> Path:
    """One input of ``shape`` echoed as the output."""
    return save_model(
        path,
        [helper.make_node("Identity", [name], ["output0"])],
        [helper.make_tensor_value_info(name, elem, list(shape))],
        [helper.make_tensor_value_info("output0", elem, list(shape))],
    )


def model_config(onnx_path: Path, labels: Sequence[str] = ("thing",), size: int = 64, **extra: object) -> ModelConfig:
    return ModelConfig.model_validate(
        {"id": "test-model", "onnx": str(onnx_path), "labels": list(labels),
         "input": {"width": size, "height": size}, **extra}
    )
