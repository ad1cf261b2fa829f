"""Production-line scenes: parts on a conveyor with defects, and a tool check station.

``ProductionLineScene``
    A conveyor belt crosses the frame from left to right. Vials, blister packs and
    tablets ride it at a speed that depends on the seed (and drifts over time);
    about ``defect_rate`` of them carry one defect (``crack``, ``chip``, ``stain``,
    ``missing_cap``), each labelled with its own box and track id. At the inspection
    line (60 % of the width) the timeline records ``defect.part`` for a defective part
    and ``part.passed`` for a good one, at the moment its centre crosses the line.

``ToolStationScene``
    A surgical mat seen from above. Scalpels, forceps and spatulas are laid down one
    at a time for 3-6 s and taken away again; each is ``tool_clean``, ``tool_dirty``
    or ``tool_damaged`` and the timeline has one ``tool.verified`` per presentation.

``sample_patches``
    Centred crops of single parts and tools on their background (good or defective)
    for training and testing an anomaly model.

Everything is drawn with numpy and OpenCV and depends on the seed only: the same
seed gives byte-identical frames. Boxes are ``(x1, y1, x2, y2)`` in pixels with
``x2``/``y2`` exclusive, clipped to the frame; an object more than half outside the
frame is left out (a defect region also when its clipped box is under 10 px).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field

import cv2
import numpy as np

from tools.scenes.common import Box, FrameTruth, TimelineEvent, TruthObject

__all__ = [
    "DEFECT_LABELS",
    "PART_KINDS",
    "PART_DEFECTS",
    "TOOL_KINDS",
    "TOOL_STATES",
    "ProductionLineScene",
    "ToolStationScene",
    "sample_patches",
    "sample_tool_views",
]

DEFECT_LABELS: tuple[str, ...] = (
    "vial", "blister", "tablet", "crack", "chip", "missing_cap", "stain", "tool_clean", "tool_dirty", "tool_damaged",
)
PART_KINDS: tuple[str, ...] = ("vial", "blister", "tablet")
PART_DEFECTS: dict[str, tuple[str, ...]] = {
    "vial": ("crack", "chip", "stain", "missing_cap"),
    "blister": ("crack", "stain"),
    "tablet": ("chip", "stain"),
}
TOOL_KINDS: tuple[str, ...] = ("scalpel", "forceps", "spatula")
TOOL_STATES: tuple[str, ...] = ("clean", "dirty", "damaged")

WIDTH, HEIGHT, FPS = 640, 360, 15
BELT_Y0, BELT_Y1 = 92, 272  # rows of the conveyor belt
BELT_PERIOD = 1280  # the belt texture repeats every this many pixels
INSPECTION_FRACTION = 0.6
MIN_DEFECT_PX = 12  # a defect region is drawn at least this big
MIN_VISIBLE_DEFECT_PX = 10  # and reported only while its clipped box is at least this big
SPRITE_MARGIN = 12  # room around a sprite for its shadow and edge notches
TOOL_ZONE = (150, 62, 490, 298)  # where tools are laid down

_CAP_COLOURS = ((40, 40, 200), (185, 95, 30), (60, 165, 50), (40, 200, 235), (150, 60, 140), (30, 130, 240))
_TABLET_COLOURS = ((232, 234, 236), (190, 222, 238), (195, 170, 238), (238, 208, 172), (90, 212, 242),
                   (70, 150, 238), (172, 228, 188))
_STAIN_COLOURS = ((30, 70, 125), (25, 50, 90), (40, 120, 170), (50, 60, 60), (40, 95, 80))
_SMUDGE_COLOURS = ((35, 65, 110), (28, 48, 85), (75, 78, 82), (50, 80, 105))
_BELT_COLOURS = ((62, 62, 64), (58, 78, 60), (78, 66, 56), (48, 50, 54))
_MAT_COLOURS = ((112, 128, 62), (150, 112, 52), (98, 114, 88))


# -- small helpers ------------------------------------------------------------

@dataclass
class _Sprite:
    """A pre-multiplied RGBA picture of one object, with its shadow."""

    add: np.ndarray  # h x w x 3 float32: colour times alpha
    keep: np.ndarray  # h x w x 1 float32: what is left of the background
    box: Box  # the object's box in sprite pixels
    defects: list[tuple[str, Box]] = field(default_factory=list)

    @property
    def centre(self) -> tuple[float, float]:
        return (self.box[0] + self.box[2]) / 2.0, (self.box[1] + self.box[3]) / 2.0

    @property
    def extent(self) -> Box:
        """The union of the object box and its defect boxes."""
        boxes = [self.box] + [b for _, b in self.defects]
        return (min(b[0] for b in boxes), min(b[1] for b in boxes), max(b[2] for b in boxes), max(b[3] for b in boxes))


def _finish(colour: np.ndarray, alpha: np.ndarray, box: Box, defects: list[tuple[str, Box]],
            shadow: tuple[int, int] = (3, 4), strength: float = 0.5) -> _Sprite:
    alpha = np.clip(alpha, 0.0, 1.0).astype(np.float32)
    h, w = alpha.shape
    dx, dy = shadow
    cast = np.zeros_like(alpha)
    cast[dy:, dx:] = alpha[:h - dy, :w - dx]
    cast = cv2.GaussianBlur(cast, (0, 0), 2.2)
    keep = ((1.0 - strength * cast) * (1.0 - alpha))[..., None].astype(np.float32)
    add = (colour.astype(np.float32) * alpha[..., None]).astype(np.float32)
    return _Sprite(add=add, keep=keep, box=box, defects=defects)


def _paste(frame: np.ndarray, sprite: _Sprite, ox: int, oy: int) -> None:
    """Composites ``sprite`` onto the float32 ``frame`` with its top-left corner at (ox, oy)."""
    fh, fw = frame.shape[:2]
    sh, sw = sprite.keep.shape[:2]
    x0, y0, x1, y1 = max(ox, 0), max(oy, 0), min(ox + sw, fw), min(oy + sh, fh)
    if x0 >= x1 or y0 >= y1:
        return
    sx, sy = x0 - ox, y0 - oy
    region = frame[y0:y1, x0:x1]
    region *= sprite.keep[sy:sy + y1 - y0, sx:sx + x1 - x0]
    region += sprite.add[sy:sy + y1 - y0, sx:sx + x1 - x0]


def _place(box: Box, ox: float, oy: float, width: int, height: int, min_side: float = 0.0) -> Box | None:
    """``box`` moved by (ox, oy) and clipped to the frame; None when more than half of
    it is outside or the clipped box is thinner than ``min_side``."""
    x1, y1, x2, y2 = box[0] + ox, box[1] + oy, box[2] + ox, box[3] + oy
    cx1, cy1, cx2, cy2 = max(x1, 0.0), max(y1, 0.0), min(x2, float(width)), min(y2, float(height))
    if cx2 <= cx1 or cy2 <= cy1:
        return None
    if (cx2 - cx1) * (cy2 - cy1) < 0.5 * (x2 - x1) * (y2 - y1):
        return None
    if min(cx2 - cx1, cy2 - cy1) < min_side:
        return None
    return (float(cx1), float(cy1), float(cx2), float(cy2))


def _mask_box(mask: np.ndarray, threshold: float = 0.5) -> Box:
    ys, xs = np.nonzero(mask > threshold)
    if not len(xs):
        return (0.0, 0.0, 0.0, 0.0)
    return (float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1))


def _grow(box: Box, side: float, limit: tuple[int, int]) -> Box:
    """``box`` widened around its centre to at least ``side`` in each dimension, kept inside ``limit`` (w, h)."""
    x1, y1, x2, y2 = box
    if x2 - x1 < side:
        c = (x1 + x2) / 2.0
        x1, x2 = c - side / 2.0, c + side / 2.0
    if y2 - y1 < side:
        c = (y1 + y2) / 2.0
        y1, y2 = c - side / 2.0, c + side / 2.0
    w, h = limit
    shift_x = max(0.0, -x1) - max(0.0, x2 - w)
    shift_y = max(0.0, -y1) - max(0.0, y2 - h)
    return (float(round(x1 + shift_x)), float(round(y1 + shift_y)), float(round(x2 + shift_x)),
            float(round(y2 + shift_y)))


def _between(rng: np.random.Generator, lo: float, hi: float) -> float:
    """A uniform draw from [lo, hi]; the midpoint when the range is empty."""
    return float(rng.uniform(lo, hi)) if hi > lo else (lo + hi) / 2.0


def _blend(colour: np.ndarray, mask: np.ndarray, target: tuple[float, ...] | np.ndarray, strength: float) -> None:
    """In place: ``colour`` moves towards ``target`` by ``strength * mask``."""
    m = (mask * strength)[..., None]
    colour *= 1.0 - m
    colour += m * np.asarray(target, np.float32)


def _smooth_noise(rng: np.random.Generator, h: int, w: int, sigma: float, wrap_x: bool = False) -> np.ndarray:
    """Gaussian noise blurred with ``sigma``, unit standard deviation; tileable along x with ``wrap_x``."""
    noise = rng.standard_normal((h, w), dtype=np.float32)
    pad = int(3 * sigma) + 1
    if wrap_x:
        noise = np.pad(noise, ((0, 0), (pad, pad)), mode="wrap")
    noise = cv2.GaussianBlur(noise, (0, 0), sigma, borderType=cv2.BORDER_REFLECT)
    if wrap_x:
        noise = noise[:, pad:pad + w]
    return noise / max(float(noise.std()), 1e-6)


def _blotch(rng: np.random.Generator, shape: tuple[int, int], cx: float, cy: float, size: float) -> np.ndarray:
    """An irregular blotch about ``size`` across centred on (cx, cy): float mask 0..1."""
    mask = np.zeros(shape, np.uint8)
    for _ in range(int(rng.integers(3, 6))):
        ox, oy = rng.uniform(-size / 5, size / 5, 2)
        ax, ay = rng.uniform(size / 5, size / 2.6, 2)
        cv2.ellipse(mask, (int(round(cx + ox)), int(round(cy + oy))), (max(2, int(round(ax))), max(2, int(round(ay)))),
                    float(rng.uniform(0, 180)), 0, 360, 255, -1, cv2.LINE_AA)
    return cv2.GaussianBlur(mask, (3, 3), 0).astype(np.float32) / 255.0


def _jagged(rng: np.random.Generator, cx: float, cy: float, length: float, region: Box) -> np.ndarray:
    """A jagged crack path about ``length`` long through (cx, cy), kept inside ``region``."""
    base = math.radians(rng.uniform(35, 60)) * (1 if rng.random() < 0.5 else -1)
    count = int(rng.integers(4, 7))
    step = length / count
    x, y = cx - math.cos(base) * length / 2, cy - math.sin(base) * length / 2
    points = [(x, y)]
    for _ in range(count):
        a = base + math.radians(rng.uniform(-40, 40))
        x, y = x + step * math.cos(a), y + step * math.sin(a)
        points.append((x, y))
    pts = np.array(points, np.float32)
    pts[:, 0] = np.clip(pts[:, 0], region[0], region[2])
    pts[:, 1] = np.clip(pts[:, 1], region[1], region[3])
    return pts


def _draw_crack(rng: np.random.Generator, colour: np.ndarray, alpha: np.ndarray, region: Box, length: float,
                light: float = 240.0) -> Box:
    """Draws a dark jagged crack (with a thin bright edge) inside ``region``; returns its box."""
    h, w = alpha.shape
    cx = rng.uniform(region[0] + length * 0.25, region[2] - length * 0.25) if region[2] - region[0] > length * 0.5 \
        else (region[0] + region[2]) / 2
    cy = rng.uniform(region[1] + length * 0.25, region[3] - length * 0.25) if region[3] - region[1] > length * 0.5 \
        else (region[1] + region[3]) / 2
    pts = _jagged(rng, cx, cy, length, region)
    ipts = [np.round(pts * 8).astype(np.int32)]
    shine = np.zeros((h, w), np.uint8)
    cv2.polylines(shine, [np.round((pts + (1.2, 1.2)) * 8).astype(np.int32)], False, 255, 1, cv2.LINE_AA, 3)
    dark = np.zeros((h, w), np.uint8)
    cv2.polylines(dark, ipts, False, 255, 2, cv2.LINE_AA, 3)
    branch = pts[len(pts) // 2]
    a = rng.uniform(0, 2 * math.pi)
    tip = np.clip(branch + (math.cos(a) * length * 0.3, math.sin(a) * length * 0.3), region[:2], region[2:])
    cv2.line(dark, tuple(np.round(branch * 8).astype(int)), tuple(np.round(tip * 8).astype(int)), 255, 1,
             cv2.LINE_AA, 3)
    s = shine.astype(np.float32) / 255.0 * (alpha > 0.05)
    d = dark.astype(np.float32) / 255.0
    _blend(colour, s, (light, light, light), 0.7)
    _blend(colour, d, (22, 22, 26), 1.0)
    alpha[:] = np.maximum(alpha, d)
    box = _mask_box(np.maximum(d, 0.0), 0.3)
    return _grow(box, MIN_DEFECT_PX, (w, h))


def _draw_notch(colour: np.ndarray, alpha: np.ndarray, px: float, py: float, r: float, factor: float = 0.5,
                within: Box | None = None) -> Box:
    """Bites a disc of radius ``r`` out of the object at (px, py) and darkens the broken edge; returns its box
    (the disc's box, cut to ``within``, the object's box, where given)."""
    h, w = alpha.shape
    bite = np.zeros((h, w), np.uint8)
    centre = (int(round(px * 8)), int(round(py * 8)))
    cv2.circle(bite, centre, int(round(r * 8)), 255, -1, cv2.LINE_AA, 3)
    edge = np.zeros((h, w), np.uint8)
    cv2.circle(edge, centre, int(round((r + 1.5) * 8)), 255, 3, cv2.LINE_AA, 3)
    b = bite.astype(np.float32) / 255.0
    e = edge.astype(np.float32) / 255.0 * (alpha > 0.3)
    colour *= (1.0 - (1.0 - factor) * e)[..., None]
    alpha[:] = np.maximum(alpha, 0.9 * e) * (1.0 - b)  # the broken rim is opaque
    box = (px - r, py - r, px + r, py + r)
    if within is not None:
        box = (max(box[0], within[0]), max(box[1], within[1]), min(box[2], within[2]), min(box[3], within[3]))
    return _grow(box, MIN_DEFECT_PX, (w, h))


def _draw_stain(rng: np.random.Generator, colour: np.ndarray, alpha: np.ndarray, cx: float, cy: float,
                size: float, opaque: bool = True) -> Box:
    h, w = alpha.shape
    m = _blotch(rng, (h, w), cx, cy, size) * (alpha > 0.2)
    tint = np.array(_STAIN_COLOURS[int(rng.integers(len(_STAIN_COLOURS)))], np.float32)
    _blend(colour, m, tint, 0.9)
    if opaque:
        alpha[:] = np.maximum(alpha, m * 0.95)
    return _grow(_mask_box(m, 0.35), MIN_DEFECT_PX, (w, h))


# -- parts --------------------------------------------------------------------

def _vial(rng: np.random.Generator, defect: str | None) -> _Sprite:
    bw = int(rng.integers(26, 45))
    total = int(min(112, round(bw * rng.uniform(1.9, 2.5))))
    cap_h = max(11, round(total * 0.17))
    cap_w = max(18, round(bw * 0.74))
    neck_h = max(7, round(total * 0.11))
    neck_w = max(14, round(bw * 0.56))
    shoulder_h = max(5, round(total * 0.09))
    m = SPRITE_MARGIN
    h, w = total + 2 * m, bw + 2 * m
    cx = w / 2.0
    top = m
    lip_top = top + round(cap_h * 0.35)
    y_s = top + cap_h + neck_h
    y_b = y_s + shoulder_h
    bottom = top + total
    xb1, xb2 = m, m + bw  # body columns (x2 exclusive)
    xn1, xn2 = int(round(cx - neck_w / 2)), int(round(cx + neck_w / 2))

    glass = np.zeros((h, w), np.uint8)
    cv2.rectangle(glass, (xn1, lip_top), (xn2 - 1, y_s), 255, -1)
    cv2.rectangle(glass, (xn1 - 2, lip_top), (xn2 + 1, lip_top + 4), 255, -1)
    cv2.fillConvexPoly(glass, np.array([(xn1, y_s), (xn2 - 1, y_s), (xb2 - 1, y_b), (xb1, y_b)], np.int32), 255,
                       cv2.LINE_AA)
    r = 5
    cv2.rectangle(glass, (xb1, y_b), (xb2 - 1, bottom - 1 - r), 255, -1)
    cv2.rectangle(glass, (xb1 + r, y_b), (xb2 - 1 - r, bottom - 1), 255, -1)
    cv2.circle(glass, (xb1 + r, bottom - 1 - r), r, 255, -1, cv2.LINE_AA)
    cv2.circle(glass, (xb2 - 1 - r, bottom - 1 - r), r, 255, -1, cv2.LINE_AA)
    g = glass.astype(np.float32) / 255.0

    # the glass: a cylinder, darker and more opaque at its edges, with a highlight
    half = np.full(h, bw / 2.0, np.float32)
    rows = np.arange(h, dtype=np.float32)
    half[rows < y_b] = np.interp(rows[rows < y_b], [y_s, y_b], [neck_w / 2.0, bw / 2.0]).astype(np.float32)
    half[rows < y_s] = neck_w / 2.0
    half[(rows >= lip_top) & (rows <= lip_top + 4)] = neck_w / 2.0 + 2
    u = (np.arange(w, dtype=np.float32)[None, :] + 0.5 - cx) / half[:, None]
    edge = np.clip(np.abs(u), 0, 1) ** 5
    glass_col = np.array([222, 214, 204], np.float32) * rng.uniform(0.95, 1.05)
    edge_col = np.array([92, 98, 104], np.float32)
    colour = glass_col * (1 - edge[..., None]) + edge_col * edge[..., None]
    alpha = g * (0.42 + 0.53 * edge)
    liquid_top = int(y_b + (bottom - y_b) * rng.uniform(0.25, 0.5))
    liquid = np.array([(120, 190, 232), (232, 218, 200), (150, 200, 210), (205, 190, 235)][int(rng.integers(4))],
                      np.float32)
    below = (rows >= liquid_top)[:, None] & (g > 0)
    _blend(colour, below.astype(np.float32), liquid, 0.45)
    alpha = np.where(below, np.minimum(g, alpha + 0.2 * g), alpha)
    meniscus = np.zeros((h, w), np.float32)
    meniscus[liquid_top:liquid_top + 2] = 1.0
    _blend(colour, meniscus * g, (120, 125, 130), 0.6)
    base = np.zeros((h, w), np.float32)
    base[bottom - 4:bottom] = 1.0
    _blend(colour, base * g, (140, 145, 150), 0.5)
    alpha = np.maximum(alpha, base * g * 0.85)
    for centre, weight in ((-0.5, 0.85), (0.62, 0.35)):
        hl = np.exp(-(((u - centre) / 0.1) ** 2)) * g
        _blend(colour, hl, (255, 255, 255), weight)
        alpha = np.maximum(alpha, hl * weight)
    alpha = alpha.astype(np.float32)
    colour = colour.astype(np.float32)

    defects: list[tuple[str, Box]] = []
    capped = defect != "missing_cap"
    if capped:
        crimp_top = top + round(cap_h * 0.42)
        x1, x2 = int(round(cx - cap_w / 2)), int(round(cx + cap_w / 2))
        cu = (np.arange(w, dtype=np.float32) + 0.5 - cx) / (cap_w / 2.0)
        shade = (0.62 + 0.38 * np.clip(1 - cu ** 2, 0, 1)) + 0.25 * np.exp(-(((cu + 0.4) / 0.15) ** 2))
        colour[crimp_top:top + cap_h, x1:x2] = np.array([188, 188, 194], np.float32) * shade[x1:x2, None]
        alpha[crimp_top:top + cap_h, x1:x2] = 1.0
        colour[top + cap_h - 2:top + cap_h, x1:x2] *= 0.6
        t1, t2 = int(round(cx - cap_w * 0.47)), int(round(cx + cap_w * 0.47))
        flip = np.array(_CAP_COLOURS[int(rng.integers(len(_CAP_COLOURS)))], np.float32)
        colour[top:crimp_top + 1, t1:t2] = np.clip(flip * shade[t1:t2, None], 0, 255)
        alpha[top:crimp_top + 1, t1:t2] = 1.0
        box = (float(xb1), float(top), float(xb2), float(bottom))
    else:
        box = (float(xb1), float(lip_top), float(xb2), float(bottom))
        defects.append(("missing_cap", (float(round(cx - cap_w / 2 - 1)), float(top), float(round(cx + cap_w / 2 + 1)),
                                        float(y_s))))
    body = (xb1 + 3.0, y_b + 3.0, xb2 - 4.0, bottom - 5.0)
    if defect == "crack":
        defects.append(("crack", _draw_crack(rng, colour, alpha, body, rng.uniform(18, 28))))
    elif defect == "chip":
        px = _between(rng, xb1 + 3, xb2 - 3)
        defects.append(("chip", _draw_notch(colour, alpha, px, bottom - 1.0, rng.uniform(7, 9.5), 0.3, box)))
    elif defect == "stain":
        size = _between(rng, 13, min(22, bw - 9))
        sx = _between(rng, body[0] + size / 2, body[2] - size / 2)
        sy = _between(rng, body[1] + size / 2, body[3] - size / 2)
        defects.append(("stain", _draw_stain(rng, colour, alpha, sx, sy, size)))
    return _finish(colour, alpha, box, defects)


def _shaded_disc(radius: float, tint: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    size = int(math.ceil(radius)) * 2 + 3
    c = (size - 1) / 2.0
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float32)
    rho = np.sqrt((xs - c) ** 2 + (ys - c) ** 2) / radius
    mask = np.clip((1.0 - rho) * radius + 0.5, 0, 1)
    shade = 1.0 - 0.3 * np.clip(rho, 0, 1) ** 4 + 0.12 * np.clip(-((xs - c) + (ys - c)) / (2 * radius), -1, 1)
    return np.clip(tint * shade[..., None], 0, 255).astype(np.float32), mask.astype(np.float32)


def _blister(rng: np.random.Generator, defect: str | None) -> _Sprite:
    bw, bh = int(rng.integers(72, 119)), int(rng.integers(44, 77))
    if rng.random() < 0.3:
        bw, bh = bh, bw
    m = SPRITE_MARGIN
    h, w = bh + 2 * m, bw + 2 * m
    foil = np.zeros((h, w), np.uint8)
    r = 5
    cv2.rectangle(foil, (m + r, m), (m + bw - 1 - r, m + bh - 1), 255, -1)
    cv2.rectangle(foil, (m, m + r), (m + bw - 1, m + bh - 1 - r), 255, -1)
    for x in (m + r, m + bw - 1 - r):
        for y in (m + r, m + bh - 1 - r):
            cv2.circle(foil, (x, y), r, 255, -1, cv2.LINE_AA)
    alpha = foil.astype(np.float32) / 255.0
    silver = rng.uniform(182, 212)
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    gradient = 1.0 + 0.1 * ((xs - w / 2) / w - (ys - h / 2) / h)
    grain = rng.standard_normal((h, w), dtype=np.float32) * 3.0
    colour = (silver * gradient + grain)[..., None] * np.array([1.0, 0.99, 0.96], np.float32)
    colour = colour.astype(np.float32)
    border = np.zeros((h, w), np.uint8)
    cv2.rectangle(border, (m + 3, m + 3), (m + bw - 4, m + bh - 4), 255, 1, cv2.LINE_AA)
    _blend(colour, border.astype(np.float32) / 255.0, (140, 140, 145), 0.6)

    cols = max(2, int((bw - 8) // rng.uniform(19, 26)))
    rows = max(2, int((bh - 8) // rng.uniform(19, 26)))
    cell_w, cell_h = (bw - 8) / cols, (bh - 8) / rows
    radius = max(5.5, min(cell_w, cell_h) * 0.36)
    tint = np.array(_TABLET_COLOURS[int(rng.integers(len(_TABLET_COLOURS)))], np.float32)
    disc, disc_mask = _shaded_disc(radius, tint)
    ring_dark = np.zeros((h, w), np.uint8)
    ring_light = np.zeros((h, w), np.uint8)
    ds = disc.shape[0]
    for j in range(rows):
        for i in range(cols):
            px = m + 4 + (i + 0.5) * cell_w
            py = m + 4 + (j + 0.5) * cell_h
            ctr = (int(round(px * 8)), int(round(py * 8)))
            cv2.ellipse(ring_dark, ctr, (int((radius + 2.5) * 8),) * 2, 0, -30, 120, 255, 2, cv2.LINE_AA, 3)
            cv2.ellipse(ring_light, ctr, (int((radius + 1.5) * 8),) * 2, 0, 160, 290, 255, 1, cv2.LINE_AA, 3)
            x0, y0 = int(round(px - ds / 2)), int(round(py - ds / 2))
            region = colour[y0:y0 + ds, x0:x0 + ds]
            region *= 1.0 - disc_mask[..., None]
            region += disc * disc_mask[..., None]
    _blend(colour, ring_dark.astype(np.float32) / 255.0, (95, 95, 100), 0.8)
    _blend(colour, ring_light.astype(np.float32) / 255.0, (255, 255, 255), 0.8)
    box = (float(m), float(m), float(m + bw), float(m + bh))
    inner = (m + 4.0, m + 4.0, m + bw - 5.0, m + bh - 5.0)
    defects: list[tuple[str, Box]] = []
    if defect == "crack":
        length = rng.uniform(26, min(46, 0.9 * math.hypot(bw, bh)))
        defects.append(("crack", _draw_crack(rng, colour, alpha, inner, length, light=255.0)))
    elif defect == "stain":
        size = _between(rng, 16, min(26, min(bw, bh) - 10))
        sx = _between(rng, inner[0] + size / 2, inner[2] - size / 2)
        sy = _between(rng, inner[1] + size / 2, inner[3] - size / 2)
        defects.append(("stain", _draw_stain(rng, colour, alpha, sx, sy, size)))
    return _finish(colour, alpha, box, defects)


def _tablet(rng: np.random.Generator, defect: str | None) -> _Sprite:
    if rng.random() < 0.55:
        a = b = rng.uniform(11, 18)
        theta = 0.0
    else:
        a, b = rng.uniform(15, 23), rng.uniform(10.2, 14)
        theta = float(rng.choice([0.0, 90.0]) + rng.uniform(-20, 20))
    t = math.radians(theta)
    ex = math.sqrt((a * math.cos(t)) ** 2 + (b * math.sin(t)) ** 2)
    ey = math.sqrt((a * math.sin(t)) ** 2 + (b * math.cos(t)) ** 2)
    m = SPRITE_MARGIN
    w, h = int(math.ceil(2 * ex)) + 2 * m, int(math.ceil(2 * ey)) + 2 * m
    cx, cy = w / 2.0, h / 2.0
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    dx, dy = xs + 0.5 - cx, ys + 0.5 - cy
    xr = (dx * math.cos(t) + dy * math.sin(t)) / a
    yr = (-dx * math.sin(t) + dy * math.cos(t)) / b
    rho = np.sqrt(xr ** 2 + yr ** 2)
    alpha = np.clip((1.0 - rho) * min(a, b) + 0.5, 0, 1).astype(np.float32)
    tint = np.array(_TABLET_COLOURS[int(rng.integers(len(_TABLET_COLOURS)))], np.float32) * rng.uniform(0.94, 1.04)
    shade = 1.0 - 0.3 * np.clip(rho, 0, 1) ** 4 + 0.1 * np.clip(-(dx + dy) / (a + b), -1, 1)
    bevel = np.exp(-(((rho - 0.84) / 0.05) ** 2))
    shade = shade - 0.12 * bevel
    colour = np.clip(tint * shade[..., None], 0, 255).astype(np.float32)
    if rng.random() < 0.5:  # score line along the short axis
        score = np.exp(-((xr * a / 0.9) ** 2)) * (np.abs(yr) < 0.8)
        colour *= (1.0 - 0.25 * score)[..., None]
    box = _mask_box(alpha, 0.5)
    defects: list[tuple[str, Box]] = []
    if defect == "chip":
        phi = rng.uniform(0, 2 * math.pi)
        lx, ly = a * math.cos(phi), b * math.sin(phi)
        px = cx + lx * math.cos(t) - ly * math.sin(t)
        py = cy + lx * math.sin(t) + ly * math.cos(t)
        radius = _between(rng, 6.0, min(9.0, 0.6 * min(a, b)))
        defects.append(("chip", _draw_notch(colour, alpha, px, py, radius, 0.55, box)))
    elif defect == "stain":
        size = _between(rng, 13, min(20, 2 * min(a, b) - 6))
        reach = max(0.0, min(a, b) - size / 2 - 2)
        sx, sy = cx + rng.uniform(-reach, reach) * 0.7, cy + rng.uniform(-reach, reach) * 0.7
        defects.append(("stain", _draw_stain(rng, colour, alpha, sx, sy, size)))
    return _finish(colour, alpha, box, defects)


def _part_sprite(rng: np.random.Generator, kind: str, defect: str | None) -> _Sprite:
    return {"vial": _vial, "blister": _blister, "tablet": _tablet}[kind](rng, defect)


# -- tools --------------------------------------------------------------------

def _arc(cx: float, cy: float, r: float, a0: float, a1: float, n: int = 8) -> list[tuple[float, float]]:
    return [(cx + r * math.cos(math.radians(a)), cy + r * math.sin(math.radians(a))) for a in np.linspace(a0, a1, n)]


def _rotate(points: np.ndarray, pivot: tuple[float, float], degrees: float) -> np.ndarray:
    a = math.radians(degrees)
    rot = np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]], np.float32)
    return (points - pivot) @ rot.T + pivot


def _tool_local(rng: np.random.Generator, kind: str, state: str) -> tuple[np.ndarray, np.ndarray]:
    """The tool drawn horizontally (handle left, tip right): colour (float32) and alpha."""
    length = rng.uniform(96, 128)
    pad = 14
    w, h = int(math.ceil(length)) + 2 * pad, 100
    x0, cy = float(pad), h / 2.0
    body: list[np.ndarray] = []
    tip: list[np.ndarray] = []
    lines: list[tuple[tuple[float, float], tuple[float, float], int]] = []
    steel = rng.uniform(172, 205)
    body_col = np.array([steel, steel, steel + 4], np.float32)
    tip_col = np.array([steel + 22, steel + 22, steel + 26], np.float32)
    notch: tuple[float, float, float] | None = None
    if kind == "scalpel":
        hl, hw = 0.62 * length, rng.uniform(9, 12)
        handle = _arc(x0 + hw / 2, cy, hw / 2, 90, 270) + [(x0 + hl, cy - hw / 2), (x0 + hl, cy + hw / 2)]
        body.append(np.array(handle, np.float32))
        if rng.random() < 0.35:
            body_col = np.array(((170, 110, 40), (80, 140, 60), (60, 60, 60))[int(rng.integers(3))], np.float32)
        for k in range(6):
            x = x0 + hl * (0.3 + 0.05 * k)
            lines.append(((x, cy - hw / 2 + 2), (x, cy + hw / 2 - 2), 1))
        xb, bl = x0 + hl, 0.38 * length
        tip.append(np.array([(xb - 3, cy - 3.5), (xb + 0.3 * bl, cy - 4.5), (xb + 0.75 * bl, cy - 3.5),
                             (xb + bl, cy - 0.5), (xb + 0.7 * bl, cy + 4.5), (xb + 0.35 * bl, cy + 7),
                             (xb + 0.1 * bl, cy + 6), (xb - 3, cy + 4)], np.float32))
        pivot = (xb, cy)
        notch = (xb + 0.45 * bl, cy + 6.5, rng.uniform(4.5, 5.5))
    elif kind == "forceps":
        body.append(np.array(_arc(x0 + 6, cy, 6, 90, 270) + [(x0 + 16, cy - 6), (x0 + 16, cy + 6)], np.float32))
        split = 0.72
        for s in (-1.0, 1.0):
            for part, (t0, t1) in (("body", (0.0, split)), ("tip", (split - 0.02, 1.0))):
                ts = np.linspace(t0, t1, 10)
                off = np.where(ts < 0.4, 2.5 + 6.0 * ts / 0.4, 8.5 - 7.3 * (ts - 0.4) / 0.6)
                half = (5.2 - 3.2 * ts) / 2
                xs = x0 + 10 + ts * (length - 10)
                upper = np.stack([xs, cy + s * off - half], 1)
                lower = np.stack([xs, cy + s * off + half], 1)[::-1]
                (body if part == "body" else tip).append(np.concatenate([upper, lower]).astype(np.float32))
            for t in np.linspace(0.38, 0.6, 7):
                xx = x0 + 10 + t * (length - 10)
                off = 8.5 - 7.3 * (t - 0.4) / 0.6 if t >= 0.4 else 2.5 + 6.0 * t / 0.4
                lines.append(((xx, cy + s * off - 2), (xx, cy + s * off + 2), 1))
        pivot = (x0 + 10 + split * (length - 10), cy)
    else:  # spatula
        rw, pw = rng.uniform(6, 8), rng.uniform(16, 22)
        rod_end = x0 + 0.66 * length
        body.append(np.array(_arc(x0 + rw / 2, cy, rw / 2, 90, 270) + [(rod_end, cy - rw / 2), (rod_end, cy + rw / 2)],
                             np.float32))
        p0 = x0 + 0.62 * length
        paddle = [(p0, cy + rw / 2), (p0, cy - rw / 2), (p0 + 0.07 * length, cy - pw / 2)]
        paddle += _arc(x0 + length - pw / 2, cy, pw / 2, -90, 90, 12)
        paddle += [(p0 + 0.07 * length, cy + pw / 2)]
        tip.append(np.array(paddle, np.float32))
        pivot = (p0 + 0.02 * length, cy)
        notch = (x0 + 0.84 * length, cy + (pw / 2) * (1 if rng.random() < 0.5 else -1), rng.uniform(5, 6.5))

    damage = None
    if state == "damaged":
        damage = str(rng.choice(["bent", "broken", "notch"] if notch is not None else ["bent", "broken"]))
    if damage == "bent":
        angle = rng.uniform(28, 42) * (1 if rng.random() < 0.5 else -1)
        tip = [_rotate(p, pivot, angle) for p in tip]

    def fill(polys: list[np.ndarray]) -> np.ndarray:
        mask = np.zeros((h, w), np.uint8)
        cv2.fillPoly(mask, [np.round(p * 8).astype(np.int32) for p in polys], 255, cv2.LINE_AA, 3)
        return mask.astype(np.float32) / 255.0

    body_mask, tip_mask = fill(body), fill(tip)
    alpha = np.maximum(body_mask, tip_mask)
    colour = np.zeros((h, w, 3), np.float32)
    colour += body_col
    _blend(colour, tip_mask, tip_col, 1.0)
    # brushed steel: a highlight along the tool and a fine streaky grain
    rows = np.arange(h, dtype=np.float32)[:, None]
    shine = 0.82 + 0.3 * np.exp(-(((rows - cy + 1.5) / 2.6) ** 2))
    grain = cv2.blur(rng.standard_normal((h, w), dtype=np.float32), (9, 1)) * 8.0
    colour = colour * shine[..., None] + grain[..., None]
    detail = np.zeros((h, w), np.uint8)
    for p, q, thick in lines:
        cv2.line(detail, (int(p[0] * 8), int(p[1] * 8)), (int(q[0] * 8), int(q[1] * 8)), 255, thick, cv2.LINE_AA, 3)
    edge = cv2.morphologyEx((alpha > 0.5).astype(np.uint8), cv2.MORPH_GRADIENT, np.ones((3, 3), np.uint8))
    colour *= (1.0 - 0.35 * (detail.astype(np.float32) / 255.0) * alpha)[..., None]
    colour *= (1.0 - 0.25 * edge.astype(np.float32))[..., None]

    if damage == "broken":
        tip_x = float(max(p[:, 0].max() for p in tip))
        cut = pivot[0] + (tip_x - pivot[0]) * rng.uniform(0.2, 0.45)
        ys = np.linspace(0, h, 9)
        jag = [(cut + rng.uniform(-2.5, 2.5), y) for y in ys]
        gone = np.array(jag + [(w + 1.0, h + 1.0), (w + 1.0, -1.0)], np.float32)
        cut_mask = np.zeros((h, w), np.uint8)
        cv2.fillPoly(cut_mask, [np.round(gone * 8).astype(np.int32)], 255, cv2.LINE_AA, 3)
        rim = np.zeros((h, w), np.uint8)
        cv2.polylines(rim, [np.round(np.array(jag, np.float32) * 8).astype(np.int32)], False, 255, 3, cv2.LINE_AA, 3)
        _blend(colour, rim.astype(np.float32) / 255.0 * alpha, (45, 45, 50), 0.9)
        alpha *= 1.0 - cut_mask.astype(np.float32) / 255.0
    elif damage == "notch" and notch is not None:
        _draw_notch(colour, alpha, notch[0], notch[1], notch[2], 0.35)
    if state == "dirty":  # residue: blotches on the tool that may stick out a little past its edges
        near = cv2.dilate((alpha > 0.3).astype(np.uint8), np.ones((5, 5), np.uint8)).astype(np.float32)
        for _ in range(int(rng.integers(4, 8))):
            t = rng.uniform(0.08, 0.95)
            sx, sy = x0 + t * length, cy + rng.uniform(-3, 3)
            m = np.zeros((h, w), np.uint8)
            cv2.ellipse(m, (int(sx * 8), int(sy * 8)), (int(rng.uniform(5, 11) * 8), int(rng.uniform(3, 7) * 8)),
                        float(rng.uniform(0, 180)), 0, 360, 255, -1, cv2.LINE_AA, 3)
            mf = cv2.GaussianBlur(m, (5, 5), 0).astype(np.float32) / 255.0 * near
            smudge = _SMUDGE_COLOURS[int(rng.integers(len(_SMUDGE_COLOURS)))]
            strength = rng.uniform(0.75, 0.95)
            weight = np.where(alpha > 0.5, mf * strength, (mf > 0.02).astype(np.float32))
            _blend(colour, weight, smudge, 1.0)
            alpha = np.maximum(alpha, mf * strength)
    return np.clip(colour, 0, 255).astype(np.float32), alpha.astype(np.float32)


def _tool_sprite(rng: np.random.Generator, kind: str, state: str) -> _Sprite:
    colour, alpha = _tool_local(rng, kind, state)
    h, w = alpha.shape
    for _ in range(8):  # an angle away from the axes, so that the box is not a thin sliver
        angle = float(rng.uniform(13, 77) + 90 * int(rng.integers(4)) - 180)
        a = math.radians(angle)
        cos, sin = abs(math.cos(a)), abs(math.sin(a))
        ow, oh = int(math.ceil(w * cos + h * sin)), int(math.ceil(w * sin + h * cos))
        rot = cv2.getRotationMatrix2D((w / 2.0, h / 2.0), angle, 1.0)
        rot[0, 2] += ow / 2.0 - w / 2.0
        rot[1, 2] += oh / 2.0 - h / 2.0
        a_rot = cv2.warpAffine(alpha, rot, (ow, oh), flags=cv2.INTER_LINEAR, borderValue=0)
        x1, y1, x2, y2 = (int(v) for v in _mask_box(a_rot, 0.02))
        if min(x2 - x1, y2 - y1) >= 24 and max(x2 - x1, y2 - y1) <= 140:
            break
    c_rot = cv2.warpAffine(colour, rot, (ow, oh), flags=cv2.INTER_LINEAR, borderValue=(0, 0, 0))
    m = SPRITE_MARGIN
    a_crop = np.zeros((y2 - y1 + 2 * m, x2 - x1 + 2 * m), np.float32)
    c_crop = np.zeros(a_crop.shape + (3,), np.float32)
    a_crop[m:m + y2 - y1, m:m + x2 - x1] = a_rot[y1:y2, x1:x2]
    c_crop[m:m + y2 - y1, m:m + x2 - x1] = c_rot[y1:y2, x1:x2]
    box = _mask_box(a_crop, 0.4)
    return _finish(c_crop, a_crop, box, [], shadow=(4, 5), strength=0.45)


# -- backgrounds and camera ---------------------------------------------------

def _belt_texture(rng: np.random.Generator, height: int, length: int) -> np.ndarray:
    """A dark rubber belt, tileable along x: float32 BGR ``height x length``."""
    base = np.array(_BELT_COLOURS[int(rng.integers(len(_BELT_COLOURS)))], np.float32) * rng.uniform(0.85, 1.15)
    shade = 1.0 + 0.05 * _smooth_noise(rng, height, length, 12, wrap_x=True)
    shade += 0.04 * rng.standard_normal((height, length), dtype=np.float32)
    shade += 0.03 * rng.standard_normal((height, 1), dtype=np.float32)  # streaks along the belt
    marks = np.zeros((height, length), np.uint8)
    dark = np.zeros((height, length), np.uint8)
    count = int(rng.integers(10, 20))
    for k in range(count):
        x = (k + rng.uniform(-0.15, 0.15)) * length / count
        skew = rng.uniform(-4, 4)
        for off in (-length, 0, length):
            cv2.line(marks, (int((x + off) * 8), 0), (int((x + off + skew) * 8), (height - 1) * 8), 255, 2,
                     cv2.LINE_AA, 3)
            cv2.line(dark, (int((x + off + 3) * 8), 0), (int((x + off + skew + 3) * 8), (height - 1) * 8), 255, 2,
                     cv2.LINE_AA, 3)
    for _ in range(int(length / 12)):
        x, y = rng.uniform(0, length), rng.uniform(0, height)
        axes = (int(rng.uniform(2, 9) * 8), int(rng.uniform(1, 3) * 8))
        target = marks if rng.random() < 0.5 else dark
        for off in (-length, 0, length):
            cv2.ellipse(target, (int((x + off) * 8), int(y * 8)), axes, float(rng.uniform(-20, 20)), 0, 360,
                        int(rng.integers(60, 160)), -1, cv2.LINE_AA, 3)
    shade += 0.35 * marks.astype(np.float32) / 255.0 - 0.25 * dark.astype(np.float32) / 255.0
    rows = np.arange(height, dtype=np.float32)
    edge = np.minimum(rows, height - 1 - rows)
    shade *= (0.7 + 0.3 * np.clip(edge / 10.0, 0, 1))[:, None]
    return (shade[..., None] * base).astype(np.float32)


def _line_background(rng: np.random.Generator, inspection_x: float) -> np.ndarray:
    """The static parts of the conveyor view: machine panels, guide rails, the inspection head."""
    h, w = HEIGHT, WIDTH
    panel = np.array([rng.uniform(95, 125), rng.uniform(95, 115), rng.uniform(85, 105)], np.float32)
    frame = np.empty((h, w, 3), np.float32)
    frame[:] = panel
    frame *= (1.0 + 0.06 * _smooth_noise(rng, h, w, 20))[..., None]
    frame += (2.5 * rng.standard_normal((h, w), dtype=np.float32))[..., None]
    img = np.clip(frame, 0, 255).astype(np.uint8)
    for x in range(int(rng.integers(40, 90)), w, int(rng.integers(150, 220))):  # panel seams and bolts
        cv2.line(img, (x, 0), (x, BELT_Y0 - 20), (70, 70, 70), 2, cv2.LINE_AA)
        cv2.line(img, (x, BELT_Y1 + 20), (x, h), (70, 70, 70), 2, cv2.LINE_AA)
        for y in (12, BELT_Y0 - 32, BELT_Y1 + 32, h - 12):
            cv2.circle(img, (x + 10, y), 3, (160, 160, 165), -1, cv2.LINE_AA)
    for y0, y1 in ((BELT_Y0 - 18, BELT_Y0), (BELT_Y1, BELT_Y1 + 18)):  # guide rails
        rail = np.linspace(0, 1, y1 - y0, dtype=np.float32)
        level = 150 + 70 * np.exp(-(((rail - 0.35) / 0.18) ** 2))
        img[y0:y1] = np.clip(level[:, None, None] * np.array([1.0, 1.0, 1.03]), 0, 255).astype(np.uint8)
        cv2.line(img, (0, y0), (w, y0), (60, 60, 60), 1)
        cv2.line(img, (0, y1 - 1), (w, y1 - 1), (60, 60, 60), 1)
    xi = int(round(inspection_x))
    for y0, y1 in ((BELT_Y0 - 40, BELT_Y0 - 2), (BELT_Y1 + 2, BELT_Y1 + 40)):  # the inspection head
        cv2.rectangle(img, (xi - 16, y0), (xi + 16, y1), (30, 180, 230), -1, cv2.LINE_AA)
        cv2.rectangle(img, (xi - 16, y0), (xi + 16, y1), (20, 60, 80), 1, cv2.LINE_AA)
        cv2.circle(img, (xi, (y0 + y1) // 2), 4, (40, 40, 220), -1, cv2.LINE_AA)
    cv2.putText(img, "LINE 1", (10, 22), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (230, 230, 230), 1, cv2.LINE_AA)
    return img.astype(np.float32)


def _mat_background(rng: np.random.Generator, height: int, width: int, zone: tuple[int, int, int, int] | None
                    ) -> np.ndarray:
    """A surgical mat on a steel table, seen from above: float32 BGR."""
    base = np.array(_MAT_COLOURS[int(rng.integers(len(_MAT_COLOURS)))], np.float32) * rng.uniform(0.9, 1.1)
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    weave = 0.03 * np.sin(xs * 2.2) * np.sin(ys * 2.2)
    shade = 1.0 + 0.06 * _smooth_noise(rng, height, width, 30) + weave
    shade += 0.035 * rng.standard_normal((height, width), dtype=np.float32)
    img = shade[..., None] * base
    if zone is not None:
        border = int(rng.integers(14, 30))
        table = np.array([172, 172, 176], np.float32) * (1.0 + 0.03 * cv2.blur(
            rng.standard_normal((height, width), dtype=np.float32), (15, 1)))[..., None]
        outside = np.ones((height, width), bool)
        outside[border:height - border, border:width - border] = False
        img[outside] = table[outside]
        u8 = np.clip(img, 0, 255).astype(np.uint8)
        x1, y1, x2, y2 = zone
        for a, b in (((x1, y1), (x2, y1)), ((x2, y1), (x2, y2)), ((x2, y2), (x1, y2)), ((x1, y2), (x1, y1))):
            steps = int(max(abs(b[0] - a[0]), abs(b[1] - a[1])) // 12)
            for k in range(0, steps, 2):
                p = (a[0] + (b[0] - a[0]) * k // steps, a[1] + (b[1] - a[1]) * k // steps)
                q = (a[0] + (b[0] - a[0]) * (k + 1) // steps, a[1] + (b[1] - a[1]) * (k + 1) // steps)
                cv2.line(u8, p, q, (225, 230, 230), 2, cv2.LINE_AA)
        cv2.putText(u8, "TOOL CHECK", (x1 + 6, y1 - 8), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (225, 230, 230), 1,
                    cv2.LINE_AA)
        img = u8.astype(np.float32)
    return img.astype(np.float32)


class _Camera:
    """Lighting that drifts (brightness and a gradient) and sensor noise."""

    def __init__(self, rng: np.random.Generator, width: int, height: int) -> None:
        self.width, self.height = width, height
        self.base = rng.uniform(0.88, 1.08)
        self.amp = rng.uniform(0.04, 0.14)
        self.period = rng.uniform(6.0, 18.0)
        self.phase = rng.uniform(0, 2 * math.pi)
        self.gx_amp = rng.uniform(0.05, 0.25)
        self.gx_period = rng.uniform(10.0, 30.0)
        self.gx_phase = rng.uniform(0, 2 * math.pi)
        self.gy = rng.uniform(-0.15, 0.15)
        self.xs = np.linspace(-0.5, 0.5, width, dtype=np.float32)
        self.ys = np.linspace(-0.5, 0.5, height, dtype=np.float32)
        sigma = rng.uniform(2.0, 4.5)
        self.bank = rng.standard_normal((3, height + 16, width + 16, 3), dtype=np.float32) * np.float32(sigma)

    def expose(self, frame: np.ndarray, t: float, rng: np.random.Generator) -> np.ndarray:
        g = self.base * (1.0 + self.amp * math.sin(2 * math.pi * t / self.period + self.phase))
        gx = self.gx_amp * math.sin(2 * math.pi * t / self.gx_period + self.gx_phase)
        gain = np.outer(g * (1.0 + self.gy * self.ys), 1.0 + gx * self.xs).astype(np.float32)
        frame *= gain[..., None]
        k, dy, dx = int(rng.integers(3)), int(rng.integers(17)), int(rng.integers(17))
        frame += self.bank[k, dy:dy + self.height, dx:dx + self.width]
        np.clip(frame, 0, 255, out=frame)
        return frame.astype(np.uint8)


# -- the conveyor -------------------------------------------------------------

@dataclass
class _Part:
    track_id: int
    kind: str
    defect: str | None
    defect_track_id: int | None
    x_at0: float  # centre x at frame 0; at frame i it is x_at0 + belt_pos[i]
    oy: int  # sprite top row
    sprite: _Sprite
    crossing_s: float | None


class ProductionLineScene:
    """Parts on a conveyor belt passing an inspection line (see the module doc)."""

    labels = DEFECT_LABELS

    def __init__(self, seed: int, duration_s: float = 40.0, speed_px_s: float | None = None,
                 defect_rate: float = 0.25) -> None:
        self.seed = int(seed)
        self.name = "production_line"
        self.width, self.height, self.fps = WIDTH, HEIGHT, FPS
        self.duration_s = float(duration_s)
        self.defect_rate = float(defect_rate)
        self.n_frames = max(1, int(round(self.duration_s * self.fps)))
        self.inspection_x = INSPECTION_FRACTION * self.width
        rng = np.random.default_rng([self.seed, 0])
        # belt speed: per seed (or given), drifting over time unless given
        if speed_px_s is None:
            base = rng.uniform(45.0, 125.0)
            amp, period, phase = rng.uniform(0.05, 0.3), rng.uniform(8.0, 20.0), rng.uniform(0, 2 * math.pi)
        else:
            base, amp, period, phase = float(speed_px_s), 0.0, 1.0, 0.0
            rng.uniform(size=4)  # same draws either way
        if base <= 0:
            raise ValueError("speed_px_s must be positive")
        self.speed_px_s = base
        mid = (np.arange(1, self.n_frames) - 0.5) / self.fps
        speeds = base * (1.0 + amp * np.sin(2 * math.pi * mid / period + phase))
        self.belt_pos = np.concatenate([[0.0], np.cumsum(speeds / self.fps)])  # belt travel at each frame
        self.parts = self._schedule(rng)

    def _schedule(self, rng: np.random.Generator) -> list[_Part]:
        travel = float(self.belt_pos[-1])
        weights = rng.uniform(0.6, 1.4, len(PART_KINDS))
        weights /= weights.sum()
        gap_lo, gap_hi = rng.uniform(15, 40), rng.uniform(70, 160)
        parts: list[_Part] = []
        next_id = 1
        right = rng.uniform(self.width - 40, self.width + 40)  # right edge of the next part at frame 0
        while True:
            kind = PART_KINDS[int(rng.choice(len(PART_KINDS), p=weights))]
            defective = rng.random() < self.defect_rate
            defect = PART_DEFECTS[kind][int(rng.integers(len(PART_DEFECTS[kind])))] if defective else None
            sprite = _part_sprite(rng, kind, defect)
            x1, y1, x2, y2 = sprite.box
            bw, bh = x2 - x1, y2 - y1
            centre = right - bw / 2
            lo, hi = BELT_Y0 + 8 + bh / 2, BELT_Y1 - 8 - bh / 2
            cy = rng.uniform(lo, hi)
            right = centre - bw / 2 - rng.uniform(gap_lo, gap_hi)
            if centre + travel < 0:
                break
            if centre > self.width:
                continue
            crossing = self._crossing(centre)
            part = _Part(next_id, kind, defect, next_id + 1 if defect else None, centre,
                         int(round(cy - (y1 + y2) / 2)), sprite, crossing)
            next_id += 2 if defect else 1
            parts.append(part)
        return parts

    def _crossing(self, x_at0: float) -> float | None:
        """When the centre that starts at ``x_at0`` reaches the inspection line (None: not during the scene)."""
        target = self.inspection_x - x_at0
        pos = self.belt_pos
        i = int(np.searchsorted(pos, target, side="left"))
        if i >= len(pos) or (i == 0 and pos[0] != target):
            return None
        if i == 0:
            return 0.0
        frac = (target - pos[i - 1]) / (pos[i] - pos[i - 1])
        return round((i - 1 + float(frac)) / self.fps, 4)

    def timeline(self) -> list[TimelineEvent]:
        events = []
        for p in self.parts:
            if p.crossing_s is None:
                continue
            if p.defect:
                events.append(TimelineEvent("defect.part", p.track_id, p.crossing_s, p.crossing_s,
                                            {"defect": p.defect, "part": p.kind}))
            else:
                events.append(TimelineEvent("part.passed", p.track_id, p.crossing_s, p.crossing_s, {"part": p.kind}))
        events.sort(key=lambda e: (e.start_s, e.track_id))
        return events

    def _visible(self, index: int) -> list[tuple[_Part, int]]:
        """The parts that touch the frame at ``index`` with their sprite's left column."""
        shift = float(self.belt_pos[index])
        out = []
        for p in self.parts:
            sprite = p.sprite
            ox = int(round(p.x_at0 + shift - sprite.centre[0]))
            if ox >= self.width or ox + sprite.keep.shape[1] <= 0:
                continue
            out.append((p, ox))
        return out

    def truth(self, index: int) -> FrameTruth:
        """The ground truth of frame ``index`` (no rendering)."""
        objects: list[TruthObject] = []
        for p, ox in self._visible(index):
            box = _place(p.sprite.box, ox, p.oy, self.width, self.height)
            if box is not None:
                objects.append(TruthObject(p.track_id, p.kind, box))
            for label, dbox in p.sprite.defects:
                placed = _place(dbox, ox, p.oy, self.width, self.height, MIN_VISIBLE_DEFECT_PX)
                if placed is not None and p.defect_track_id is not None:
                    objects.append(TruthObject(p.defect_track_id, label, placed, {"part_track_id": p.track_id}))
        return FrameTruth(index, index / self.fps, objects)

    def frames(self) -> Iterator[tuple[np.ndarray, FrameTruth]]:
        rng = np.random.default_rng([self.seed, 1])
        background = _line_background(rng, self.inspection_x)
        belt = _belt_texture(rng, BELT_Y1 - BELT_Y0, BELT_PERIOD)
        belt2 = np.concatenate([belt, belt], axis=1)
        camera = _Camera(rng, self.width, self.height)
        noise_rng = np.random.default_rng([self.seed, 2])
        frame = np.empty_like(background)
        for index in range(self.n_frames):
            shift = int(round(float(self.belt_pos[index])))
            start = (-shift) % BELT_PERIOD
            np.copyto(frame, background)
            frame[BELT_Y0:BELT_Y1] = belt2[:, start:start + self.width]
            for p, ox in self._visible(index):
                _paste(frame, p.sprite, ox, p.oy)
            j = min(max(index, 1), self.n_frames - 1)
            blur = int(round(float(self.belt_pos[j] - self.belt_pos[j - 1]) * 0.4)) if j else 0
            if blur >= 2:
                band = frame[BELT_Y0 - 6:BELT_Y1 + 6]
                band[:] = cv2.blur(band, (blur, 1))
            image = camera.expose(frame, index / self.fps, noise_rng)
            yield image, self.truth(index)


