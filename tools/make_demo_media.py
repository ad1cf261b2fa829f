#!/usr/bin/env python3
"""Write the demo clips used by ``pipelines/demo.yaml`` (skipped when already there).

    python tools/make_demo_media.py [--force]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from appliance.media import make_clip  # noqa: E402

CLIPS = {
    "line-1.mp4": {"width": 1280, "height": 720, "fps": 25, "seconds": 30, "pattern": "ball", "noise": 0.05},
    "cleanroom-1.mp4": {"width": 960, "height": 540, "fps": 15, "seconds": 30, "pattern": "ball", "noise": 0.08},
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=REPO / "media" / "demo")
    parser.add_argument("--force", action="store_true", help="make the clips again")
    args = parser.parse_args()
    for name, settings in CLIPS.items():
        path = args.out / name
        if path.is_file() and not args.force:
            continue
        make_clip(path, **settings)
        print(f"wrote {path} ({path.stat().st_size // 1024} KiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
