"""Portable multi-object tracking (nvtracker does it under DeepStream)."""