# -- the tool check station ---------------------------------------------------

@dataclass
class _Presentation:
    track_id: int
    kind: str
    state: str
    start_frame: int
    end_frame: int  # exclusive
    ox: int
    oy: int
    sprite: _Sprite


def _lay_down(rng: np.random.Generator, sprite: _Sprite) -> tuple[int, int]:
    """Where a tool is laid down: the sprite's offset, its box inside ``TOOL_ZONE``."""
    x1, y1, x2, y2 = sprite.box
    zx1, zy1, zx2, zy2 = TOOL_ZONE
    cx = rng.uniform(zx1 + (x2 - x1) / 2 + 4, max(zx1 + (x2 - x1) / 2 + 5, zx2 - (x2 - x1) / 2 - 4))
    cy = rng.uniform(zy1 + (y2 - y1) / 2 + 4, max(zy1 + (y2 - y1) / 2 + 5, zy2 - (y2 - y1) / 2 - 4))
    return int(round(cx - (x1 + x2) / 2)), int(round(cy - (y1 + y2) / 2))


class ToolStationScene:
    """Tools laid down one at a time on a check station mat (see the module doc)."""

    labels = DEFECT_LABELS

    def __init__(self, seed: int, duration_s: float = 40.0) -> None:
        self.seed = int(seed)
        self.name = "tool_station"
        self.width, self.height, self.fps = WIDTH, HEIGHT, FPS
        self.duration_s = float(duration_s)
        self.n_frames = max(1, int(round(self.duration_s * self.fps)))
        rng = np.random.default_rng([self.seed, 10])
        self.presentations: list[_Presentation] = []
        t = rng.uniform(0.4, 1.5)
        track_id = 1
        while True:
            start = int(math.ceil(t * self.fps))
            end = start + int(round(rng.uniform(3.0, 6.0) * self.fps))
            if end > self.n_frames:
                break
            kind = TOOL_KINDS[int(rng.integers(len(TOOL_KINDS)))]
            state = TOOL_STATES[int(rng.choice(3, p=[0.5, 0.25, 0.25]))]
            sprite = _tool_sprite(rng, kind, state)
            ox, oy = _lay_down(rng, sprite)
            self.presentations.append(_Presentation(track_id, kind, state, start, end, ox, oy, sprite))
            track_id += 1
            t = end / self.fps + rng.uniform(0.8, 2.2)
        self._at = np.full(self.n_frames, -1, np.int32)
        for k, p in enumerate(self.presentations):
            self._at[p.start_frame:p.end_frame] = k

    def timeline(self) -> list[TimelineEvent]:
        return [TimelineEvent("tool.verified", p.track_id, round(p.start_frame / self.fps, 4),
                              round(p.end_frame / self.fps, 4), {"state": p.state}) for p in self.presentations]

    def truth(self, index: int) -> FrameTruth:
        objects = []
        k = int(self._at[index])
        if k >= 0:
            p = self.presentations[k]
            box = _place(p.sprite.box, p.ox, p.oy, self.width, self.height)
            if box is not None:
                objects.append(TruthObject(p.track_id, f"tool_{p.state}", box, {"tool": p.kind}))
        return FrameTruth(index, index / self.fps, objects)

    def frames(self) -> Iterator[tuple[np.ndarray, FrameTruth]]:
        rng = np.random.default_rng([self.seed, 11])
        background = _mat_background(rng, self.height, self.width, TOOL_ZONE)
        camera = _Camera(rng, self.width, self.height)
        noise_rng = np.random.default_rng([self.seed, 12])
        frame = np.empty_like(background)
        for index in range(self.n_frames):
            np.copyto(frame, background)
            k = int(self._at[index])
            if k >= 0:
                p = self.presentations[k]
                _paste(frame, p.sprite, p.ox, p.oy)
            yield camera.expose(frame, index / self.fps, noise_rng), self.truth(index)


