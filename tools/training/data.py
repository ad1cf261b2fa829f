"""Training and evaluation data for the demo detectors, rendered from the generated scenes.

Frames are letterboxed to the model input exactly as the appliance does it
(``appliance.inference.letterbox.Letterbox.compute``: the image at ``pad_x, pad_y``,
black borders; pixels scaled with ``cv2.resize(INTER_AREA)``), converted to RGB and
kept in memory as uint8, with their boxes mapped into model-input pixels. A
``FrameSet`` is rendered once per run, so epochs cost only the augmentation.

Seeds: training uses seeds ``1..N`` of each scene; evaluation uses ``HELD_OUT_SEED``
(9000) and up, which training never touches.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field

import cv2
import numpy as np

from appliance.inference.letterbox import Letterbox

INPUT_SIZE = 320
#: model input (width, height) in pixels, multiples of 32
InputSize = tuple[int, int]
SQUARE_INPUT: InputSize = (INPUT_SIZE, INPUT_SIZE)
HELD_OUT_SEED = 9000

DEFECT_LABELS: tuple[str, ...] = ("vial", "blister", "tablet", "crack", "chip", "missing_cap", "stain", "tool")
#: the scenes' tool labels, one per state; the ``defects`` detector finds the tool and the
#: ``tool_states`` classifier tells its state from a crop
TOOL_STATES: dict[str, str] = {"tool_clean": "clean", "tool_dirty": "dirty", "tool_damaged": "damaged"}
AS_TOOL: dict[str, str] = {label: "tool" for label in TOOL_STATES}
PPE_LABELS: tuple[str, ...] = (
    "person", "helmet", "mask", "mask_improper", "gloves", "gown", "goggles", "fire", "smoke",
)
ANIMAL_LABELS: tuple[str, ...] = ("rodent", "rearing")
HAZARD_LABELS: tuple[str, ...] = ("fire", "smoke")
MODEL_LABELS: dict[str, tuple[str, ...]] = {
    "defects": DEFECT_LABELS, "ppe": PPE_LABELS, "animals": ANIMAL_LABELS, "hazards": HAZARD_LABELS,
}
MODELS: tuple[str, ...] = tuple(MODEL_LABELS)


@dataclass
class FrameSet:
    """Letterboxed RGB uint8 frames ``[M, H, W, 3]`` and per-frame targets ``[K, 5]``
    (class index, x1, y1, x2, y2 in model-input pixels); ``content`` is the part of the
    input the frame covers (``x0, y0, x1, y1``), the rest is black border."""

    images: np.ndarray
    targets: list[np.ndarray]
    content: tuple[int, int, int, int]
    labels: tuple[str, ...]

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def class_counts(self) -> dict[str, int]:
        counts = np.zeros(len(self.labels), dtype=np.int64)
        for t in self.targets:
            counts += np.bincount(t[:, 0].astype(np.int64), minlength=len(self.labels))
        return {name: int(c) for name, c in zip(self.labels, counts)}


def letterbox_frame(image_bgr: np.ndarray, letterbox: Letterbox) -> np.ndarray:
    """BGR ``[h, w, 3]`` uint8 -> letterboxed RGB uint8 ``[H, W, 3]`` (black borders)."""
    scaled = cv2.resize(image_bgr, (letterbox.scaled_w, letterbox.scaled_h), interpolation=cv2.INTER_AREA)
    out = np.zeros((letterbox.dst_h, letterbox.dst_w, 3), dtype=np.uint8)
    out[letterbox.pad_y:letterbox.pad_y + letterbox.scaled_h, letterbox.pad_x:letterbox.pad_x + letterbox.scaled_w] = (
        scaled[:, :, ::-1]
    )
    return out


def to_input_tensor(images_rgb: np.ndarray) -> np.ndarray:
    """``[N, H, W, 3]`` uint8 RGB -> ``[N, 3, H, W]`` float32 0..1 (the model input)."""
    return np.ascontiguousarray(images_rgb.transpose(0, 3, 1, 2), dtype=np.float32) * np.float32(1.0 / 255.0)


def content_box(letterbox: Letterbox) -> tuple[int, int, int, int]:
    x0, y0 = letterbox.pad_x, letterbox.pad_y
    return (x0, y0, x0 + letterbox.scaled_w, y0 + letterbox.scaled_h)


def map_targets(objects: Iterable[tuple[str, Sequence[float]]], labels: Sequence[str], letterbox: Letterbox,
                min_side: float = 1.5) -> np.ndarray:
    """``(label, x1y1x2y2 source box)`` -> ``[K, 5]`` (class, box in input pixels); labels
    not in ``labels`` are ignored, boxes smaller than ``min_side`` input pixels dropped."""
    index = {name: i for i, name in enumerate(labels)}
    rows = [(index[label], *box) for label, box in objects if label in index]
    if not rows:
        return np.zeros((0, 5), dtype=np.float32)
    arr = np.asarray(rows, dtype=np.float64)
    boxes = letterbox.to_input(arr[:, 1:])
    x0, y0, x1, y1 = content_box(letterbox)
    boxes[:, 0::2] = np.clip(boxes[:, 0::2], x0, x1)
    boxes[:, 1::2] = np.clip(boxes[:, 1::2], y0, y1)
    keep = ((boxes[:, 2] - boxes[:, 0]) >= min_side) & ((boxes[:, 3] - boxes[:, 1]) >= min_side)
    out = np.concatenate([arr[:, :1].astype(np.float32), boxes], axis=1)[keep]
    return np.ascontiguousarray(out, dtype=np.float32)


# -- scene sources ------------------------------------------------------------------

@dataclass(frozen=True)
class SceneSource:
    """How to sample one scene kind: ``make(seed)`` builds it; ``duration_s`` per seed;
    every ``every``-th frame (offset by the seed) is kept; frames without objects are
    kept with probability ``empty_keep``. With ``onsets``, only the frames within
    ``onset_s`` seconds after one of those timeline events starts are kept: the first
    moments of a fire or smoke, when it is small and faint, are rare in whole scenes."""

    name: str
    make: Callable[[int, float], object]
    duration_s: float
    every: int
    empty_keep: float = 1.0
    onsets: tuple[str, ...] = ()
    onset_s: float = 0.0


@dataclass(frozen=True)
class Recipe:
    """The data of one model: its scene sources, with the share of training seeds each gets,
    and the model's names for scene labels it does not tell apart."""

    labels: tuple[str, ...]
    sources: tuple[SceneSource, ...]
    shares: tuple[float, ...] = field(default=())
    aliases: Mapping[str, str] = field(default_factory=dict)  # a scene label -> the model's label


