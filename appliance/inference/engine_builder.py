"""TensorRT engines: their names, when to rebuild them, and building them.

An engine is only valid for the ONNX file, the GPU and the TensorRT version it
was built with. Its file name says all three, and a JSON record beside it
(``<engine>.json``) holds the full ONNX sha256 and the build settings, so:

* a changed ONNX file has another hash, hence another engine name: it is rebuilt;
* an engine built on another GPU or by another TensorRT is never picked up
  (a different name), and one copied in under the right name is refused by its
  record (:func:`check_engine`);
* older engines of a model are listed as stale and can be pruned.

The naming and rebuild decision need no TensorRT and are tested on any machine;
:class:`EngineBuilder` imports ``tensorrt`` (and ``pycuda`` for INT8 calibration)
only when it builds.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import subprocess
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from appliance.config.schema import ApplianceConfig, ModelConfig
from appliance.inference.engine import ModelMismatch

log = logging.getLogger(__name__)

RECORD_SUFFIX = ".json"
JETSON_MODEL_FILE = Path("/proc/device-tree/model")
HASH_CHUNK = 1 << 20


class TensorRTUnavailable(RuntimeError):
    """TensorRT (or pycuda) cannot be imported on this machine."""


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(HASH_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def slug(text: str) -> str:
    """``NVIDIA Jetson Orin Nano Developer Kit`` -> ``nvidia-jetson-orin-nano-developer-kit``."""
    return re.sub(r"[^a-z0-9.]+", "-", text.strip().lower()).strip("-") or "unknown"


@dataclass(frozen=True)
class Platform:
    """What an engine is bound to: the GPU model and the TensorRT version."""

    gpu: str
    tensorrt: str


def import_tensorrt() -> Any:
    try:
        import tensorrt
    except ImportError as exc:
        raise TensorRTUnavailable(
            f"TensorRT is not installed for this Python ({exc}); on a Jetson it comes with JetPack "
            "(python3-libnvinfer), on a dGPU machine with NVIDIA's tensorrt wheel"
        ) from None
    return tensorrt


def gpu_name(run: Callable[..., subprocess.CompletedProcess[str]] = subprocess.run) -> str:
    """The GPU model: the Jetson module from the device tree, else ``nvidia-smi``'s first GPU."""
    if JETSON_MODEL_FILE.is_file():
        return JETSON_MODEL_FILE.read_text(errors="replace").strip("\x00\n ")
    try:
        done = run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True, text=True,
                   timeout=20, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise TensorRTUnavailable(f"cannot tell the GPU model: nvidia-smi failed ({exc})") from None
    names = [line.strip() for line in done.stdout.splitlines() if line.strip()]
    if done.returncode != 0 or not names:
        raise TensorRTUnavailable(f"cannot tell the GPU model: nvidia-smi said {done.stderr.strip() or 'nothing'}")
    return names[0]


def detect_platform() -> Platform:
    version = import_tensorrt().__version__  # first: without TensorRT, the GPU does not matter
    return Platform(gpu=gpu_name(), tensorrt=version)


@dataclass(frozen=True)
class EngineSpec:
    """Everything an engine depends on; the record written beside it."""

    model: str
    onnx: str
    onnx_sha256: str
    gpu: str
    tensorrt: str
    precision: str
    input_name: str | None
    channels: int
    height: int
    width: int
    min_batch: int
    opt_batch: int
    max_batch: int
    workspace_mib: int

    @property
    def file_name(self) -> str:
        return (
            f"{self.model}.{self.onnx_sha256[:16]}.{slug(self.gpu)}.trt{self.tensorrt}"
            f".{self.precision}.b{self.max_batch}.engine"
        )

    def shapes(self) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]:
        """The dynamic batch profile's (min, opt, max) input shapes."""
        tail = (self.channels, self.height, self.width)
        return (self.min_batch, *tail), (self.opt_batch, *tail), (self.max_batch, *tail)

    def record(self) -> dict[str, Any]:
        return {"schema": "appliance.engine/1", **asdict(self)}


@dataclass(frozen=True)
class EnginePlan:
    spec: EngineSpec
    engine: Path
    timing_cache: Path
    calibration_cache: Path | None

    @property
    def record_path(self) -> Path:
        return self.engine.with_name(self.engine.name + RECORD_SUFFIX)


@dataclass(frozen=True)
class Decision:
    build: bool
    reason: str


