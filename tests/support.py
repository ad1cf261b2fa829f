"""Helpers for tests: free ports, metrics scraping, a real RTSP camera process, a frame's pixels."""

from __future__ import annotations

import os
import subprocess
import sys
import urllib.request
from pathlib import Path

import numpy as np
from prometheus_client.parser import text_string_to_metric_families

from appliance.loopback import free_port, wait_for_port  # noqa: F401 (the tests import both from here)

REPO = Path(__file__).resolve().parent.parent


def scrape(port: int, path: str = "/metrics") -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Samples of the appliance's /metrics as {(name, sorted labels): value}."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
        text = response.read().decode()
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def metric(samples: dict, name: str, **labels: str) -> float | None:
    return samples.get((name, tuple(sorted(labels.items()))))


class RtspCamera:
    """``python -m appliance.rtsp_server`` in a subprocess that tests can kill and restart."""

    def __init__(self, clip: Path, port: int) -> None:
        self.clip = clip
        self.port = port
        self.url = f"rtsp://127.0.0.1:{port}/cam"
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self._process = subprocess.Popen(
            [sys.executable, "-m", "appliance.rtsp_server", "--file", str(self.clip), "--port", str(self.port)],
            cwd=REPO,
            stdout=subprocess.DEVNULL,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        wait_for_port(self.port)

    def kill(self) -> None:
        if self._process is not None:
            self._process.kill()
            self._process.wait()
            self._process = None


class Picture:
    """A frame's pixels as the analytics get them, counting the whole-frame conversions (``rgb()``) and
    the samplings of a few pixels (``sample()``) asked for."""

    def __init__(self, rgb: np.ndarray) -> None:
        self.pixels = rgb
        self.conversions = 0
        self.samplings = 0

    @property
    def size(self) -> tuple[int, int]:
        return self.pixels.shape[1], self.pixels.shape[0]

    def rgb(self) -> np.ndarray:
        self.conversions += 1
        return self.pixels

    def sample(self, ys: np.ndarray, xs: np.ndarray) -> np.ndarray:
        self.samplings += 1
        return self.pixels[ys, xs]
