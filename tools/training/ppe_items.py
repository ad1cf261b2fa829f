"""The PPE item classifier: which items does this person wear?

What it is
----------
The ``ppe`` detector finds the ``person``; this small CNN looks at one person's crop
and gives each item its own probability: ``helmet``, ``mask`` (over the nose),
``mask_improper`` (under the nose), ``gloves``, ``gown``, ``goggles``. The ppe rules
(``rules.ppe.item_check``) then need not give the detector's items to people by
where they lie, which is where crowds went wrong: a neighbour's helmet fits as well
as one's own, and 20×10-pixel goggles on a standing person are missed for seconds by
a full-frame detector at its stride.

The crop is the appliance's own (``appliance.analytics.wearing.person_crops``): a
window of 1:2 centred on the person's box, ``MARGIN`` of its height above and below,
read on a ``WIDTH`` x ``HEIGHT`` grid. Training crops come from clean-room scenes
(``tools.scenes.cleanroom.CleanRoomScene``: people walking, standing behind each
other, putting items on and taking them off) around each visible person's true box,
jittered as much as a detector's boxes are (``BOX_JITTER`` of the box's size per
edge). The labels are the scene's script of what each person wears; an item the
person wears whose box the truth leaves out (hidden by someone in front, the far
glove behind the body) is neither worn nor missing to the loss: no camera sees it.

Network: six 3x3 convolution blocks (batch norm, ReLU; 128x64 -> 64x32 -> 32x16 ->
16x8 -> 8x4), then one linear layer over the whole 8x4 map (where on the crop a thing
lies matters: a helmet at the top is this person's, one at the side a neighbour's)
and a sigmoid per item. The exported ONNX (opset 17, written with ``onnx.helper``
from the trained weights, batch norm folded) is read by
``appliance.inference.classify.AttributeParser`` (``parser: attributes``):

* input ``images`` ``[N, 3, HEIGHT, WIDTH]`` float32, RGB, 0..1;
* output ``output0`` ``[N, len(ITEMS)]`` float32: each item's probability.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from multiprocessing import Pool
from pathlib import Path

import numpy as np
import torch
from torch import nn

from appliance.analytics.wearing import array_sample, person_crops
from tools.training.anomaly import _Block, fixed_torch_state
from tools.training.onnx_graph import GraphBuilder
from tools.training.steps import ClassifierTrainConfig, ClassifierTrainResult, crop_outputs, train_classifier
from tools.training.tool_states import export_blocks, jitter

ITEMS: tuple[str, ...] = ("helmet", "mask", "mask_improper", "gloves", "gown", "goggles")
WIDTH, HEIGHT = 64, 128
MARGIN = 0.06
BOX_JITTER = 0.06
EVERY = 10  # one frame in this many of each scene (15 fps) gives crops
INPUT_NAME = "images"
OUTPUT_NAME = "output0"
HELD_OUT_SEED = 9000  # seeds from here on are for evaluation only


# -- data -------------------------------------------------------------------------

def labels_of(worn: dict[str, str | None], shown: set[str]) -> tuple[np.ndarray, np.ndarray]:
    """``[ITEMS]`` what one person wears (``worn``: the scene's script for the frame, item -> "worn",
    "improper" or None), and which of those the loss may count (``shown``: the labels of the
    person's item boxes in the truth; an item worn but not shown is hidden, neither worn nor missing)."""
    mask_state = worn.get("mask")
    on = {"helmet": worn.get("helmet") is not None, "mask": mask_state == "worn",
          "mask_improper": mask_state == "improper", "gloves": worn.get("gloves") is not None,
          "gown": worn.get("gown") is not None, "goggles": worn.get("goggles") is not None}
    target = np.array([on[item] for item in ITEMS], dtype=np.float32)
    known = np.ones(len(ITEMS), dtype=np.float32)
    for k, item in enumerate(ITEMS):
        if on[item] and item not in shown:
            known[k] = 0.0
    if mask_state is not None and not {"mask", "mask_improper"} & shown:
        known[ITEMS.index("mask")] = known[ITEMS.index("mask_improper")] = 0.0  # how it is worn is unseen
    return target, known


def scene_crops(seed: int, every: int = EVERY, jitter_amount: float = BOX_JITTER
                ) -> tuple[list[np.ndarray], list[np.ndarray], list[np.ndarray]]:
    """The crops (uint8 ``[HEIGHT, WIDTH, 3]`` RGB), targets and known flags of every person in sight in
    every ``every``-th frame of the 40 s clean-room scene ``seed``."""
    from tools.scenes.cleanroom import CleanRoomScene

    rng = np.random.default_rng([int(seed), 41])
    scene = CleanRoomScene(int(seed), 40.0)
    script = [scene.worn(k) for k in range(scene.people_count)]
    images: list[np.ndarray] = []
    targets: list[np.ndarray] = []
    known: list[np.ndarray] = []
    for frame, truth in scene.frames():
        if truth.index % every:
            continue
        people = [o for o in truth.objects if o.label == "person" and o.attributes.get("in_sight")]
        if not people:
            continue
        rgb = np.ascontiguousarray(frame[:, :, ::-1])
        boxes = np.array([jitter(o.box, rng, jitter_amount) for o in people])
        batch = person_crops(array_sample(rgb), (scene.width, scene.height), boxes, WIDTH, HEIGHT, MARGIN)
        for person, crop in zip(people, batch):
            shown = {o.label for o in truth.objects if o.attributes.get("person_track_id") == person.track_id}
            target, flags = labels_of(script[person.track_id][truth.index], shown)
            images.append(np.round(crop.transpose(1, 2, 0) * 255.0).astype(np.uint8))
            targets.append(target)
            known.append(flags)
    return images, targets, known


def crops(seeds: Iterable[int], every: int = EVERY, processes: int = 2,
          log: Callable[[str], None] | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Crops ``[N, HEIGHT, WIDTH, 3]`` uint8, targets ``[N, ITEMS]`` and known flags ``[N, ITEMS]`` of the
    scenes ``seeds`` (rendered in ``processes`` processes; the order is the seeds', so the same seeds
    give the same arrays)."""
    seeds = [int(s) for s in seeds]
    images: list[np.ndarray] = []
    targets: list[np.ndarray] = []
    known: list[np.ndarray] = []
    with Pool(max(processes, 1)) as pool:
        for n, (x, y, m) in enumerate(pool.imap(scene_crops, seeds)):
            images += x
            targets += y
            known += m
            if log is not None and (n + 1) % 50 == 0:
                log(f"rendered {n + 1}/{len(seeds)} scenes, {len(images)} crops")
    return np.stack(images), np.stack(targets), np.stack(known)


def augment(images: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """uint8 ``[B, H, W, 3]`` -> float32 ``[B, 3, H, W]`` 0..1: mirrored (people face either way),
    brightness, contrast and sensor noise."""
    x = images.astype(np.float32) / np.float32(255.0)
    flip = rng.random(len(x)) < 0.5
    x[flip] = x[flip, :, ::-1]
    shape = (len(x), 1, 1, 1)
    mean = x.mean(axis=(1, 2, 3), keepdims=True)
    x = (x - mean) * rng.uniform(0.8, 1.2, shape).astype(np.float32) + mean \
        + rng.uniform(-0.08, 0.08, shape).astype(np.float32)
    x += rng.standard_normal(x.shape, dtype=np.float32) * rng.uniform(0.0, 0.03, shape).astype(np.float32)
    return np.ascontiguousarray(np.clip(x, 0.0, 1.0).transpose(0, 3, 1, 2))


# -- the network ------------------------------------------------------------------

class ItemNet(nn.Module):
    def __init__(self, width: int = 16, items: int = len(ITEMS)) -> None:
        super().__init__()
        c = width
        self.blocks = nn.Sequential(
            _Block(3, c, 2),            # 64 x 32
            _Block(c, 2 * c, 2),        # 32 x 16
            _Block(2 * c, 2 * c),
            _Block(2 * c, 4 * c, 2),    # 16 x 8
            _Block(4 * c, 4 * c),
            _Block(4 * c, 6 * c, 2),    # 8 x 4
        )
        self.head = nn.Linear(6 * c * (HEIGHT // 16) * (WIDTH // 16), items)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.blocks(x).flatten(1))


# -- training ---------------------------------------------------------------------

@dataclass(frozen=True)
class TrainConfig(ClassifierTrainConfig):
    steps: int = 3000


TrainResult = ClassifierTrainResult


def train(images: np.ndarray, targets: np.ndarray, known: np.ndarray, config: TrainConfig = TrainConfig(),
          log: Callable[[str], None] | None = None) -> TrainResult:
    """Train on uint8 ``[N, HEIGHT, WIDTH, 3]`` crops: binary cross-entropy per item, counted only where
    known; same data + config = same weights."""
    if images.ndim != 4 or images.shape[1:] != (HEIGHT, WIDTH, 3) or len(images) < 2 \
            or targets.shape != (len(images), len(ITEMS)) or known.shape != targets.shape:
        raise ValueError(f"expected crops [N, {HEIGHT}, {WIDTH}, 3] with [N, {len(ITEMS)}] targets and known "
                         f"flags, got {list(images.shape)}, {list(targets.shape)}, {list(known.shape)}")
    with fixed_torch_state(config.threads, config.seed):
        rng = np.random.default_rng(config.seed)
        model = ItemNet(config.width)

        def batch_loss(pick: np.ndarray) -> torch.Tensor:
            logits = model(torch.from_numpy(augment(images[pick], rng)))
            loss = nn.functional.binary_cross_entropy_with_logits(
                logits, torch.from_numpy(targets[pick]), reduction="none")
            return (loss * torch.from_numpy(known[pick])).mean()

        return train_classifier(model, len(images), config, rng, batch_loss, log)


def probabilities(model: ItemNet, images: np.ndarray) -> np.ndarray:
    """Each item's probability ``[N, ITEMS]`` for uint8 ``[N, HEIGHT, WIDTH, 3]`` crops (no augmentation)."""
    return crop_outputs(model, images, torch.sigmoid, len(ITEMS))


# -- export -----------------------------------------------------------------------

def export_onnx(model: ItemNet, path: str | Path, metadata: dict[str, str] | None = None) -> Path:
    """Write ``model`` as ONNX (opset 17): ``images`` ``[N, 3, HEIGHT, WIDTH]`` -> ``output0``
    ``[N, ITEMS]`` probabilities; batch norm folded into the convolutions; ``metadata`` into
    ``metadata_props``."""
    g = GraphBuilder()
    x = export_blocks(g, model.blocks, INPUT_NAME)
    flat = g.node("Flatten", [x], "flat", axis=1)
    head = model.head
    logits = g.node("Gemm", [flat, g.const("head.weight", head.weight.detach().numpy().astype(np.float32)),
                             g.const("head.bias", head.bias.detach().numpy().astype(np.float32))], "logits", transB=1)
    g.node("Sigmoid", [logits], OUTPUT_NAME)
    return g.save(path, "ppe_items", "tools.training.ppe_items", [(INPUT_NAME, ["N", 3, HEIGHT, WIDTH])],
                  [(OUTPUT_NAME, ["N", len(ITEMS)])], metadata)


def item_errors(probabilities: np.ndarray, targets: np.ndarray, known: np.ndarray, threshold: float = 0.5
                ) -> dict[str, dict[str, float]]:
    """Per item, over the known crops: how many wore it and how many did not, the share of those
    wearing it said not to (missed) and of those not wearing it said to (false)."""
    said = probabilities >= threshold
    out = {}
    for k, item in enumerate(ITEMS):
        counted = known[:, k] > 0
        wearing, bare = counted & (targets[:, k] > 0), counted & (targets[:, k] == 0)
        out[item] = {"wearing": int(wearing.sum()), "not_wearing": int(bare.sum()),
                     "missed": float((wearing & ~said[:, k]).sum() / max(wearing.sum(), 1)),
                     "false": float((bare & said[:, k]).sum() / max(bare.sum(), 1))}
    return out
