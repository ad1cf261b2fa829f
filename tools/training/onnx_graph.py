"""ONNX graphs written by hand from trained weights (the crop models: anomaly, tool states):
no exporter involved, so the file depends on the weights alone."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17
IR_VERSION = 8  # readable by ONNX Runtime >= 1.14 and TensorRT 8.6+


class GraphBuilder:
    """Nodes and initialisers in the order they are added; ``save`` checks and writes the model."""

    def __init__(self) -> None:
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []

    def node(self, op: str, inputs: list[str], name: str, **attrs: object) -> str:
        """Adds a node whose one output is called ``name``; returns that name."""
        self.nodes.append(helper.make_node(op, inputs, [name], name=name, **attrs))
        return name

    def const(self, name: str, value: np.ndarray) -> str:
        self.inits.append(numpy_helper.from_array(value, name))
        return name

    def conv(self, x: str, name: str, weight: np.ndarray, bias: np.ndarray | None, stride: int = 1) -> str:
        """A square convolution with "same" padding."""
        k = weight.shape[2]
        inputs = [x, self.const(f"{name}.weight", weight)]
        if bias is not None:
            inputs.append(self.const(f"{name}.bias", bias))
        return self.node("Conv", inputs, name, kernel_shape=[k, k], strides=[stride, stride], pads=[k // 2] * 4)

    def save(self, path: str | Path, graph_name: str, producer: str,
             inputs: Sequence[tuple[str, list[int | str]]], outputs: Sequence[tuple[str, list[int | str]]],
             metadata: dict[str, str] | None = None) -> Path:
        """Float32 ``inputs``/``outputs`` as (name, shape); ``metadata`` into ``metadata_props``."""
        graph = helper.make_graph(
            self.nodes, graph_name,
            [helper.make_tensor_value_info(name, TensorProto.FLOAT, shape) for name, shape in inputs],
            [helper.make_tensor_value_info(name, TensorProto.FLOAT, shape) for name, shape in outputs],
            self.inits,
        )
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name=producer)
        model.ir_version = IR_VERSION
        if metadata:
            helper.set_model_props(model, metadata)
        onnx.checker.check_model(model, full_check=True)
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        onnx.save(model, str(path))
        return path