def sample_tool_views(seed: int, count: int) -> list[tuple[np.ndarray, Box, str]]:
    """``count`` check-station frames (BGR uint8, the scene's size, mat and camera) with
    one tool each, as the station's camera sees it: ``(frame, box, state)``, ``state``
    one of ``TOOL_STATES`` (half clean, a quarter each dirty and damaged, as the scene
    presents them). One mat and one camera per seed: many seeds, many stations."""
    rng = np.random.default_rng([int(seed), 30])
    background = _mat_background(rng, HEIGHT, WIDTH, TOOL_ZONE)
    camera = _Camera(rng, WIDTH, HEIGHT)
    out: list[tuple[np.ndarray, Box, str]] = []
    while len(out) < count:
        kind = TOOL_KINDS[int(rng.integers(len(TOOL_KINDS)))]
        state = TOOL_STATES[int(rng.choice(3, p=[0.5, 0.25, 0.25]))]
        sprite = _tool_sprite(rng, kind, state)
        ox, oy = _lay_down(rng, sprite)
        box = _place(sprite.box, ox, oy, WIDTH, HEIGHT)
        if box is None:
            continue
        frame = background.copy()
        _paste(frame, sprite, ox, oy)
        out.append((camera.expose(frame, float(rng.uniform(0.0, 60.0)), rng), box, state))
    return out