def streams_using(config: ApplianceConfig, model: ModelConfig) -> int:
    return sum(1 for source in config.sources if model in config.models_for(source))


def plan_engine(config: ApplianceConfig, model: ModelConfig, platform: Platform) -> EnginePlan:
    """The engine ``model`` needs on ``platform``: dynamic batch 1..max, optimised for
    the number of streams that use the model."""
    settings = config.engines
    top = settings.max_batch
    spec = EngineSpec(
        model=model.id,
        onnx=str(model.onnx),
        onnx_sha256=file_sha256(Path(model.onnx)),
        gpu=platform.gpu,
        tensorrt=platform.tensorrt,
        precision=settings.precision,
        input_name=model.input_name,
        channels=3,
        height=model.input.height,
        width=model.input.width,
        min_batch=1,
        opt_batch=max(1, min(top, streams_using(config, model))),
        max_batch=top,
        workspace_mib=settings.workspace_mib,
    )
    cache = Path(settings.cache_dir)
    engine = cache / spec.file_name
    platform_tag = f"{slug(platform.gpu)}.trt{platform.tensorrt}"
    calibration = (
        cache / f"{model.id}.{spec.onnx_sha256[:16]}.{model.input.width}x{model.input.height}.calib"
        if spec.precision == "int8" else None
    )
    return EnginePlan(spec, engine, cache / f"timing.{platform_tag}.cache", calibration)


def plan_engines(config: ApplianceConfig, platform: Platform) -> list[EnginePlan]:
    """One plan per model that a source uses, and per second-stage model (crops)."""
    return [plan_engine(config, m, platform) for m in config.models
            if streams_using(config, m) > 0 or m.second_stage]


def read_record(plan_or_engine: EnginePlan | Path) -> dict[str, Any] | None:
    path = plan_or_engine.record_path if isinstance(plan_or_engine, EnginePlan) else Path(
        str(plan_or_engine) + RECORD_SUFFIX)
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def decide(plan: EnginePlan, force: bool = False) -> Decision:
    """Whether ``plan``'s engine must be built, and why."""
    if force:
        return Decision(True, "rebuild requested")
    if not plan.engine.is_file():
        return Decision(True, f"no engine {plan.engine.name}")
    record = read_record(plan)
    if record is None:
        return Decision(True, f"engine {plan.engine.name} has no readable build record")
    differences = _differences(plan.spec.record(), record)
    if differences:
        return Decision(True, "engine was built for other settings: " + "; ".join(differences))
    return Decision(False, f"engine {plan.engine.name} is up to date")


def _differences(wanted: dict[str, Any], found: dict[str, Any]) -> list[str]:
    return [
        f"{key} {found.get(key)!r} (wanted {value!r})"
        for key, value in wanted.items()
        if key != "onnx" and found.get(key) != value
    ]


def stale_engines(plan: EnginePlan) -> list[Path]:
    """Other engines of the same model in the cache (an older ONNX, another GPU,
    another TensorRT or other settings)."""
    folder = plan.engine.parent
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.glob(f"{plan.spec.model}.*.engine") if p != plan.engine)


def check_engine(engine: Path, model: ModelConfig, platform: Platform) -> dict[str, Any]:
    """Refuse (``ModelMismatch``, expected versus found) an engine that was not built
    from ``model``'s ONNX file on this GPU with this TensorRT."""
    record = read_record(engine)
    if record is None:
        raise ModelMismatch(f"model {model.id!r}: engine {engine} has no build record {engine.name}{RECORD_SUFFIX}")
    wanted = {"onnx_sha256": file_sha256(Path(model.onnx)), "gpu": platform.gpu, "tensorrt": platform.tensorrt}
    differences = _differences(wanted, record)
    if differences:
        raise ModelMismatch(f"model {model.id!r}: engine {engine} does not fit: " + "; ".join(differences))
    return record


# -- building (TensorRT) -------------------------------------------------------------------


def _network_flags(trt: Any) -> int:
    """Explicit batch: a flag on TensorRT 8.x, the only mode (and the flag deprecated) on 10.x."""
    if int(trt.__version__.split(".")[0]) >= 10:
        return 0
    return 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)


