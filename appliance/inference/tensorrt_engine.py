"""The TensorRT engine (tensorrt + pycuda): the ``Engine`` protocol on an NVIDIA GPU.

With it the portable backend runs on a Jetson or a dGPU machine without DeepStream.
One engine object owns, allocated once at load and reused for every batch:

* one CUDA stream;
* a page-locked (pinned) host buffer and a device buffer per input and output,
  sized for the engine's largest batch;

and each ``infer`` copies the batch in, runs and copies the outputs back, all
asynchronously on that stream, then waits once. Tensors are addressed by name
(``num_io_tensors``, ``get_tensor_name``, ``set_input_shape``,
``set_tensor_address``, ``execute_async_v3``): the API of TensorRT 8.6 and 10.x
(10.x removed the older bindings API).

The returned outputs are views of the pinned buffers, valid until the next
``infer`` on this engine: the batcher parses them at once, and each batcher
worker owns its engines.

The engine file must carry the build record of ``engine_builder`` for this ONNX
file, GPU and TensorRT version, else it is refused (``ModelMismatch``).
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from appliance.config.schema import ApplianceConfig, ModelConfig
from appliance.inference.engine import ModelMismatch, TensorSpec
from appliance.inference.engine_builder import Platform, TensorRTUnavailable, check_engine, import_tensorrt
from appliance.inference.parsers import check_outputs

log = logging.getLogger(__name__)


def import_pycuda() -> Any:
    try:
        import pycuda.driver as cuda
    except ImportError as exc:
        raise TensorRTUnavailable(f"pycuda is not installed for this Python ({exc})") from None
    return cuda


@dataclass
class _Tensor:
    name: str
    is_input: bool
    dtype: np.dtype
    max_shape: tuple[int, ...]
    host: np.ndarray  # pinned, max_shape
    device: Any  # pycuda DeviceAllocation

    def spec(self) -> TensorSpec:
        return TensorSpec(self.name, (None, *self.max_shape[1:]), self.dtype.name)


class TensorRTEngine:
    """A deserialized TensorRT engine with its buffers, checked against ``ModelConfig``."""

    def __init__(self, model: ModelConfig, engine_path: Path, gpu: str, tensorrt_version: str | None = None,
                 device_index: int = 0) -> None:
        trt = import_tensorrt()
        cuda = import_pycuda()
        self.name = model.id
        self.path = Path(engine_path)
        record = check_engine(self.path, model, Platform(gpu, tensorrt_version or trt.__version__))
        self._trt, self._cuda = trt, cuda
        cuda.init()
        self._context_cuda = cuda.Device(device_index).retain_primary_context()
        self._lock = threading.Lock()
        self._context_cuda.push()
        try:
            runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
            self._engine = runtime.deserialize_cuda_engine(self.path.read_bytes())
            if self._engine is None:
                raise ModelMismatch(f"model {model.id!r}: TensorRT could not load {self.path}")
            self._context = self._engine.create_execution_context()
            self._stream = cuda.Stream()
            names = [self._engine.get_tensor_name(i) for i in range(self._engine.num_io_tensors)]
            inputs_first = sorted(names, key=lambda n: self._engine.get_tensor_mode(n) != trt.TensorIOMode.INPUT)
            self._tensors = [self._allocate(name) for name in inputs_first]  # outputs sized at the max batch
        finally:
            self._context_cuda.pop()
        inputs = [t for t in self._tensors if t.is_input]
        self._check_input(model, inputs)
        self._input = inputs[0]
        self._outputs = [t for t in self._tensors if not t.is_input]
        self.input = self._input.spec()
        self.outputs = tuple(t.spec() for t in self._outputs)
        self.max_batch = int(self._input.max_shape[0])
        log.info("model %s: TensorRT engine %s (%s, batch up to %d)", model.id, self.path.name,
                 record.get("precision"), self.max_batch)

    def _allocate(self, name: str) -> _Tensor:
        trt, cuda, engine = self._trt, self._cuda, self._engine
        is_input = engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT
        dtype = np.dtype(trt.nptype(engine.get_tensor_dtype(name)))
        if is_input:
            shape = tuple(int(d) for d in engine.get_tensor_profile_shape(name, 0)[2])  # (min, opt, max)[max]
            self._context.set_input_shape(name, shape)
        else:
            shape = tuple(int(d) for d in self._context.get_tensor_shape(name))
        if any(d < 0 for d in shape):
            raise ModelMismatch(f"model {self.name!r}: tensor {name!r} has an unresolved shape {shape}")
        host = cuda.pagelocked_empty(shape, dtype)
        device = cuda.mem_alloc(host.nbytes)
        self._context.set_tensor_address(name, int(device))
        return _Tensor(name, is_input, dtype, shape, host, device)

    def _check_input(self, model: ModelConfig, inputs: list[_Tensor]) -> None:
        expected = f"[N, 3, {model.input.height}, {model.input.width}] float32"
        if len(inputs) != 1:
            raise ModelMismatch(f"model {model.id!r} ({self.path}): expected one input {expected}, found {len(inputs)}")
        found = inputs[0]
        if found.max_shape[1:] != (3, model.input.height, model.input.width) or found.dtype != np.float32:
            raise ModelMismatch(
                f"model {model.id!r} ({self.path}): input {found.name!r} expected {expected}, "
                f"found [N, {', '.join(map(str, found.max_shape[1:]))}] {found.dtype.name}"
            )

    def infer(self, batch: np.ndarray) -> list[np.ndarray]:
        count = int(batch.shape[0])
        if not 1 <= count <= self.max_batch:
            raise ValueError(f"engine {self.name!r}: batch of {count}, the engine takes 1..{self.max_batch}")
        cuda, source = self._cuda, self._input
        with self._lock:
            self._context_cuda.push()
            try:
                np.copyto(source.host[:count], batch, casting="same_kind")
                shape = (count, *source.max_shape[1:])
                self._context.set_input_shape(source.name, shape)
                cuda.memcpy_htod_async(source.device, source.host[:count], self._stream)
                if not self._context.execute_async_v3(self._stream.handle):
                    raise RuntimeError(f"engine {self.name!r}: TensorRT execution failed")
                views = []
                for out in self._outputs:
                    rows = int(self._context.get_tensor_shape(out.name)[0])
                    cuda.memcpy_dtoh_async(out.host[:rows], out.device, self._stream)
                    views.append(out.host[:rows])
                self._stream.synchronize()
                return views
            finally:
                self._context_cuda.pop()

    def close(self) -> None:
        with self._lock:
            if not getattr(self, "_tensors", None):
                return
            self._context_cuda.push()
            try:
                for tensor in self._tensors:
                    tensor.device.free()
                self._tensors = []
                self._context = None
                self._engine = None
            finally:
                self._context_cuda.pop()


def load_tensorrt_engine(config: ApplianceConfig, model: ModelConfig) -> TensorRTEngine:
    """The engine ``appliance engines build`` made for ``model`` on this machine."""
    from appliance.inference.engine_builder import detect_platform, plan_engine

    try:
        platform = detect_platform()
    except TensorRTUnavailable as exc:
        raise ModelMismatch(f"model {model.id!r}: engines.runtime is tensorrt, but {exc}") from None
    plan = plan_engine(config, model, platform)
    if not plan.engine.is_file():
        raise ModelMismatch(f"model {model.id!r}: no engine {plan.engine}; run `appliance engines build` first")
    engine = TensorRTEngine(model, plan.engine, platform.gpu, platform.tensorrt)
    return check_outputs(model, engine, f"engine {plan.engine}")