# -- patches for the anomaly model --------------------------------------------

def sample_patches(seed: int, count: int, size: int = 64, defective_fraction: float = 0.5
                   ) -> list[tuple[np.ndarray, bool, str]]:
    """``count`` centred crops (BGR uint8 ``size x size``) of single parts and tools on
    their background: ``(crop, False, "")`` for a good one, ``(crop, True, kind)`` for a
    defective one, ``kind`` one of ``crack``, ``chip``, ``stain``, ``missing_cap``,
    ``tool_dirty``, ``tool_damaged``. Exactly ``round(count * defective_fraction)`` are
    defective, in random order."""
    rng = np.random.default_rng([int(seed), 20])
    count = max(0, int(count))
    n_bad = min(count, max(0, int(round(count * float(defective_fraction)))))
    flags = np.zeros(count, bool)
    flags[:n_bad] = True
    rng.shuffle(flags)
    belts = [_belt_texture(rng, BELT_Y1 - BELT_Y0, 640) for _ in range(3)]
    mats = [_mat_background(rng, 240, 320, None) for _ in range(2)]
    out: list[tuple[np.ndarray, bool, str]] = []
    for defective in flags:
        source = ("vial", "blister", "tablet", "tool")[int(rng.choice(4, p=[0.27, 0.27, 0.26, 0.2]))]
        if source == "tool":
            tool_kind = TOOL_KINDS[int(rng.integers(len(TOOL_KINDS)))]
            state = ("dirty", "damaged")[int(rng.integers(2))] if defective else "clean"
            sprite = _tool_sprite(rng, tool_kind, state)
            label = f"tool_{state}" if defective else ""
            backdrop = mats[int(rng.integers(len(mats)))]
        else:
            defect = PART_DEFECTS[source][int(rng.integers(len(PART_DEFECTS[source])))] if defective else None
            sprite = _part_sprite(rng, source, defect)
            label = defect or ""
            backdrop = belts[int(rng.integers(len(belts)))]
        x1, y1, x2, y2 = sprite.extent
        side = max(size, int(math.ceil(max(x2 - x1, y2 - y1) * 1.2)) + 4)
        side = min(side, backdrop.shape[0])
        by = int(rng.integers(0, backdrop.shape[0] - side + 1))
        bx = int(rng.integers(0, backdrop.shape[1] - side + 1))
        patch = backdrop[by:by + side, bx:bx + side].copy()
        cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
        _paste(patch, sprite, int(round(side / 2 - cx)), int(round(side / 2 - cy)))
        ramp = np.linspace(-0.5, 0.5, side, dtype=np.float32)
        gain = rng.uniform(0.85, 1.12) * (1.0 + rng.uniform(-0.15, 0.15) * ramp)[None, :] * \
            (1.0 + rng.uniform(-0.15, 0.15) * ramp)[:, None]
        patch *= gain[..., None]
        if side != size:
            patch = cv2.resize(patch, (size, size), interpolation=cv2.INTER_AREA)
        patch += rng.standard_normal(patch.shape, dtype=np.float32) * np.float32(rng.uniform(1.5, 3.5))
        out.append((np.clip(patch, 0, 255).astype(np.uint8), bool(defective), label))
    return out