def _production(seed: int, duration_s: float) -> object:
    from tools.scenes.production import ProductionLineScene

    return ProductionLineScene(seed, duration_s=duration_s)


def _production_defective(seed: int, duration_s: float) -> object:
    """More defective parts than the plant default (0.25), so the rarer defects get examples."""
    from tools.scenes.production import ProductionLineScene

    return ProductionLineScene(seed, duration_s=duration_s, defect_rate=0.6)


def _tools(seed: int, duration_s: float) -> object:
    from tools.scenes.production import ToolStationScene

    return ToolStationScene(seed, duration_s=duration_s)


def _cleanroom(seed: int, duration_s: float) -> object:
    from tools.scenes.cleanroom import CleanRoomScene

    return CleanRoomScene(seed, duration_s=duration_s)


#: the timeline events of the clean room's hazards, and the detector label that shows each
HAZARD_ONSETS: dict[str, str] = {"fire.detected": "fire", "smoke.detected": "smoke"}


def _cleanroom_hazards(seed: int, duration_s: float) -> object:
    """A clean room with smoke, fire and its smoke, or fire alone (one scene in four: the air above a
    flame is no smoke)."""
    from tools.scenes.cleanroom import CleanRoomScene

    return CleanRoomScene(seed, duration_s=duration_s, fire=bool(seed % 2), smoke=seed % 4 != 3)


def _cage(seed: int, duration_s: float) -> object:
    from tools.scenes.cage import CageScene

    return CageScene(seed, duration_s=duration_s)


