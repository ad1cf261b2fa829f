"""GStreamer import and initialisation, in one place."""

from __future__ import annotations

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstVideo", "1.0")
from gi.repository import Gst, GstVideo  # noqa: E402

Gst.init(None)

__all__ = ["Gst", "GstVideo"]
