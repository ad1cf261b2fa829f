"""How far the appliance's model input is from what the models were trained on.

Renders a generated scene to H.264 as the evaluation does, reads frames of it back
through the camera pipeline's letterbox (``letterbox_chain``, then ``SamplePixels``)
and, for comparison, through ``videoconvert``'s own RGB, and compares each with the
training's letterbox of the scene's own frame (``letterbox_frame``). What is left is
the codec's and the conversion's doing: per frame, the mean signed difference in R,
G and B and the mean absolute difference, in levels of 0..255, over the picture
(the borders must be black in both, and are counted apart).

    python tools/check_model_input.py --scene cleanroom --seed 9622 --frames 30,210
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from appliance.inference.letterbox import Letterbox  # noqa: E402
from appliance.pipeline.gst import Gst  # noqa: E402
from appliance.pipeline.sources import InputSize, SamplePixels, letterbox_chain  # noqa: E402
from tools.evaluate_events import CASES  # noqa: E402
from tools.make_demo_media import render  # noqa: E402
from tools.training.data import letterbox_frame  # noqa: E402

#: videoconvert's RGB, letterboxed in RGB (the picture on Letterbox's row): the input before the exact conversion
VIDEOCONVERT_RGB = ("videoconvert ! video/x-raw,format=RGB ! videoscale add-borders=true"
                    " ! video/x-raw,format=RGB,width={width},height={height},pixel-aspect-ratio=1/1")


def packed_rgb(sample: Gst.Sample, out: np.ndarray) -> None:
    """``VIDEOCONVERT_RGB``'s frame as it is, ``[3, H, W]`` 0..1."""
    _, height, width = out.shape
    buffer = sample.get_buffer()
    ok, info = buffer.map(Gst.MapFlags.READ)
    try:
        rows = np.frombuffer(info.data, np.uint8, count=info.size).reshape(height, -1)
        out[:] = rows[:, : width * 3].reshape(height, width, 3).transpose(2, 0, 1) / 255.0
    finally:
        buffer.unmap(info)


def exact_rgb(sample: Gst.Sample, out: np.ndarray) -> None:
    SamplePixels(sample).copy_into(out)


def decoded_inputs(clip: Path, chain: str, read: Callable[[Gst.Sample, np.ndarray], None], size: InputSize,
                   indices: set[int]) -> dict[int, np.ndarray]:
    """``[H, W, 3]`` RGB (0..255) model inputs of the clip's frames ``indices`` through ``chain``."""
    pipeline = Gst.parse_launch(f'filesrc location="{clip}" ! decodebin ! {chain} ! appsink name=sink sync=false')
    sink = pipeline.get_by_name("sink")
    pipeline.set_state(Gst.State.PLAYING)
    got: dict[int, np.ndarray] = {}
    try:
        for index in range(max(indices) + 1):
            sample = sink.emit("try-pull-sample", 10 * Gst.SECOND)
            if sample is None:
                raise SystemExit(f"{clip}: no frame {index}")
            if index in indices:
                out = np.zeros((3, size.height, size.width), np.float32)
                read(sample, out)
                got[index] = out.transpose(1, 2, 0) * 255.0
    finally:
        pipeline.set_state(Gst.State.NULL)
    return got


@dataclass(frozen=True)
class Difference:
    """One input of one frame against the training's letterbox, in levels of 0..255."""

    name: str  # which input: ``INPUTS``'s key
    frame: int
    signed: tuple[float, float, float]  # mean of input - trained over the picture, in R, G and B
    absolute: float  # mean |input - trained| over the picture
    border: float  # the brightest border value (0: black, as trained)

    def line(self) -> str:
        signed = " ".join(f"{c} {v:+.2f}" for c, v in zip("RGB", self.signed))
        return (f"frame {self.frame:4d}  {self.name:18s} {signed}  |diff| {self.absolute:.2f}"
                f"  border max {self.border:.0f}")


def compare(name: str, index: int, found: np.ndarray, trained: np.ndarray, letterbox: Letterbox) -> Difference:
    y0, x0 = letterbox.pad_y, letterbox.pad_x
    picture = (slice(y0, y0 + letterbox.scaled_h), slice(x0, x0 + letterbox.scaled_w))
    diff = found[picture] - trained[picture]
    border = np.ones(found.shape[:2], bool)
    border[picture] = False
    r, g, b = (float(v) for v in diff.mean(axis=(0, 1)))
    return Difference(name, index, (r, g, b), float(np.abs(diff).mean()),
                      float(found[border].max()) if border.any() else 0.0)


def differences(scene_name: str, seed: int, indices: set[int], size: InputSize) -> list[Difference]:
    """Each input's difference from the training's letterbox, for the frames ``indices`` of a scene."""
    Gst.init(None)
    case = CASES[scene_name]
    fps = case.make(seed, 1.0).fps
    scene = case.make(seed, (max(indices) + 2) / fps)
    trained: dict[int, np.ndarray] = {}
    with tempfile.TemporaryDirectory() as tmp:
        clip = render(f"{scene_name}-{seed}", scene, Path(tmp))
        for index, (image, _) in enumerate(scene.frames()):
            if index in indices:
                letterbox = Letterbox.compute(image.shape[1], image.shape[0], size.width, size.height)
                trained[index] = letterbox_frame(image, letterbox).astype(np.float64)
            if index >= max(indices):
                break
        chains = {"appliance input": (letterbox_chain(size), exact_rgb),
                  "videoconvert RGB": (VIDEOCONVERT_RGB.format(width=size.width, height=size.height), packed_rgb)}
        inputs = {name: decoded_inputs(clip, chain, read, size, indices) for name, (chain, read) in chains.items()}
    return [compare(name, index, frames[index], trained[index], letterbox)
            for index in sorted(indices) for name, frames in inputs.items()]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scene", choices=sorted(CASES), default="cleanroom")
    parser.add_argument("--seed", type=int, default=9622)
    parser.add_argument("--frames", default="30,210", help="frame numbers, comma-separated")
    parser.add_argument("--size", default="480x288", help="the model input, WIDTHxHEIGHT")
    args = parser.parse_args(argv)
    width, height = (int(v) for v in args.size.split("x"))
    found = differences(args.scene, args.seed, {int(f) for f in args.frames.split(",")}, InputSize(width, height))
    print(f"{args.scene} seed {args.seed} into {width}x{height}; "
          "mean difference from the training's letterbox of the rendered frame, levels of 0..255")
    for difference in found:
        print(difference.line())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
