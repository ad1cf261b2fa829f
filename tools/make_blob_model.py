#!/usr/bin/env python3
"""Write ``engines/blobs.onnx``: a hand-built detector of bright objects on a dark background.

No training: the graph is plain arithmetic, built with ``onnx.helper``. It speaks
the Ultralytics YOLOv8 raw layout ``[N, 4+1, anchors]`` (one class,
``bright_object``) so the demo (GStreamer ``videotestsrc pattern=ball``: a white
ball on black) exercises the same parser and engine as a real YOLO model.

How it localises:

1. brightness ``v = max(R, G, B)``; mask ``m = relu(v - 0.5) * 2`` (0..1);
2. the moment images ``m, m*X, m*Y, m*X^2, m*Y^2`` (``X, Y`` pixel-centre
   coordinates) are summed over 8x8 cells (exact: sums are linear);
3. per anchor on stride-16/32/64 grids, the moments are summed over an inner
   window (3 strides wide) and an outer window (5 strides wide), both centred on
   the anchor's cell;
4. box centre = centroid, box size = 4 standard deviations (a disk's diameter),
   from the outer window; score = ``min(mass / 16 px, 1) * (inner / outer)^4 *
   compactness``: an anchor that sees the whole object (no mass between its inner
   and outer window) scores highest, anchors that see only part of it fade out,
   and so do anchors whose window holds several objects apart (the mass fills
   little of the box that spans them: ``compactness`` ramps from 0 at 40 % filled
   to 1 at 60 %; a disk fills 79 %).

Run ``python tools/make_blob_model.py [--output-dir DIR] [--size 320]``.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 13  # old enough for TensorRT on JetPack 6, new enough for Split-with-input
STRIDES = (16, 32, 64)
CELL = 8  # moments are first summed over CELL x CELL pixel cells
THRESHOLD = 0.5  # brightness (max of R, G, B in 0..1) where the mask starts
FULL_MASS = 16.0  # mask mass (pixels) that earns a full score
SHARPNESS = 4.0  # exponent on inner/outer mass: how fast partial views fade
LOW_FILL, FULL_FILL = 0.4, 0.6  # mass / box area: a disk or a rectangle fills ~0.78, two
# objects far apart in one window fill little (their box spans the gap between them)
DEFAULT_LABELS = ("bright_object",)


def _const(name: str, value: np.ndarray | float | Sequence[int]) -> onnx.TensorProto:
    array = np.asarray(value)
    if array.dtype.kind == "f":
        array = array.astype(np.float32)
    elif array.dtype.kind in "iu":
        array = array.astype(np.int64)
    return numpy_helper.from_array(array, name)


def build_blob_model(path: str | Path, size: int = 320, labels: Sequence[str] = DEFAULT_LABELS) -> Path:
    """Write the model to ``path`` and its labels to ``path`` with suffix ``.labels``."""
    if len(labels) != 1:
        raise ValueError(f"the blob model has exactly one class, got labels {list(labels)!r}")
    if size <= 0 or size % max(STRIDES) != 0:
        raise ValueError(f"size must be a positive multiple of {max(STRIDES)}, got {size}")
    path = Path(path)
    nodes: list[onnx.NodeProto] = []
    inits: list[onnx.TensorProto] = []

    def node(op: str, inputs: list[str], output: str, **attrs: object) -> str:
        nodes.append(helper.make_node(op, inputs, [output], name=output, **attrs))
        return output

    def const(name: str, value: np.ndarray | float | Sequence[int]) -> str:
        inits.append(_const(name, value))
        return name

    coords = np.arange(size, dtype=np.float32) + 0.5
    x_map = const("x_map", coords.reshape(1, 1, 1, size))
    y_map = const("y_map", coords.reshape(1, 1, size, 1))
    eps = const("eps", 1e-6)
    tiny = const("tiny", 1e-4)
    four = const("four", 4.0)
    one = const("one", 1.0)
    sharp = const("sharpness", SHARPNESS)
    full_mass = const("full_mass", FULL_MASS)
    zero = const("zero", 0.0)
    low_fill = const("low_fill", LOW_FILL)
    fill_gain = const("fill_gain", 1.0 / (FULL_FILL - LOW_FILL))

    # 1. mask of bright pixels
    value = node("ReduceMax", ["images"], "value", axes=[1], keepdims=1)
    above = node("Relu", [node("Sub", [value, const("threshold", THRESHOLD)], "value_minus_thr")], "above")
    mask = node("Mul", [above, const("gain", 1.0 / (1.0 - THRESHOLD))], "mask")
    # 2. moments, summed per cell (AveragePool gives the mean; the cell area cancels in ratios)
    mx = node("Mul", [mask, x_map], "mx")
    my = node("Mul", [mask, y_map], "my")
    mxx = node("Mul", [mx, x_map], "mxx")
    myy = node("Mul", [my, y_map], "myy")
    moments = node("Concat", [mask, mx, my, mxx, myy], "moments", axis=1)
    cells = node("AveragePool", [moments], "cells", kernel_shape=[CELL, CELL], strides=[CELL, CELL])
    split = const("split5", [1, 1, 1, 1, 1])

    levels: list[str] = []
    for stride in STRIDES:
        step = stride // CELL
        sums: dict[str, list[str]] = {}
        for window, span in (("inner", 3), ("outer", 5)):
            kernel = span * step
            pad = (kernel - step) // 2
            mean = node(
                "AveragePool", [cells], f"s{stride}_{window}_mean",
                kernel_shape=[kernel, kernel], strides=[step, step],
                pads=[pad, pad, pad, pad], count_include_pad=1,
            )
            # mean over the window -> sum over its pixels: the mass is in pixels and
            # eps stays negligible next to it
            area = const(f"s{stride}_{window}_area", float((kernel * CELL) ** 2))
            total = node("Mul", [mean, area], f"s{stride}_{window}_sum")
            names = [f"s{stride}_{window}_{q}" for q in ("m", "x", "y", "xx", "yy")]
            nodes.append(helper.make_node("Split", [total, split], names, name=f"s{stride}_{window}_split", axis=1))
            sums[window] = names
        mass, sx, sy, sxx, syy = sums["outer"]
        inner_mass = sums["inner"][0]
        p = f"s{stride}_"
        # centroid and spread (outer window)
        denom = node("Add", [mass, eps], p + "denom")
        cx = node("Div", [sx, denom], p + "cx")
        cy = node("Div", [sy, denom], p + "cy")
        ex2 = node("Div", [sxx, denom], p + "ex2")
        ey2 = node("Div", [syy, denom], p + "ey2")
        var_x = node("Relu", [node("Sub", [ex2, node("Mul", [cx, cx], p + "cx2")], p + "var_x_raw")], p + "var_x")
        var_y = node("Relu", [node("Sub", [ey2, node("Mul", [cy, cy], p + "cy2")], p + "var_y_raw")], p + "var_y")
        std_x = node("Sqrt", [node("Add", [var_x, tiny], p + "var_x_eps")], p + "std_x")
        std_y = node("Sqrt", [node("Add", [var_y, tiny], p + "var_y_eps")], p + "std_y")
        w = node("Mul", [std_x, four], p + "w")
        h = node("Mul", [std_y, four], p + "h")
        # score = amount * complete^SHARPNESS * compact
        amount = node("Min", [node("Div", [mass, full_mass], p + "mass_ratio"), one], p + "amount")
        ratio = node("Div", [inner_mass, denom], p + "ratio")
        complete = node("Pow", [node("Min", [ratio, one], p + "complete"), sharp], p + "complete_pow")
        fill = node("Div", [mass, node("Add", [node("Mul", [w, h], p + "wh"), eps], p + "box_area")], p + "fill")
        fill_scaled = node("Mul", [node("Sub", [fill, low_fill], p + "fill_over"), fill_gain], p + "fill_scaled")
        compact = node("Clip", [fill_scaled, zero, one], p + "compact")
        score = node("Mul", [node("Mul", [amount, complete], p + "seen"), compact], p + "score")
        grid = node("Concat", [cx, cy, w, h, score], p + "grid", axis=1)
        levels.append(node("Reshape", [grid, const(p + "shape", [0, 5, -1])], p + "anchors"))
    nodes.append(helper.make_node("Concat", levels, ["output0"], name="output0", axis=2))

    anchors = sum((size // stride) ** 2 for stride in STRIDES)
    graph = helper.make_graph(
        nodes,
        "blobs",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, ["N", 3, size, size])],
        [helper.make_tensor_value_info("output0", TensorProto.FLOAT, ["N", 5, anchors])],
        inits,
    )
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", OPSET)],
        producer_name="appliance tools/make_blob_model.py",
        doc_string="Bright objects on a dark background; YOLOv8 raw layout [N, 5, anchors], one class.",
    )
    model.ir_version = 8
    props = {"names": str({0: labels[0]}), "stride": str(max(STRIDES)), "imgsz": str([size, size])}
    helper.set_model_props(model, props)
    onnx.checker.check_model(model, full_check=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    path.with_suffix(".labels").write_text("".join(f"{label}\n" for label in labels), encoding="utf-8")
    return path


def main(argv: Sequence[str] | None = None) -> int:
    repo = Path(__file__).resolve().parent.parent
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output-dir", type=Path, default=repo / "engines")
    parser.add_argument("--size", type=int, default=320, help="input width and height (multiple of 64)")
    args = parser.parse_args(argv)
    path = build_blob_model(args.output_dir / "blobs.onnx", args.size)
    print(f"wrote {path} ({path.stat().st_size} bytes) and {path.with_suffix('.labels')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
