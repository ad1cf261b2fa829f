"""Which backend runs the pipeline, and why.

``backend: auto`` picks DeepStream when ``pyds`` imports and GStreamer has the
``nvinfer`` element, else the portable backend; the choice and its reason are
logged at start-up. When DeepStream is present but cannot run this config (a
source it does not read, an engine not built yet), ``auto`` falls back to the
portable backend and says why; ``backend: deepstream`` refuses to start instead.
"""

from __future__ import annotations

import importlib.util
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from appliance.pipeline.gst import Gst

if TYPE_CHECKING:
    from appliance.clock import Clock
    from appliance.config.schema import ApplianceConfig
    from appliance.events.factory import EventFactory
    from appliance.metrics import ApplianceMetrics

log = logging.getLogger(__name__)


class BackendUnavailable(RuntimeError):
    pass


@dataclass(frozen=True)
class BackendChoice:
    name: str
    reason: str


def deepstream_present(find_element: Callable[[str], Any] = Gst.ElementFactory.find) -> tuple[bool, str]:
    if importlib.util.find_spec("pyds") is None:
        return False, "pyds is not importable"
    if find_element("nvinfer") is None:
        return False, "the nvinfer GStreamer element is missing"
    return True, "pyds and the nvinfer element are present"


def choose_backend(requested: str, present: tuple[bool, str] | None = None) -> BackendChoice:
    if requested == "portable":
        return BackendChoice("portable", "requested in the config")
    found, why = present if present is not None else deepstream_present()
    if requested == "deepstream":
        if not found:
            raise BackendUnavailable(f"backend deepstream was requested but {why}")
        return BackendChoice("deepstream", f"requested in the config; {why}")
    return BackendChoice("deepstream" if found else "portable", f"auto: {why}")


def make_backend(
    config: ApplianceConfig,
    make_engine: Callable[..., Any],
    on_result: Callable[..., None],
    on_event: Callable[..., None],
    events: EventFactory,
    metrics: ApplianceMetrics,
    clock: Clock,
    choice: BackendChoice | None = None,
) -> Any:
    """The chosen backend, built; both call ``on_result``/``on_event`` alike."""
    from appliance.pipeline.portable import PortableBackend

    choice = choice or choose_backend(config.backend)
    if choice.name == "deepstream":
        try:
            from appliance.inference.engine_builder import TensorRTUnavailable, detect_platform
            from appliance.pipeline.deepstream import DeepStreamBackend, check_sources

            check_sources(config)  # before TensorRT: the config's own reasons come first
            try:
                platform = detect_platform()
            except TensorRTUnavailable as exc:
                raise BackendUnavailable(str(exc)) from None
            backend = DeepStreamBackend(config, on_result, on_event, events, metrics, clock, platform)
            log.info("backend: deepstream (%s)", choice.reason)
            return backend
        except BackendUnavailable as exc:
            if config.backend == "deepstream":
                raise
            choice = BackendChoice("portable", f"{choice.reason}, but {exc}")
    log.info("backend: %s (%s)", choice.name, choice.reason)
    return PortableBackend(config, make_engine, on_result, on_event, events, metrics, clock)
