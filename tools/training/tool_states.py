"""The tool-state classifier: is the tool at the check station clean, dirty or damaged?

What it is
----------
The ``defects`` detector finds a ``tool``; this small CNN looks at the tool's crop
and names its state. Two stages, because the states differ in details a
full-frame detector sees poorly at its stride (a 5-pixel notch, a bent or broken
tip, residue blotches): with the states as detector classes the tool boxes of
held-out scenes had a precision of 0.44-0.55 for ``clean`` and ``damaged``.

The crop is the appliance's own (``appliance.analytics.inspection.crop_input``):
a square around the tool's box (``MARGIN`` of its longer side on each side, at
least ``SIZE`` pixels), everything outside the box painted out, averaged down to
``SIZE`` x ``SIZE``. Training crops come from check-station frames
(``tools.scenes.production.sample_tool_views``: the scene's mats, lighting and
sensor noise) around the true box, jittered as much as a detector's boxes are
(``BOX_JITTER`` of the box's size per edge), so the model does not rely on a
tight box.

Network: six 3x3 convolution blocks (batch norm, ReLU; 96 -> 48 -> 24 -> 12 -> 6),
global average pooling, a linear layer. The exported ONNX (opset 17, written with
``onnx.helper`` from the trained weights, batch norm folded, no exporter involved)
has Ultralytics' ``-cls`` layout, which ``appliance.inference.classify`` parses:

* input ``images`` ``[N, 3, 96, 96]`` float32, RGB, 0..1;
* output ``output0`` ``[N, 3]`` float32: the probabilities of ``STATES``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from appliance.analytics.inspection import crop_input
from tools.training.anomaly import _Block, _folded, fixed_torch_state
from tools.training.onnx_graph import GraphBuilder
from tools.training.steps import ClassifierTrainConfig, ClassifierTrainResult, crop_outputs, train_classifier

STATES: tuple[str, ...] = ("clean", "dirty", "damaged")
SIZE = 96
MARGIN = 0.1
BOX_JITTER = 0.06
INPUT_NAME = "images"
OUTPUT_NAME = "output0"
HELD_OUT_SEED = 9000  # seeds from here on are for evaluation only


# -- data -------------------------------------------------------------------------

def jitter(box: Sequence[float], rng: np.random.Generator, amount: float = BOX_JITTER) -> tuple[float, ...]:
    """``box`` with each edge moved by up to ``amount`` of the box's size (uniform)."""
    x1, y1, x2, y2 = box
    w, h = x2 - x1, y2 - y1
    d = rng.uniform(-amount, amount, 4) * np.array([w, h, w, h])
    return (x1 + d[0], y1 + d[1], max(x2 + d[2], x1 + d[0] + 4), max(y2 + d[3], y1 + d[1] + 4))


