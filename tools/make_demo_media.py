#!/usr/bin/env python3
"""Render the demo clips used by ``pipelines/demo.yaml``, with their ground truth.

    python tools/make_demo_media.py [--force] [--out media/demo]

For each use case (the production line and its tool check station, the clean room, the
lab cage): ``<name>.mp4`` (H.264), ``<name>.truth.jsonl`` (boxes, labels and
track ids per frame) and ``<name>.timeline.json`` (the events a correct appliance
reports). Clips already there are kept; the same seeds always give the same frames.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from appliance.media import write_video  # noqa: E402
from tools.scenes.cage import CageScene  # noqa: E402
from tools.scenes.cleanroom import CleanRoomScene  # noqa: E402
from tools.scenes.common import Scene, write_truth  # noqa: E402
from tools.scenes.production import ProductionLineScene, ToolStationScene  # noqa: E402

BITRATE_KBPS = 380  # 60 s stay under 3 MB
# Seeds from the held-out range (9000 and up): the demo models never saw these scenes.

CLIPS: dict[str, Callable[[], Scene]] = {
    "line-1": lambda: ProductionLineScene(seed=9100, duration_s=45.0),
    "station-1": lambda: ToolStationScene(seed=9116, duration_s=40.0),  # all three states
    "cleanroom-1": lambda: CleanRoomScene(seed=9107, duration_s=45.0),
    "cage-1": lambda: CageScene(seed=9302, duration_s=60.0),
}


def render(name: str, scene: Scene, out: Path) -> Path:
    truths = []

    def frames():
        for image, truth in scene.frames():
            truths.append(truth)
            yield image

    path = out / f"{name}.mp4"
    write_video(frames(), path, scene.width, scene.height, scene.fps, bitrate_kbps=BITRATE_KBPS,
                key_interval=scene.fps * 2)
    write_truth(scene, truths, out, name)
    return path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=REPO / "media" / "demo")
    parser.add_argument("--force", action="store_true", help="render the clips again")
    args = parser.parse_args()
    for name, make in CLIPS.items():
        if (args.out / f"{name}.mp4").is_file() and (args.out / f"{name}.timeline.json").is_file() and not args.force:
            continue
        path = render(name, make(), args.out)
        print(f"wrote {path} ({path.stat().st_size // 1024} KiB) with its truth and timeline")
    return 0


if __name__ == "__main__":
    sys.exit(main())
