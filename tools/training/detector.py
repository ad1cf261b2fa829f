"""A small anchor-free YOLO-like detector and its export to the Ultralytics YOLOv8 raw layout.

Network
-------
* backbone: a 4x4 stride-4 "patchify" conv-BN-SiLU stem (no full-resolution feature
  maps: on a CPU they cost more time than they bring), then three stride-2 stages
  (strides 8, 16, 32); the stem and each stage are followed by a light C2f block
  (split, one bottleneck on half the channels, merge);
* neck: a small FPN (top-down) + PAN (bottom-up) at ``neck`` channels, outputs at
  strides 8, 16 and 32;
* heads: decoupled per level (a box branch and a class branch, two depthwise-separable
  3x3 convs each).
  The box branch predicts ``l, t, r, b`` distances from the anchor point (the cell
  centre) as ``softplus(x) * stride``; the class branch predicts one logit per class.

Export
------
``export_onnx`` writes opset 17 with the decoding inside the graph: input ``images``
``[N, 3, H, W]`` float32 RGB 0..1 (``H``, ``W`` multiples of 32; 320 x 320 unless a
model's plan says otherwise), output ``output0`` ``[N, 4 + nc, A]`` with
rows ``cx, cy, w, h`` in input pixels and then ``nc`` sigmoid class scores, ``A``
anchors ordered stride 8, 16, 32 and row-major inside a level (Ultralytics' order).
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

REPO = Path(__file__).resolve().parents[2]
STRIDES = (8, 16, 32)
INPUT_SIZE = 320


@dataclass(frozen=True)
class DetectorConfig:
    num_classes: int
    widths: tuple[int, int, int, int] = (24, 48, 80, 128)  # strides 4, 8, 16, 32
    neck: int = 48
    head: int = 48

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


class ConvBnAct(nn.Module):
    def __init__(self, cin: int, cout: int, k: int = 3, s: int = 1, groups: int = 1, pad: int | None = None) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, k, s, k // 2 if pad is None else pad, groups=groups, bias=False)
        self.bn = nn.BatchNorm2d(cout, eps=1e-3, momentum=0.03)
        self.act = nn.SiLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(x)))


class Bottleneck(nn.Module):
    def __init__(self, c: int) -> None:
        super().__init__()
        self.cv1 = ConvBnAct(c, c, 3)
        self.cv2 = ConvBnAct(c, c, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.cv2(self.cv1(x))


class C2f(nn.Module):
    """YOLOv8's C2f with one bottleneck: 1x1 split, bottleneck on one half, 1x1 merge of all three."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.hidden = cout // 2
        self.cv1 = ConvBnAct(cin, 2 * self.hidden, 1)
        self.block = Bottleneck(self.hidden)
        self.cv2 = ConvBnAct(3 * self.hidden, cout, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, b = self.cv1(x).split(self.hidden, dim=1)
        return self.cv2(torch.cat([a, b, self.block(b)], dim=1))


class SepConv(nn.Module):
    """Depthwise 3x3 + pointwise 1x1 (each conv-BN-SiLU): a cheap 3x3 conv for the heads."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.dw = ConvBnAct(cin, cin, 3, groups=cin)
        self.pw = ConvBnAct(cin, cout, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pw(self.dw(x))


class Head(nn.Module):
    """Decoupled head for one level: box (4 distances) and class logits, two separable convs each."""

    def __init__(self, cin: int, width: int, num_classes: int, stride: int) -> None:
        super().__init__()
        self.box = nn.Sequential(SepConv(cin, width), SepConv(width, width), nn.Conv2d(width, 4, 1))
        self.cls = nn.Sequential(SepConv(cin, width), SepConv(width, width), nn.Conv2d(width, num_classes, 1))
        box_out, cls_out = self.box[-1], self.cls[-1]
        assert isinstance(box_out, nn.Conv2d) and isinstance(cls_out, nn.Conv2d)
        nn.init.constant_(box_out.bias, math.log(math.e - 1.0))  # softplus(b) = 1: one stride each side
        nn.init.constant_(cls_out.bias, -math.log((1 - 0.01) / 0.01))  # prior score 0.01
        nn.init.normal_(box_out.weight, std=0.01)
        nn.init.normal_(cls_out.weight, std=0.01)
        self.stride = stride

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.box(x), self.cls(x)


class Detector(nn.Module):
    """Returns, for an ``[N, 3, H, W]`` input (``H``, ``W`` multiples of 32), the raw
    per-anchor predictions: ``ltrb`` distances in input pixels ``[N, A, 4]`` and class
    logits ``[N, A, nc]``, anchors in the export order."""

    def __init__(self, config: DetectorConfig) -> None:
        super().__init__()
        self.config = config
        w1, w2, w3, w4 = config.widths
        n = config.neck
        self.stage1 = nn.Sequential(ConvBnAct(3, w1, 4, 4, pad=0), C2f(w1, w1))
        self.stage2 = nn.Sequential(ConvBnAct(w1, w2, 3, 2), C2f(w2, w2))
        self.stage3 = nn.Sequential(ConvBnAct(w2, w3, 3, 2), C2f(w3, w3))
        self.stage4 = nn.Sequential(ConvBnAct(w3, w4, 3, 2), C2f(w4, w4))
        self.lat5 = ConvBnAct(w4, n, 1)
        self.top4 = C2f(n + w3, n)
        self.top3 = C2f(n + w2, n)
        self.down3 = ConvBnAct(n, n, 3, 2)
        self.out4 = C2f(2 * n, n)
        self.down4 = ConvBnAct(n, n, 3, 2)
        self.out5 = C2f(2 * n, n)
        self.heads = nn.ModuleList(Head(n, config.head, config.num_classes, s) for s in STRIDES)

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        c3 = self.stage2(self.stage1(x))
        c4 = self.stage3(c3)
        c5 = self.stage4(c4)
        p5 = self.lat5(c5)
        p4 = self.top4(torch.cat([F.interpolate(p5, scale_factor=2.0, mode="nearest"), c4], dim=1))
        p3 = self.top3(torch.cat([F.interpolate(p4, scale_factor=2.0, mode="nearest"), c3], dim=1))
        n4 = self.out4(torch.cat([self.down3(p3), p4], dim=1))
        n5 = self.out5(torch.cat([self.down4(n4), p5], dim=1))
        return [p3, n4, n5]

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        boxes, logits = [], []
        for feat, head in zip(self.features(x), self.heads):
            box, cls = head(feat)
            n = box.shape[0]
            boxes.append((F.softplus(box) * head.stride).reshape(n, 4, -1))
            logits.append(cls.reshape(n, self.config.num_classes, -1))
        return torch.cat(boxes, dim=2).transpose(1, 2), torch.cat(logits, dim=2).transpose(1, 2)


def anchor_points(height: int, width: int, dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
    """Anchor centres ``[A, 2]`` (x, y in input pixels) and their strides ``[A]`` for an input size."""
    points, strides = [], []
    for s in STRIDES:
        h, w = height // s, width // s
        ys, xs = torch.meshgrid(torch.arange(h, dtype=dtype), torch.arange(w, dtype=dtype), indexing="ij")
        points.append(torch.stack([(xs.reshape(-1) + 0.5) * s, (ys.reshape(-1) + 0.5) * s], dim=1))
        strides.append(torch.full((h * w,), float(s), dtype=dtype))
    return torch.cat(points), torch.cat(strides)


def num_anchors(height: int = INPUT_SIZE, width: int = INPUT_SIZE) -> int:
    return sum((height // s) * (width // s) for s in STRIDES)


def decode_xyxy(ltrb: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    """``[..., A, 4]`` distances + ``[A, 2]`` anchor points -> ``[..., A, 4]`` x1y1x2y2."""
    return torch.cat([points - ltrb[..., :2], points + ltrb[..., 2:]], dim=-1)


class ExportWrapper(nn.Module):
    """The detector with YOLOv8-layout decoding: ``[N, 3, H, W]`` -> ``[N, 4 + nc, A]``;
    ``size`` is (width, height)."""

    def __init__(self, model: Detector, size: tuple[int, int] = (INPUT_SIZE, INPUT_SIZE)) -> None:
        super().__init__()
        self.model = model
        points, _ = anchor_points(size[1], size[0])
        self.register_buffer("points", points.t().contiguous(), persistent=False)  # [2, A]

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        ltrb, logits = self.model(images)
        ltrb = ltrb.transpose(1, 2)  # [N, 4, A]
        lt, rb = ltrb[:, :2], ltrb[:, 2:]
        centre = self.points + (rb - lt) * 0.5
        size = lt + rb
        return torch.cat([centre, size, torch.sigmoid(logits.transpose(1, 2))], dim=1)


def _write_onnx(model: Detector, path: Path, size: tuple[int, int]) -> None:
    import warnings

    wrapper = ExportWrapper(model, size).eval()
    path.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            wrapper, (torch.zeros(1, 3, size[1], size[0]),), str(path), dynamo=False, opset_version=17,
            input_names=["images"], output_names=["output0"],
            dynamic_axes={"images": {0: "N"}, "output0": {0: "N"}}, do_constant_folding=True,
        )


def _export_main() -> None:
    """``python -c ... weights.pt out.onnx width height``: the export in a clean process."""
    weights, out, size = sys.argv[1], Path(sys.argv[2]), (int(sys.argv[3]), int(sys.argv[4]))
    saved = torch.load(weights, weights_only=True)
    config = dict(saved["config"])
    config["widths"] = tuple(config["widths"])
    model = Detector(DetectorConfig(**config))
    model.load_state_dict(saved["state"])
    _write_onnx(model.eval(), out, size)


def export_onnx(model: Detector, path: Path, size: tuple[int, int] = (INPUT_SIZE, INPUT_SIZE),
                check: bool = True) -> float:
    """Write ``path`` (opset 17, dynamic batch, input ``size`` = (width, height)); returns the
    largest |ORT - torch| difference on a random batch of 2 when ``check`` (the graph also passes ``onnx.checker``).

    The TorchScript exporter runs in a child process: in a process that has initialised
    GStreamer (the appliance, its tests) PyTorch's JIT tracer aborts.
    """
    import onnx
    import onnxruntime as ort

    model = model.eval()
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        weights = Path(tmp) / "weights.pt"
        torch.save({"config": asdict(model.config), "state": model.state_dict()}, weights)
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
        done = subprocess.run(
            [sys.executable, "-c", "from tools.training.detector import _export_main; _export_main()",
             str(weights), str(path.resolve()), str(size[0]), str(size[1])],
            cwd=REPO, env=env, capture_output=True, text=True,
        )
        if done.returncode != 0:
            raise RuntimeError(f"ONNX export failed ({done.returncode}): {done.stderr.strip()[-2000:]}")
    if not check:
        return 0.0
    onnx.checker.check_model(onnx.load(str(path)), full_check=True)
    wrapper = ExportWrapper(model, size).eval()
    gen = torch.Generator().manual_seed(0)
    sample = torch.rand(2, 3, size[1], size[0], generator=gen)
    with torch.no_grad():
        expected = wrapper(sample).numpy()
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run(None, {"images": sample.numpy()})[0]
    if got.shape != expected.shape:
        raise RuntimeError(f"ONNX output {got.shape} differs from torch {expected.shape}")
    return float(np.abs(got - expected).max())


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
