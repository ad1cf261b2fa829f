"""The ONNX Runtime engine (CPU): the portable backend's default.

The model is checked against its configuration when the engine is created, so a
wrong file fails at start-up with what was expected and what was found, not with
an ONNX Runtime traceback at the first frame.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort

from appliance.config.schema import ModelConfig
from appliance.inference.engine import Engine, ModelMismatch, TensorSpec
from appliance.inference.parsers import check_outputs

DYNAMIC_MAX_BATCH = 64  # batch limit for models whose batch dimension is dynamic

_ORT_DTYPES = {
    "tensor(float)": "float32",
    "tensor(float16)": "float16",
    "tensor(double)": "float64",
    "tensor(int64)": "int64",
    "tensor(int32)": "int32",
    "tensor(int8)": "int8",
    "tensor(uint8)": "uint8",
    "tensor(bool)": "bool",
}


def _dims(shape: list[object] | None) -> tuple[int | None, ...]:
    """ORT shape -> ints, with symbolic or unknown dimensions as ``None``."""
    return tuple(d if isinstance(d, int) and d > 0 else None for d in (shape or []))


def _shape_text(arg: ort.NodeArg) -> str:
    """``[N, 3, 320, 320] float32``: symbolic dimensions by name, unknown ones as ``?``."""
    dims = ", ".join("?" if d is None or d == "" else str(d) for d in (arg.shape or []))
    return f"[{dims}] {_ORT_DTYPES.get(arg.type, arg.type)}"


def _spec(arg: ort.NodeArg) -> TensorSpec:
    return TensorSpec(arg.name, _dims(arg.shape), _ORT_DTYPES.get(arg.type, arg.type))


class OnnxRuntimeEngine:
    """One ``onnxruntime.InferenceSession`` on the CPU, checked against ``ModelConfig``."""

    def __init__(self, model: ModelConfig, threads: int = 1) -> None:
        self.name = model.id
        self.path = Path(model.onnx)
        options = ort.SessionOptions()
        options.intra_op_num_threads = max(int(threads), 1)
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3  # errors only; mismatches are reported by us
        if not self.path.is_file():
            raise ModelMismatch(f"model {model.id!r}: model file not found: {self.path}")
        try:
            self._session: ort.InferenceSession | None = ort.InferenceSession(
                str(self.path), sess_options=options, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:  # ORT raises several pybind types (InvalidProtobuf, Fail, ...)
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ModelMismatch(
                f"model {model.id!r}: {self.path} is not a valid ONNX model that ONNX Runtime "
                f"can load ({reason})"
            ) from None
        inputs = self._session.get_inputs()
        self.outputs = tuple(_spec(o) for o in self._session.get_outputs())
        self.input = self._check_input(model, inputs)
        batch = self.input.shape[0]
        self.max_batch = batch if batch is not None else DYNAMIC_MAX_BATCH
        self._fixed_batch = batch

    def _check_input(self, model: ModelConfig, inputs: list[ort.NodeArg]) -> TensorSpec:
        height, width = model.input.height, model.input.width
        expected = f"[N, 3, {height}, {width}] float32"
        where = f"model {model.id!r} ({self.path})"
        if len(inputs) != 1:
            found = ", ".join(f"{i.name!r} {_shape_text(i)}" for i in inputs)
            raise ModelMismatch(f"{where}: expected one input {expected}, found {len(inputs)}: {found}")
        spec = _spec(inputs[0])
        found = _shape_text(inputs[0])
        if model.input_name is not None and spec.name != model.input_name:
            raise ModelMismatch(
                f"{where}: expected input named {model.input_name!r} {expected}, "
                f"found input {spec.name!r} {found}"
            )
        dims = spec.shape
        fits = (
            len(dims) == 4
            and spec.dtype == "float32"
            and dims[1] in (None, 3)
            and dims[2] in (None, height)
            and dims[3] in (None, width)
        )
        if not fits:
            raise ModelMismatch(f"{where}: input {spec.name!r} expected {expected}, found {found}")
        return spec

    def infer(self, batch: np.ndarray) -> list[np.ndarray]:
        """Run ``[N, 3, H, W]`` float32; a fixed-batch model runs in chunks of its batch size."""
        if self._session is None:
            raise RuntimeError(f"engine {self.name!r} is closed")
        data = np.ascontiguousarray(batch, dtype=np.float32)
        count = data.shape[0]
        fixed = self._fixed_batch
        if fixed is None or count == fixed:
            return list(self._session.run(None, {self.input.name: data}))
        parts: list[list[np.ndarray]] = []
        for start in range(0, count, fixed):
            chunk = data[start:start + fixed]
            used = chunk.shape[0]
            if used < fixed:  # pad the last chunk with black frames, drop their outputs
                pad = np.zeros((fixed - used,) + chunk.shape[1:], dtype=np.float32)
                chunk = np.concatenate([chunk, pad])
            outs = self._session.run(None, {self.input.name: chunk})
            parts.append([o[:used] for o in outs])
        return [np.concatenate(group) for group in zip(*parts, strict=True)]

    def close(self) -> None:
        self._session = None


def load_engine(model: ModelConfig, threads: int = 1) -> Engine:
    """The engine for ``model`` on this machine (ONNX Runtime on the CPU, for now),
    with its declared outputs checked against the model's parser and labels.

    Other backends (TensorRT on NVIDIA) plug in here, behind the same protocol.
    """
    return check_outputs(model, OnnxRuntimeEngine(model, threads), "file " + str(model.onnx))


def declared_input_size(path: str | Path) -> tuple[int, int] | None:
    """(width, height) of an image model's one input ``[N, 3, H, W]`` as the ONNX file declares
    it; None where those dimensions are symbolic or the model has another shape."""
    options = ort.SessionOptions()
    options.log_severity_level = 3
    inputs = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"]).get_inputs()
    dims = _dims(inputs[0].shape) if len(inputs) == 1 else ()
    if len(dims) != 4 or dims[2] is None or dims[3] is None:
        return None
    return int(dims[3]), int(dims[2])