class EngineBuilder:
    """Builds serialized engines with the TensorRT Python API (8.6 and 10.x)."""

    def __init__(self) -> None:
        self.trt = import_tensorrt()
        self.logger = self.trt.Logger(self.trt.Logger.WARNING)

    def build(self, plan: EnginePlan, calibration: Iterable[np.ndarray] | None = None) -> Path:
        trt, spec = self.trt, plan.spec
        builder = trt.Builder(self.logger)
        network = builder.create_network(_network_flags(trt))
        parser = trt.OnnxParser(network, self.logger)
        if not parser.parse(Path(spec.onnx).read_bytes()):
            errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
            raise ModelMismatch(f"model {spec.model!r}: TensorRT cannot parse {spec.onnx}: {errors}")
        if network.num_inputs != 1:
            raise ModelMismatch(f"model {spec.model!r}: expected one input, found {network.num_inputs}")
        input_name = network.get_input(0).name
        config = builder.create_builder_config()
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, spec.workspace_mib << 20)
        profile = builder.create_optimization_profile()
        profile.set_shape(input_name, *spec.shapes())
        config.add_optimization_profile(profile)
        config.set_flag(trt.BuilderFlag.FP16)  # INT8 engines keep FP16 for layers that do not quantize
        calibrator = None
        if spec.precision == "int8":
            if calibration is None or plan.calibration_cache is None:
                raise ValueError(f"model {spec.model!r}: INT8 needs calibration frames")
            config.set_flag(trt.BuilderFlag.INT8)
            calibrator = make_entropy_calibrator(trt, calibration, plan.calibration_cache)
            config.int8_calibrator = calibrator
            config.set_calibration_profile(profile)
        cache = config.create_timing_cache(plan.timing_cache.read_bytes() if plan.timing_cache.is_file() else b"")
        config.set_timing_cache(cache, False)
        log.info("model %s: building %s (%s, batch %d..%d, opt %d)", spec.model, plan.engine.name, spec.precision,
                 spec.min_batch, spec.max_batch, spec.opt_batch)
        serialized = builder.build_serialized_network(network, config)
        if serialized is None:
            raise RuntimeError(f"model {spec.model!r}: TensorRT could not build an engine (see its log above)")
        plan.engine.parent.mkdir(parents=True, exist_ok=True)
        _write_atomically(plan.timing_cache, bytes(cache.serialize()))
        _write_atomically(plan.engine, bytes(serialized))
        _write_atomically(plan.record_path, json.dumps(spec.record(), indent=2).encode())
        return plan.engine


def _write_atomically(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    partial.write_bytes(data)
    partial.replace(path)


def make_entropy_calibrator(trt: Any, batches: Iterable[np.ndarray], cache_path: Path) -> Any:
    """An ``IInt8EntropyCalibrator2`` that feeds ``batches`` (``[B, 3, H, W]`` float32)
    through one device buffer and keeps its cache in ``cache_path``: with a cache,
    TensorRT reads no frames at all."""
    try:
        import pycuda.autoinit  # noqa: F401  (creates the CUDA context)
        import pycuda.driver as cuda
    except ImportError as exc:
        raise TensorRTUnavailable(f"INT8 calibration needs pycuda ({exc})") from None

    class EntropyCalibrator(trt.IInt8EntropyCalibrator2):
        def __init__(self) -> None:
            trt.IInt8EntropyCalibrator2.__init__(self)
            self._batches: Iterator[np.ndarray] = iter(batches)
            self._first: np.ndarray | None = None
            self._device: Any = None
            self._batch_size = 0

        def _peek(self) -> np.ndarray | None:
            if self._first is None:
                self._first = next(self._batches, None)
            return self._first

        def get_batch_size(self) -> int:
            first = self._peek()
            return 0 if first is None else int(first.shape[0])

        def get_batch(self, names: list[str]) -> list[int] | None:
            batch = self._peek()
            self._first = None
            if batch is None:
                return None
            batch = np.ascontiguousarray(batch, dtype=np.float32)
            if self._device is None:
                self._device = cuda.mem_alloc(batch.nbytes)
            cuda.memcpy_htod(self._device, batch)  # synchronous: the batch buffer may be reused after this
            return [int(self._device)] * len(names)

        def read_calibration_cache(self) -> bytes | None:
            return cache_path.read_bytes() if cache_path.is_file() else None

        def write_calibration_cache(self, cache: Any) -> None:
            _write_atomically(cache_path, bytes(cache))

    return EntropyCalibrator()