def crops(seeds: Sequence[int], per_seed: int, views: int = 1, jitter_amount: float = BOX_JITTER,
          log: Callable[[str], None] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Crops (uint8 ``[N, SIZE, SIZE, 3]`` RGB) and state indices ``[N]`` of ``per_seed``
    tools of each seed, ``views`` differently jittered boxes per tool."""
    from tools.scenes.production import sample_tool_views

    images: list[np.ndarray] = []
    states: list[int] = []
    for n, seed in enumerate(seeds):
        rng = np.random.default_rng([int(seed), 31])
        for frame, box, state in sample_tool_views(int(seed), per_seed):
            rgb = np.ascontiguousarray(frame[:, :, ::-1])
            for _ in range(views):
                batch, _ = crop_input(rgb, jitter(box, rng, jitter_amount), MARGIN, SIZE)
                images.append(np.round(batch[0].transpose(1, 2, 0) * 255.0).astype(np.uint8))
                states.append(STATES.index(state))
        if log is not None and (n + 1) % 100 == 0:
            log(f"rendered {n + 1}/{len(seeds)} seeds, {len(images)} crops")
    return np.stack(images), np.asarray(states, dtype=np.int64)


def augment(images: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """uint8 ``[B, S, S, 3]`` -> float32 ``[B, 3, S, S]`` 0..1: a quarter turn and flip (tools lie
    at any angle), brightness, contrast and sensor noise."""
    out = np.empty((images.shape[0], 3, images.shape[1], images.shape[2]), dtype=np.float32)
    for i, image in enumerate(images):
        x = np.rot90(image, int(rng.integers(4))).astype(np.float32) / 255.0
        if rng.random() < 0.5:
            x = x[:, ::-1]
        mean = x.mean()
        x = (x - mean) * rng.uniform(0.8, 1.2) + mean + rng.uniform(-0.08, 0.08)
        if rng.random() < 0.5:
            x = x + rng.standard_normal(x.shape).astype(np.float32) * rng.uniform(0.0, 0.02)
        out[i] = np.clip(x, 0.0, 1.0).transpose(2, 0, 1)
    return out


# -- the network ------------------------------------------------------------------

class StateNet(nn.Module):
    def __init__(self, width: int = 16, classes: int = len(STATES)) -> None:
        super().__init__()
        c = width
        self.blocks = nn.Sequential(
            _Block(3, c, 2),            # 48
            _Block(c, 2 * c, 2),        # 24
            _Block(2 * c, 2 * c),
            _Block(2 * c, 4 * c, 2),    # 12
            _Block(4 * c, 4 * c),
            _Block(4 * c, 6 * c, 2),    # 6
        )
        self.head = nn.Linear(6 * c, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.blocks(x).mean(dim=(2, 3)))


# -- training ---------------------------------------------------------------------

@dataclass(frozen=True)
class TrainConfig(ClassifierTrainConfig):
    steps: int = 2500


TrainResult = ClassifierTrainResult


def train(images: np.ndarray, states: np.ndarray, config: TrainConfig = TrainConfig(),
          log: Callable[[str], None] | None = None) -> TrainResult:
    """Train on uint8 ``[N, SIZE, SIZE, 3]`` crops; same data + config = same weights. The
    classes are weighted inversely to their frequency (half the tools are clean)."""
    if images.ndim != 4 or images.shape[1:] != (SIZE, SIZE, 3) or len(images) != len(states) or len(images) < 2:
        raise ValueError(f"expected crops [N, {SIZE}, {SIZE}, 3] with a state each, got {list(images.shape)}")
    with fixed_torch_state(config.threads, config.seed):
        rng = np.random.default_rng(config.seed)
        model = StateNet(config.width)
        counts = np.bincount(states, minlength=len(STATES)).astype(np.float64)
        weights = torch.tensor(counts.sum() / np.maximum(counts, 1.0) / len(STATES), dtype=torch.float32)
        loss_fn = nn.CrossEntropyLoss(weight=weights, label_smoothing=0.05)

        def batch_loss(pick: np.ndarray) -> torch.Tensor:
            return loss_fn(model(torch.from_numpy(augment(images[pick], rng))), torch.from_numpy(states[pick]))

        return train_classifier(model, len(images), config, rng, batch_loss, log)


def probabilities(model: StateNet, images: np.ndarray) -> np.ndarray:
    """Softmax ``[N, len(STATES)]`` of uint8 ``[N, SIZE, SIZE, 3]`` crops (no augmentation)."""
    return crop_outputs(model, images, lambda logits: torch.softmax(logits, dim=1), len(STATES))


# -- export -----------------------------------------------------------------------

def export_blocks(g: GraphBuilder, blocks: nn.Sequential, x: str) -> str:
    """The 3x3 convolution blocks (batch norm folded in, ReLU) as ONNX nodes on ``x``; their output."""
    for k, block in enumerate(blocks):
        weight, bias = _folded(block)
        stride = int(block[0].stride[0])
        conv = g.node("Conv", [x, g.const(f"b{k}.weight", weight), g.const(f"b{k}.bias", bias)], f"b{k}.conv",
                      kernel_shape=[3, 3], strides=[stride, stride], pads=[1, 1, 1, 1])
        x = g.node("Relu", [conv], f"b{k}")
    return x


def export_onnx(model: StateNet, path: str | Path, metadata: dict[str, str] | None = None) -> Path:
    """Write ``model`` as ONNX (opset 17): ``images`` ``[N, 3, SIZE, SIZE]`` -> ``output0`` ``[N, 3]``
    probabilities; batch norm folded into the convolutions; ``metadata`` into ``metadata_props``."""
    g = GraphBuilder()
    x = export_blocks(g, model.blocks, INPUT_NAME)
    pooled = g.node("Flatten", [g.node("GlobalAveragePool", [x], "pool")], "flat", axis=1)
    head = model.head
    logits = g.node("Gemm", [pooled, g.const("head.weight", head.weight.detach().numpy().astype(np.float32)),
                             g.const("head.bias", head.bias.detach().numpy().astype(np.float32))], "logits", transB=1)
    g.node("Softmax", [logits], OUTPUT_NAME, axis=1)
    return g.save(path, "tool_states", "tools.training.tool_states", [(INPUT_NAME, ["N", 3, SIZE, SIZE])],
                  [(OUTPUT_NAME, ["N", len(STATES)])], metadata)