RECIPES: dict[str, Recipe] = {
    # tools: many scenes, few frames of each presentation (tools of many shapes and angles);
    # the detector only says "tool", the tool_states classifier tells their state
    "defects": Recipe(DEFECT_LABELS, (
        SceneSource("production", _production_defective, 6.0, 4),
        SceneSource("tools", _tools, 24.0, 24, empty_keep=0.1),
    ), (0.6, 0.4), AS_TOOL),
    "ppe": Recipe(PPE_LABELS, (SceneSource("cleanroom", _cleanroom, 16.0, 10, empty_keep=0.2),), (1.0,)),
    "animals": Recipe(ANIMAL_LABELS, (SceneSource("cage", _cage, 12.0, 8, empty_keep=0.2),), (1.0,)),
    # fire and smoke: the clean room's scenes (people, and fire or smoke in some: what is not a hazard),
    # and the first 3 s of each fire and smoke, one frame in 3, from scenes of their own
    "hazards": Recipe(HAZARD_LABELS, (
        SceneSource("cleanroom", _cleanroom, 16.0, 10, empty_keep=0.2),
        SceneSource("hazard onsets", _cleanroom_hazards, 14.0, 3, onsets=tuple(HAZARD_ONSETS), onset_s=3.0),
    ), (45.0, 25.0)),
}


def scene_frames(source: SceneSource, seed: int, aliases: Mapping[str, str] | None = None
                 ) -> Iterator[tuple[np.ndarray, list[tuple[str, tuple[float, ...]]]]]:
    """The kept frames of one scene: (BGR source image, [(label, box)]), labels renamed by ``aliases``."""
    aliases = aliases or {}
    scene = source.make(seed, source.duration_s)
    rng = np.random.default_rng([seed, 77])
    offset = seed % source.every
    windows = [(event.start_s, event.start_s + source.onset_s) for event in scene.timeline()  # type: ignore[attr-defined]
               if event.kind in source.onsets] if source.onsets else []
    for index, (image, truth) in enumerate(scene.frames()):  # type: ignore[attr-defined]
        if index % source.every != offset:
            continue
        if source.onsets and not any(a <= truth.time_s <= b for a, b in windows):
            continue
        objects = [(aliases.get(o.label, o.label), tuple(o.box)) for o in truth.objects]
        if not objects and rng.random() >= source.empty_keep:
            continue
        yield image, objects


def render(
    model: str,
    seeds: Sequence[int],
    size: InputSize = SQUARE_INPUT,
    log: Callable[[str], None] | None = None,
    recipe: Recipe | None = None,
) -> FrameSet:
    """Render the frames of ``model``'s scenes for ``seeds`` (split between sources by
    their shares, in order) into one ``FrameSet`` letterboxed to ``size`` (width, height)."""
    recipe = recipe or RECIPES[model]
    shares = recipe.shares or tuple(1.0 / len(recipe.sources) for _ in recipe.sources)
    bounds = np.round(np.cumsum((0.0,) + tuple(shares)) / sum(shares) * len(seeds)).astype(int)
    images: list[np.ndarray] = []
    targets: list[np.ndarray] = []
    letterbox: Letterbox | None = None
    for i, source in enumerate(recipe.sources):
        for seed in seeds[bounds[i]:bounds[i + 1]]:
            for image, objects in scene_frames(source, int(seed), recipe.aliases):
                if letterbox is None or (letterbox.src_w, letterbox.src_h) != (image.shape[1], image.shape[0]):
                    letterbox = Letterbox.compute(image.shape[1], image.shape[0], *size)
                images.append(letterbox_frame(image, letterbox))
                targets.append(map_targets(objects, recipe.labels, letterbox))
        if log:
            log(f"rendered {source.name}: {len(images)} frames so far")
    if letterbox is None:
        raise RuntimeError(f"{model}: the scenes gave no frames")
    return FrameSet(np.stack(images), targets, content_box(letterbox), recipe.labels)


#: held-out evaluation uses the scenes' own defaults (the plant's defect rate, longer scenes)
EVAL_RECIPES: dict[str, Recipe] = {
    "defects": Recipe(DEFECT_LABELS, (
        SceneSource("production", _production, 20.0, 15),
        SceneSource("tools", _tools, 40.0, 10, empty_keep=0.1),
    ), (0.5, 0.5), AS_TOOL),
    "ppe": Recipe(PPE_LABELS, (SceneSource("cleanroom", _cleanroom, 40.0, 15, empty_keep=0.2),), (1.0,)),
    "animals": Recipe(ANIMAL_LABELS, (SceneSource("cage", _cage, 40.0, 15, empty_keep=0.2),), (1.0,)),
    "hazards": Recipe(HAZARD_LABELS, (SceneSource("cleanroom", _cleanroom, 40.0, 15, empty_keep=0.2),), (1.0,)),
}


