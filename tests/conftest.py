"""Shared fixtures: generated clips, the demo blob model, a real RTSP camera on 127.0.0.1."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from appliance.media import make_clip
from tests.support import REPO, RtspCamera, free_port


@pytest.fixture(scope="session")
def clips(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("clips")
    return {
        "ball": make_clip(folder / "ball.mp4", width=640, height=360, fps=15, seconds=12),
        "long": make_clip(folder / "long.mp4", width=640, height=360, fps=15, seconds=90),
    }


@pytest.fixture(scope="session")
def blob_model() -> Path:
    path = REPO / "engines" / "blobs.onnx"
    if not path.is_file():
        subprocess.run([sys.executable, str(REPO / "tools" / "make_blob_model.py")], check=True)
    return path


@pytest.fixture(scope="session")
def demo_media() -> Path:
    """The demo clips of ``pipelines/demo.yaml``, rendered as ``make demo`` does (kept when there)."""
    subprocess.run([sys.executable, str(REPO / "tools" / "make_demo_media.py")], check=True)
    return REPO / "media" / "demo"


@pytest.fixture
def rtsp_camera(clips: dict[str, Path]) -> Iterator[RtspCamera]:
    camera = RtspCamera(clips["long"], free_port())
    camera.start()
    yield camera
    camera.kill()
