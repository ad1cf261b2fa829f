"""The batcher: takes the newest frame of each stream and runs one batched
inference per model across all streams that use it.

Each worker thread owns its engines (one ONNX Runtime session per model, one
thread each by default): on a small machine two single-threaded sessions keep
both cores busier than one session with two threads. A stream is analyzed by one
worker at a time, so its results come out in frame order.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np

from appliance.clock import Clock
from appliance.config.schema import ModelConfig
from appliance.inference.engine import Engine
from appliance.inference.letterbox import Letterbox
from appliance.inference.parsers import Parser, parser_for
from appliance.metrics import ApplianceMetrics
from appliance.pipeline.frames import Frame, FrameSlot
from appliance.types import Detection, FrameResult

log = logging.getLogger(__name__)

EngineFactory = Callable[[ModelConfig], Engine]
ResultSink = Callable[[FrameResult, Any], None]  # the result and its source image (or None)


@lru_cache(maxsize=256)
def letterbox_for(src_w: int, src_h: int, dst_w: int, dst_h: int) -> Letterbox:
    return Letterbox.compute(src_w, src_h, dst_w, dst_h)


@dataclass
class ModelRuntime:
    """One model as one worker runs it: engine, parser and a reused input buffer."""

    config: ModelConfig
    engine: Engine
    parser: Parser
    batch: np.ndarray  # [max_batch, 3, H, W] float32, filled in place

    @classmethod
    def create(cls, config: ModelConfig, engine: Engine, max_batch: int) -> ModelRuntime:
        size = min(max_batch, engine.max_batch)
        parser = parser_for(config)
        batch = np.zeros((size, 3, config.input.height, config.input.width), dtype=np.float32)
        return cls(config, engine, parser, batch)

    def analyze(self, frames: Sequence[Frame], metrics: ApplianceMetrics, clock: Clock) -> list[list[Detection]]:
        found: list[list[Detection]] = []
        size = self.batch.shape[0]
        width, height = self.config.input.width, self.config.input.height
        for start in range(0, len(frames), size):
            chunk = frames[start:start + size]
            for index, frame in enumerate(chunk):
                frame.pixels.copy_into(self.batch[index])
            boxes = [letterbox_for(f.width, f.height, width, height) for f in chunk]
            began = clock.monotonic()
            outputs = self.engine.infer(self.batch[: len(chunk)])
            metrics.inference_latency.labels(self.config.id).observe(clock.monotonic() - began)
            metrics.batch_size.labels(self.config.id).observe(len(chunk))
            found.extend(self.parser.parse(outputs, boxes))
        return found


class Batcher:
    def __init__(
        self,
        slots: Sequence[FrameSlot],
        stream_models: dict[str, list[str]],
        models: Sequence[ModelConfig],
        make_engine: EngineFactory,
        on_result: ResultSink,
        metrics: ApplianceMetrics,
        clock: Clock,
        ready: threading.Condition,
        workers: int = 2,
        max_batch: int = 8,
    ) -> None:
        self._slots = list(slots)
        self._stream_models = stream_models
        self._on_result = on_result
        self._metrics = metrics
        self._clock = clock
        self._ready = ready
        self._stopping = threading.Event()
        # Engines are made here, not in the threads, so a bad model fails start-up.
        self._runtimes = [
            [ModelRuntime.create(m, make_engine(m), max_batch) for m in models] for _ in range(workers)
        ]
        self._threads = [
            threading.Thread(target=self._work, args=(runtimes,), name=f"batcher-{i}", daemon=True)
            for i, runtimes in enumerate(self._runtimes)
        ]

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        self._stopping.set()
        with self._ready:
            self._ready.notify_all()
        for thread in self._threads:
            thread.join(timeout=10)
        for runtimes in self._runtimes:
            for runtime in runtimes:
                runtime.engine.close()

    @property
    def loaded_models(self) -> list[str]:
        """Ids of the models whose engines are open (made at start-up, closed at stop)."""
        return [] if self._stopping.is_set() else [r.config.id for r in self._runtimes[0]]

    def _take(self) -> list[tuple[FrameSlot, Frame]]:
        with self._ready:
            while not self._stopping.is_set():
                taken = []
                for slot in self._slots:
                    if slot.busy or not slot.has_frame:
                        continue
                    frame = slot.take()
                    if frame is not None:
                        slot.busy = True
                        taken.append((slot, frame))
                if taken:
                    now = self._clock.monotonic()
                    for _, frame in taken:
                        self._metrics.frame_age.labels(frame.stream_id).observe(now - frame.arrived)
                    return taken
                self._ready.wait(0.25)
            return []

    def _work(self, runtimes: list[ModelRuntime]) -> None:
        while not self._stopping.is_set():
            taken = self._take()
            if not taken:
                continue
            try:
                self._analyze([frame for _, frame in taken], runtimes)
            finally:
                with self._ready:
                    for slot, _ in taken:
                        slot.busy = False
                    self._ready.notify_all()

    def _analyze(self, frames: list[Frame], runtimes: list[ModelRuntime]) -> None:
        detections: dict[int, list[Detection]] = {id(f): [] for f in frames}
        for runtime in runtimes:
            users = [f for f in frames if runtime.config.id in self._stream_models.get(f.stream_id, ())]
            if not users:
                continue
            try:
                per_frame = runtime.analyze(users, self._metrics, self._clock)
            except Exception:
                log.exception("model %s failed on a batch of %d frames", runtime.config.id, len(users))
                self._metrics.inference_errors.labels(runtime.config.id).inc()
                continue
            for frame, found in zip(users, per_frame):
                detections[id(frame)].extend(found)
        for frame in frames:
            result = FrameResult(
                stream_id=frame.stream_id,
                frame_number=frame.frame_number,
                pts_ns=frame.pts_ns,
                wall_time=frame.wall_time,
                width=frame.width,
                height=frame.height,
                detections=detections[id(frame)],
            )
            self._metrics.frames_analyzed.labels(frame.stream_id).inc()
            self._metrics.frame_latency.labels(frame.stream_id).observe(self._clock.monotonic() - frame.arrived)
            for det in result.detections:
                self._metrics.detections.labels(frame.stream_id, det.label).inc()
            self._on_result(result, frame.image)
