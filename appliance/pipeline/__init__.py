"""Backends that turn camera sources into FrameResults."""
