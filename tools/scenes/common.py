"""What every scene generator produces: frames, their ground truth and an event timeline."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

Box = tuple[float, float, float, float]  # x1, y1, x2, y2 in frame pixels


@dataclass(frozen=True)
class TruthObject:
    """One labelled box in one frame. ``track_id`` is stable over the scene."""

    track_id: int
    label: str
    box: Box
    attributes: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class FrameTruth:
    index: int
    time_s: float
    objects: list[TruthObject]


@dataclass(frozen=True)
class TimelineEvent:
    """An event a correct appliance reports: ``kind`` as in appliance events
    (``defect.part``, ``ppe.missing_item``, ``animal.immobile`` …), the object it is
    about, and when (``end_s`` equals ``start_s`` for instantaneous events)."""

    kind: str
    track_id: int | None
    start_s: float
    end_s: float
    attributes: dict[str, Any] = field(default_factory=dict)


class Scene(Protocol):
    """A rendered scenario. ``frames()`` yields BGR uint8 images of ``height x width``
    with their truth; the same seed yields byte-identical frames."""

    name: str
    width: int
    height: int
    fps: int
    duration_s: float
    labels: tuple[str, ...]  # the detector classes this scene's truth uses

    def frames(self) -> Iterator[tuple[np.ndarray, FrameTruth]]: ...

    def timeline(self) -> list[TimelineEvent]: ...


def frames_digest(scene: Scene, limit: int | None = None) -> str:
    """SHA-256 over the raw pixels of the scene's frames (the first ``limit``)."""
    digest = hashlib.sha256()
    for index, (image, _) in enumerate(scene.frames()):
        if limit is not None and index >= limit:
            break
        digest.update(np.ascontiguousarray(image).tobytes())
    return digest.hexdigest()


def truth_record(truth: FrameTruth) -> dict[str, Any]:
    return {
        "frame": truth.index,
        "time_s": round(truth.time_s, 4),
        "objects": [
            {"track_id": o.track_id, "label": o.label, "box": [round(v, 1) for v in o.box], **(
                {"attributes": o.attributes} if o.attributes else {})}
            for o in truth.objects
        ],
    }


def write_truth(scene: Scene, truths: list[FrameTruth], folder: Path, stem: str) -> tuple[Path, Path]:
    """Writes ``<stem>.truth.jsonl`` (one line per frame) and ``<stem>.timeline.json``."""
    folder.mkdir(parents=True, exist_ok=True)
    truth_path = folder / f"{stem}.truth.jsonl"
    with truth_path.open("w", encoding="utf-8") as f:
        for truth in truths:
            f.write(json.dumps(truth_record(truth), separators=(",", ":")) + "\n")
    timeline_path = folder / f"{stem}.timeline.json"
    timeline_path.write_text(json.dumps({
        "scene": scene.name, "width": scene.width, "height": scene.height, "fps": scene.fps,
        "duration_s": scene.duration_s, "labels": list(scene.labels),
        "events": [asdict(e) for e in scene.timeline()],
    }, indent=1))
    return truth_path, timeline_path
