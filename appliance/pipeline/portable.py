"""The portable backend: GStreamer decode per source, a Python batcher, ONNX Runtime."""

from __future__ import annotations

import logging
import threading

from appliance.clock import Clock
from appliance.config.schema import ApplianceConfig, SourceConfig
from appliance.events.factory import EventFactory
from appliance.metrics import ApplianceMetrics
from appliance.pipeline.batching import Batcher, EngineFactory, ResultSink
from appliance.pipeline.frames import FrameSlot
from appliance.pipeline.sources import CameraStream, EventSink, InputSize, StreamState

log = logging.getLogger(__name__)

POLL_INTERVAL_S = 0.1
DEFAULT_INPUT = InputSize(320, 320)


def input_size_for(config: ApplianceConfig, source: SourceConfig) -> InputSize:
    """The size a source's frames are letterboxed to: its models' input size (the schema
    makes sure they share one)."""
    models = config.models_for(source)
    return InputSize(models[0].input.width, models[0].input.height) if models else DEFAULT_INPUT


class PortableBackend:
    name = "portable"
    tracks_objects = False  # the analytics' own tracker follows the objects

    def __init__(
        self,
        config: ApplianceConfig,
        make_engine: EngineFactory,
        on_result: ResultSink,
        on_event: EventSink,
        events: EventFactory,
        metrics: ApplianceMetrics,
        clock: Clock,
    ) -> None:
        self._clock = clock
        self._ready = threading.Condition()
        self._stopping = threading.Event()
        self.streams: list[CameraStream] = []
        for source in config.sources:
            slot = FrameSlot(source.id, wait_when_full=not source.is_live and not source.realtime, ready=self._ready)
            stream = CameraStream(source, input_size_for(config, source), slot, metrics, events, on_event, clock)
            self.streams.append(stream)
            metrics.declare_stream(source.id)
        for model in config.models:
            metrics.declare_model(model.id)
        self.batcher = Batcher(
            slots=[s.slot for s in self.streams],
            stream_models={s.id: [m.id for m in config.models_for(s.config)] for s in self.streams},
            models=[m for m in config.models if not m.second_stage],  # crops are the analytics' business
            make_engine=make_engine,
            on_result=on_result,
            metrics=metrics,
            clock=clock,
            ready=self._ready,
            workers=config.inference.workers,
            max_batch=config.inference.max_batch,
        )
        self._supervisor = threading.Thread(target=self._supervise, name="stream-supervisor", daemon=True)

    def start(self) -> None:
        self.batcher.start()
        for stream in self.streams:
            stream.start()
        self._supervisor.start()

    def stop(self) -> None:
        self._stopping.set()
        if self._supervisor.is_alive():
            self._supervisor.join(timeout=5)
        for stream in self.streams:
            stream.stop()
        self.batcher.stop()

    @property
    def loaded_models(self) -> list[str]:
        return self.batcher.loaded_models

    @property
    def finished(self) -> bool:
        """True when every source is a file that played to its end and was analyzed."""
        return all(
            s.state is StreamState.ENDED and not s.slot.has_frame and not s.slot.busy for s in self.streams
        )

    def _supervise(self) -> None:
        while not self._stopping.wait(POLL_INTERVAL_S):
            for stream in self.streams:
                try:
                    stream.poll()
                except Exception:
                    log.exception("stream %s: supervision failed", stream.id)
