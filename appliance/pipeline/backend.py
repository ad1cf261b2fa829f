"""Which backend runs the pipeline, and why."""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass

from appliance.pipeline.gst import Gst


class BackendUnavailable(RuntimeError):
    pass


@dataclass(frozen=True)
class BackendChoice:
    name: str
    reason: str


def deepstream_present() -> tuple[bool, str]:
    if importlib.util.find_spec("pyds") is None:
        return False, "pyds is not importable"
    if Gst.ElementFactory.find("nvinfer") is None:
        return False, "the nvinfer GStreamer element is missing"
    return True, "pyds and the nvinfer element are present"


def choose_backend(requested: str) -> BackendChoice:
    present, why = deepstream_present()
    if requested == "portable":
        return BackendChoice("portable", "requested in the config")
    if requested == "deepstream":
        if not present:
            raise BackendUnavailable(f"backend deepstream was requested but {why}")
        raise BackendUnavailable(
            "backend deepstream was requested; DeepStream is installed but this release "
            "runs the portable backend only (set backend: portable or auto)"
        )
    if present:
        return BackendChoice("portable", f"auto: {why}, but this release runs the portable backend only")
    return BackendChoice("portable", f"auto: {why}")