#: the first seconds of each fire and smoke, which whole scenes rarely sample: every frame of held-out
#: hazard scenes from the start of each (``tools.training.evaluate.onset_delays``), and the label found
_HAZARD_ONSET_SCENES = SceneSource("hazard onsets", _cleanroom_hazards, 14.0, 1, onsets=tuple(HAZARD_ONSETS),
                                   onset_s=3.0)
EVAL_ONSETS: dict[str, tuple[SceneSource, dict[str, str]]] = {
    model: (_HAZARD_ONSET_SCENES, HAZARD_ONSETS) for model in ("ppe", "hazards")
}


def held_out_frames(model: str, count: int, start: int = HELD_OUT_SEED, recipe: Recipe | None = None
                    ) -> Iterator[tuple[int, np.ndarray, list[tuple[str, tuple[float, ...]]]]]:
    """(seed, BGR source image, truth) of held-out scenes ``start .. start+count-1`` (source frames,
    not letterboxed: the evaluation letterboxes them like the appliance)."""
    recipe = recipe or EVAL_RECIPES[model]
    shares = recipe.shares or tuple(1.0 / len(recipe.sources) for _ in recipe.sources)
    seeds = list(range(start, start + count))
    bounds = np.round(np.cumsum((0.0,) + tuple(shares)) / sum(shares) * len(seeds)).astype(int)
    for i, source in enumerate(recipe.sources):
        for seed in seeds[bounds[i]:bounds[i + 1]]:
            for image, objects in scene_frames(source, seed, recipe.aliases):
                yield seed, image, objects


# -- augmentation ---------------------------------------------------------------------

@dataclass(frozen=True)
class Augment:
    """Photometric augmentation of the content area (the black borders stay black) and
    horizontal flips. Probabilities per image."""

    flip: float = 0.5
    brightness: float = 0.12  # +- added, 0..1 scale
    contrast: float = 0.25  # x (1 +- contrast)
    noise: float = 0.5  # probability of Gaussian noise with sigma up to noise_sigma
    noise_sigma: float = 0.03
    blur: float = 0.15
    blocky: float = 0.15  # JPEG re-encode at quality 20..60: H.264-like blockiness


def augment_batch(
    images: np.ndarray, targets: list[np.ndarray],
    content: tuple[int, int, int, int] | Sequence[tuple[int, int, int, int]], rng: np.random.Generator,
    aug: Augment,
) -> tuple[np.ndarray, list[np.ndarray]]:
    """uint8 ``[B, H, W, 3]`` -> float32 ``[B, 3, H, W]`` 0..1 and the (flipped) targets; ``content``
    (one rectangle, or one per image) is the frame's part of each image, the rest stays black."""
    contents = [content] * images.shape[0] if isinstance(content[0], int) else list(content)  # type: ignore[list-item]
    out = np.zeros((images.shape[0], images.shape[1], images.shape[2], 3), dtype=np.float32)
    new_targets: list[np.ndarray] = []
    for i in range(images.shape[0]):
        x0, y0, x1, y1 = contents[i]  # type: ignore[misc]
        if x1 <= x0 or y1 <= y0:
            new_targets.append(targets[i].copy())
            continue
        crop = images[i, y0:y1, x0:x1]
        if rng.random() < aug.blocky:
            quality = int(rng.integers(20, 61))
            ok, buf = cv2.imencode(".jpg", crop, [cv2.IMWRITE_JPEG_QUALITY, quality])
            if ok:
                crop = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)
        if rng.random() < aug.blur:
            crop = cv2.GaussianBlur(crop, (3, 3), float(rng.uniform(0.5, 1.2)))
        pix = crop.astype(np.float32) * np.float32(1.0 / 255.0)
        contrast = 1.0 + rng.uniform(-aug.contrast, aug.contrast)
        bright = rng.uniform(-aug.brightness, aug.brightness)
        mean = float(pix.mean())
        pix = (pix - mean) * np.float32(contrast) + np.float32(mean + bright)
        if rng.random() < aug.noise:
            sigma = rng.uniform(0.0, aug.noise_sigma)
            pix += rng.standard_normal(pix.shape, dtype=np.float32) * np.float32(sigma)
        np.clip(pix, 0.0, 1.0, out=pix)
        t = targets[i].copy()
        if rng.random() < aug.flip:
            pix = pix[:, ::-1]
            t[:, [1, 3]] = (x0 + x1) - t[:, [3, 1]]
        out[i, y0:y1, x0:x1] = pix
        new_targets.append(t)
    return np.ascontiguousarray(out.transpose(0, 3, 1, 2)), new_targets
