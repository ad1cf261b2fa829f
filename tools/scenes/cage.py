"""Laboratory cage seen from above: 1–4 mice, each following a behaviour script.

The whole schedule (who does what, where, for how long) is simulated at construction
from ``np.random.default_rng(seed)``; ``frames()`` only draws it, so ``timeline()`` and
``truths()`` cost nothing and the same seed yields byte-identical frames.

Behaviours: ``moving`` (smooth random walk), ``immobile`` (still, faint breathing),
``rearing`` (standing up: from above the body is shorter and rounder, the head bigger),
``grooming`` (in place, small fast jitter of head and body), ``hyperactive`` (fast,
erratic), ``seizure_like`` (fast large shaking in place). In an ``escape`` scenario one
animal walks over the wall and off the frame for a while and comes back.

Truth: one box per visible animal (body, head and ears; never the tail), labelled
``rearing`` while the animal rears and ``rodent`` otherwise, with a stable track id and
``{"behaviour": state}``. Boxes are clipped to the frame; an animal more than half of
whose box lies outside the frame is left out.

Timeline: ``animal.immobile`` (intervals of at least ``immobile_min_s``),
``animal.rearing``, ``animal.grooming``, ``animal.hyperactive``, ``animal.seizure_like``
for every such interval and ``animal.missing`` while an animal is absent from the truth
or its box centre lies outside the cage zone. An interval covers frames ``[f0, f1)`` and
is reported as ``start_s = f0 / fps``, ``end_s = f1 / fps``.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import cv2
import numpy as np

from tools.scenes.common import FrameTruth, TimelineEvent, TruthObject

WIDTH, HEIGHT, FPS = 640, 360, 15
ANIMAL_LABELS = ("rodent", "rearing")
BEHAVIOURS = ("moving", "immobile", "rearing", "grooming", "hyperactive", "seizure_like")
EVENT_BEHAVIOURS = ("immobile", "rearing", "grooming", "hyperactive", "seizure_like")
# The cage floor (the "cage" zone), as fractions of the frame's width and height.
CAGE_ZONE_NORM = ((0.12, 0.10), (0.88, 0.10), (0.88, 0.90), (0.12, 0.90))

_DT = 1.0 / FPS
_SHIFT = 4
_SCALE = 1 << _SHIFT
_MARGIN = 32.0  # how far from the cage walls an animal's centre stays (outside an escape)
_SIDESTEPS = (0.0, 0.6, -0.6, 1.2, -1.2, 1.8, -1.8)  # headings (radians off course) to go round another animal
_VEERS = _SIDESTEPS[:3]  # a walker's: it turns no faster than this in a frame
_PATIENCE = 8  # frames a walker keeps running into another animal before it turns away

# Pose fields, one float each per frame and animal.
_CX, _CY, _TH, _A, _B, _HD, _HTH, _HA, _HB, _ER, _EL, _EB = range(12)
_NPOSE = 12
_WALK_SPEED, _HYPER_SPEED = 48.0, 185.0  # px/s: the middle of the target speeds each gait draws

# Body shapes, in units of the animal's scale: body semi-axes a (along) and b (across),
# head-centre distance hd ahead of the body centre, head semi-axes ha/hb, ear radius er,
# ear offset el to each side and eb back from the head centre.
_SHAPES = {
    "moving": (20.0, 10.5, 21.0, 9.5, 7.0, 3.8, 6.5, 2.5),
    "immobile": (18.5, 11.5, 19.0, 9.5, 7.0, 3.8, 6.5, 2.5),
    "grooming": (16.5, 12.5, 14.0, 9.0, 7.5, 3.8, 6.5, 2.5),
    "rearing": (13.5, 12.5, 9.0, 11.0, 9.5, 5.0, 8.5, 3.0),
}

# Fur, fur highlight, ears, tail, eyes, nose (BGR). Night frames are a grey infrared
# rendering of the same picture.
_STRAINS = {
    "albino": ((226, 230, 234), (246, 248, 250), (160, 160, 222), (165, 168, 215), (50, 40, 165), (165, 155, 232)),
    "black": ((46, 42, 40), (78, 72, 70), (95, 95, 125), (100, 102, 122), (12, 12, 12), (110, 110, 150)),
    "agouti": ((58, 90, 120), (92, 125, 156), (110, 125, 172), (118, 128, 160), (12, 12, 12), (130, 130, 182)),
}

_DURATIONS = {  # seconds (low, high)
    "moving": (2.0, 5.0),
    "immobile": (10.0, 30.0),
    "rearing": (2.0, 6.0),
    "grooming": (2.0, 6.0),
    "hyperactive": (4.0, 10.0),
    "seizure_like": (3.0, 8.0),
}


def _wrap(angle: float) -> float:
    return (angle + math.pi) % (2.0 * math.pi) - math.pi


def cage_zone(width: int = WIDTH, height: int = HEIGHT) -> tuple[tuple[int, int], ...]:
    """The cage zone polygon in pixels."""
    return tuple((int(round(x * width)), int(round(y * height))) for x, y in CAGE_ZONE_NORM)


class _Animal:
    """Simulation state of one mouse."""

    def __init__(self, rng: np.random.Generator, index: int, x: float, y: float, strain: str) -> None:
        self.index = index
        self.x, self.y = x, y
        self.th = float(rng.uniform(-math.pi, math.pi))
        self.v = float(rng.uniform(10.0, 40.0))
        self.vt = self.v
        self.om = 0.0
        self.retarget = 0
        self.blocked = 0  # frames in a row it could not step on
        self.scale = float(rng.uniform(0.88, 1.08))
        self.strain = strain
        self.phase = rng.uniform(0.0, 2.0 * math.pi, size=6)
        self.breath_hz = float(rng.uniform(2.5, 3.5))
        self.queue: list[tuple[str, int]] = []
        self.state = "moving"
        self.left = 0
        self.age = 0  # frames since the current segment started
        self.base = (x, y, self.th)
        self.escape: dict[str, Any] | None = None


class CageScene:
    """A laboratory cage seen from above with ``animals`` mice (1–4; chosen by the seed
    when ``None``), at night (grey infrared) or by day (colour), optionally with one
    animal escaping for a while."""

    width = WIDTH
    height = HEIGHT
    fps = FPS
    labels = ANIMAL_LABELS

    def __init__(
        self,
        seed: int,
        duration_s: float = 60.0,
        animals: int | None = None,
        night: bool | None = None,
        escape: bool | None = None,
        immobile_min_s: float = 10.0,
    ) -> None:
        rng = np.random.default_rng(seed)
        # Every random choice is drawn whether or not it is overridden, so that the
        # overrides do not shift the rest of the scene's draws.
        drawn_animals = int(rng.integers(1, 5))
        drawn_night = bool(rng.random() < 0.4)
        drawn_escape = bool(rng.random() < 0.5)
        self.seed = seed
        self.name = "cage"
        self.duration_s = float(duration_s)
        self.animal_count = drawn_animals if animals is None else int(animals)
        if not 1 <= self.animal_count <= 4:
            raise ValueError("animals must be between 1 and 4")
        self.night = drawn_night if night is None else bool(night)
        self.escape = drawn_escape if escape is None else bool(escape)
        self.immobile_min_s = float(immobile_min_s)
        self.frame_count = int(round(self.duration_s * FPS))
        self.zones: dict[str, tuple[tuple[int, int], ...]] = {"cage": cage_zone()}
        self._zone = np.array(self.zones["cage"], dtype=np.float32)
        xs = [p[0] for p in self.zones["cage"]]
        ys = [p[1] for p in self.zones["cage"]]
        self._cage_box = (min(xs), min(ys), max(xs), max(ys))

        self._background_seed = int(rng.integers(0, 2**31))
        self._background: np.ndarray | None = None
        self._animals = self._make_animals(rng)
        self._simulate(rng)
        self._render_seed = int(rng.integers(0, 2**31))
        self._make_truth()
        self._events = self._make_timeline()

    # ------------------------------------------------------------------ public API

    def timeline(self) -> list[TimelineEvent]:
        return list(self._events)

    def truths(self) -> Iterator[FrameTruth]:
        """The per-frame truth without drawing anything (what ``frames()`` yields)."""
        for index in range(self.frame_count):
            yield self._truth(index)

    def behaviour(self, track_id: int) -> list[str]:
        """The scripted behaviour of one animal for every frame."""
        return [BEHAVIOURS[code] for code in self._state[:, track_id]]

    def frames(self) -> Iterator[tuple[np.ndarray, FrameTruth]]:
        if self._background is None:
            self._background = self._make_background(np.random.default_rng(self._background_seed))
        rng = np.random.default_rng(self._render_seed)
        pad = 24
        if self.night:
            noise = rng.integers(0, 2 * 11 + 1, size=(HEIGHT + pad, WIDTH + pad), dtype=np.uint8)
            offset = np.full((HEIGHT, WIDTH), 11, np.uint8)
            lut = np.clip(np.arange(256) * 0.62 + 44.0, 0, 255).astype(np.uint8)
            yy, xx = np.mgrid[0:HEIGHT, 0:WIDTH].astype(np.float32)
            r2 = ((xx - WIDTH / 2) / (WIDTH / 2)) ** 2 + ((yy - HEIGHT / 2) / (HEIGHT / 2)) ** 2
            vignette = np.clip(255.0 * (1.0 - 0.22 * r2), 0, 255).astype(np.uint8)
        else:
            noise = rng.integers(0, 2 * 4 + 1, size=(HEIGHT + pad, WIDTH + pad, 3), dtype=np.uint8)
            offset = np.full((HEIGHT, WIDTH, 3), 4, np.uint8)
        tails = [self._initial_tail(k) for k in range(self.animal_count)]
        for index in range(self.frame_count):
            image = self._background.copy()
            poses = self._pose[index]
            for k in range(self.animal_count):
                self._advance_tail(tails[k], poses[k])
            for k in range(self.animal_count):
                self._draw_shadow(image, poses[k])
            for k in range(self.animal_count):
                self._draw_animal(image, poses[k], tails[k], _STRAINS[self._animals[k].strain])
            dy, dx = (int(v) for v in rng.integers(0, pad, size=2))
            if self.night:
                grey = cv2.LUT(cv2.cvtColor(image, cv2.COLOR_BGR2GRAY), lut)
                grey = cv2.multiply(grey, vignette, scale=1.0 / 255.0)
                grey = cv2.subtract(cv2.add(grey, noise[dy:dy + HEIGHT, dx:dx + WIDTH]), offset)
                image = cv2.merge((grey, grey, grey))
            else:
                image = cv2.subtract(cv2.add(image, noise[dy:dy + HEIGHT, dx:dx + WIDTH]), offset)
            yield image, self._truth(index)

    # ------------------------------------------------------------------ scripting

    def _make_animals(self, rng: np.random.Generator) -> list[_Animal]:
        n = self.animal_count
        x1, y1, x2, y2 = self._cage_box
        cage_strain = str(rng.choice(list(_STRAINS)))
        mixed = bool(rng.random() < 0.3)
        positions: list[tuple[float, float]] = []
        for _ in range(n):
            for _attempt in range(200):
                x = float(rng.uniform(x1 + 45, x2 - 45))
                y = float(rng.uniform(y1 + 45, y2 - 45))
                if all(math.hypot(x - px, y - py) > 90 for px, py in positions):
                    break
            positions.append((x, y))
        animals = []
        for k, (x, y) in enumerate(positions):
            strain = str(rng.choice(list(_STRAINS))) if mixed else cage_strain
            animals.append(_Animal(rng, k, x, y, strain))

        required = list(EVENT_BEHAVIOURS)
        rng.shuffle(required)
        escaper = int(rng.integers(0, n)) if self.escape else -1
        self.escaper = escaper
        horizon = self.duration_s + 40.0
        for k, animal in enumerate(animals):
            # A long immobility goes first, so that the end of the scene does not cut it
            # below the alarm; an animal carrying many behaviours gets shorter pauses.
            mine = sorted(required[k::n], key=lambda behaviour: behaviour != "immobile")
            busy = len(mine) >= 3
            queue: list[tuple[str, float]] = [("moving", rng.uniform(1.0, 3.0))]
            if k == escaper:
                if rng.random() < 0.5 and not busy:
                    queue += [(str(rng.choice(["rearing", "grooming"])), rng.uniform(2.0, 6.0)),
                              ("moving", rng.uniform(1.5, 3.0))]
                queue.append(("escape", 0.0))
                queue.append(("moving", rng.uniform(2.0, 4.0)))
            for behaviour in mine:
                low, high = (10.0, 16.0) if busy and behaviour == "immobile" else _DURATIONS[behaviour]
                gap = (1.5, 3.0) if busy else _DURATIONS["moving"]
                queue += [(behaviour, rng.uniform(low, high)), ("moving", rng.uniform(*gap))]
            planned = sum(d for _, d in queue) + (20.0 if k == escaper else 0.0)
            while planned < horizon:
                pick = str(rng.choice(["rearing", "grooming", "pause", "moving", "hyperactive", "immobile"],
                                      p=[0.25, 0.25, 0.2, 0.15, 0.05, 0.1]))
                if pick == "pause":  # a short stop, below any immobility alarm
                    behaviour, seconds = "immobile", rng.uniform(3.0, 7.0)
                else:
                    behaviour, seconds = pick, rng.uniform(*_DURATIONS[pick])
                queue += [(behaviour, seconds), ("moving", rng.uniform(*_DURATIONS["moving"]))]
                planned += seconds + queue[-1][1]
            animal.queue = [(state, max(1, int(round(seconds * FPS)))) for state, seconds in queue]
            animal.queue.reverse()  # pop() from the end
        return animals

    def _simulate(self, rng: np.random.Generator) -> None:
        n, frames = self.animal_count, self.frame_count
        self._pose = np.zeros((frames, n, _NPOSE), np.float64)
        self._state = np.zeros((frames, n), np.int8)
        for index in range(frames):
            for animal in self._animals:
                if animal.escape is None and animal.left <= 0:
                    self._next_segment(rng, animal)
                state = self._step(rng, animal)
                self._pose[index, animal.index] = self._make_pose(rng, animal, state)
                self._state[index, animal.index] = BEHAVIOURS.index(state)
                animal.age += 1

    def _next_segment(self, rng: np.random.Generator, animal: _Animal) -> None:
        state, frames = animal.queue.pop() if animal.queue else ("moving", int(5 * FPS))
        animal.age = 0
        animal.base = (animal.x, animal.y, animal.th)
        if state == "escape":
            x1, y1, x2, y2 = self._cage_box
            side = -1 if animal.x < WIDTH / 2 else 1
            out_x = -75.0 if side < 0 else WIDTH + 75.0
            target_y = float(np.clip(animal.y + rng.uniform(-40, 40), y1 + 40, y2 - 40))
            back_x = x1 + rng.uniform(60, 120) if side < 0 else x2 - rng.uniform(60, 120)
            back_y = float(rng.uniform(y1 + 50, y2 - 50))
            animal.escape = {
                "phase": "out",
                "target": (out_x, target_y),
                "away": int(round(rng.uniform(5.0, 10.0) * FPS)),
                "back": (float(back_x), back_y),
                "entries": rng.uniform(y1 + 50, y2 - 50, size=8).tolist(),
                "stuck": 0,
            }
            animal.state, animal.left = "moving", 1
        else:
            if (state == "hyperactive") != (animal.state == "hyperactive"):
                # a new gait takes its typical speed at once, not at the old gait's next change of pace
                animal.vt = _HYPER_SPEED if state == "hyperactive" else _WALK_SPEED
            animal.state, animal.left = state, frames

    def _step(self, rng: np.random.Generator, animal: _Animal) -> str:
        """Moves one animal by one frame; returns its behaviour in that frame."""
        if animal.escape is not None:
            self._step_escape(animal)
            return "moving"
        animal.left -= 1
        if animal.state in ("moving", "hyperactive"):
            self._walk(rng, animal, hyper=animal.state == "hyperactive")
        else:
            animal.v, animal.om, animal.blocked = 0.0, 0.0, 0
        return animal.state

    def _walk(self, rng: np.random.Generator, animal: _Animal, hyper: bool) -> None:
        x1, y1, x2, y2 = self._cage_box
        lo_x, lo_y, hi_x, hi_y = x1 + _MARGIN, y1 + _MARGIN, x2 - _MARGIN, y2 - _MARGIN
        animal.retarget -= 1
        if animal.retarget <= 0:
            if hyper:
                animal.vt, animal.retarget = float(rng.uniform(140.0, 230.0)), int(rng.integers(3, 10))
            else:
                animal.vt, animal.retarget = float(rng.uniform(12.0, 85.0)), int(rng.integers(8, 30))
        animal.v += (0.35 if hyper else 0.15) * (animal.vt - animal.v)
        sigma, limit = (2.2, 7.0) if hyper else (0.45, 2.5)
        animal.om = min(max(0.85 * animal.om + float(rng.normal(0.0, sigma)), -limit), limit)
        if hyper and rng.random() < 0.08:
            animal.th += float(rng.normal(0.0, 1.6))
        steer = 0.0
        look = max(30.0, animal.v * 0.5)
        qx, qy = animal.x + look * math.cos(animal.th), animal.y + look * math.sin(animal.th)
        if not (lo_x <= qx <= hi_x and lo_y <= qy <= hi_y):
            desired = math.atan2((y1 + y2) / 2 - animal.y, (x1 + x2) / 2 - animal.x)
            steer += (6.0 if hyper else 3.0) * _wrap(desired - animal.th)
        for other in self._neighbours(animal):
            d = math.hypot(animal.x - other.x, animal.y - other.y)
            if d < 75.0:
                away = math.atan2(animal.y - other.y, animal.x - other.x)
                steer += 2.5 * _wrap(away - animal.th) * (75.0 - d) / 75.0
        animal.th = _wrap(animal.th + (animal.om + steer) * _DT)
        # Kept inside the walls; one just back from an escape is not pulled in at once. One that would walk
        # into another animal waits; if it keeps running into it, it veers off or turns away from it on
        # the spot: a walker or runner does not stand pressed against another for long.
        turns = _VEERS if animal.blocked >= _PATIENCE else _VEERS[:1]
        for turn in turns:
            heading = animal.th + turn
            x = animal.x + animal.v * math.cos(heading) * _DT
            y = animal.y + animal.v * math.sin(heading) * _DT
            x = min(max(x, min(lo_x, animal.x)), max(hi_x, animal.x))
            y = min(max(y, min(lo_y, animal.y)), max(hi_y, animal.y))
            if not self._blocked(animal, x, y):
                animal.x, animal.y, animal.th, animal.blocked = x, y, _wrap(heading), 0
                return
        animal.blocked += 1
        if animal.blocked > _PATIENCE:
            nearest = min(self._neighbours(animal), key=lambda o: math.hypot(animal.x - o.x, animal.y - o.y))
            away = _wrap(math.atan2(animal.y - nearest.y, animal.x - nearest.x) - animal.th)
            animal.th = _wrap(animal.th + math.copysign(min(abs(away), _VEERS[1]), away))

    def _inside(self, animal: _Animal) -> bool:
        x1, y1, x2, y2 = self._cage_box
        return x1 <= animal.x <= x2 and y1 <= animal.y <= y2

    def _neighbours(self, animal: _Animal) -> list[_Animal]:
        return [other for other in self._animals if other is not animal and self._inside(other)]

    def _blocked(self, animal: _Animal, x: float, y: float) -> bool:
        """Whether a step to (x, y) would walk this animal into another one."""
        for other in self._neighbours(animal):
            d = math.hypot(x - other.x, y - other.y)
            if d < 44.0 * max(animal.scale, other.scale) and d < math.hypot(animal.x - other.x, animal.y - other.y):
                return True
        return False

    def _step_escape(self, animal: _Animal) -> None:
        escape = animal.escape
        assert escape is not None
        if escape["phase"] == "away":
            escape["away"] -= 1
            if escape["away"] <= 0:
                # Come back where no other animal sits.
                escape["phase"] = "back"
                bx = escape["back"][0]
                others = self._neighbours(animal)
                by = max(escape["entries"], key=lambda y: min((math.hypot(bx - o.x, y - o.y) for o in others),
                                                                default=0.0))
                escape["back"] = (bx, by)
                animal.th = math.atan2(by - animal.y, bx - animal.x)
            return
        tx, ty = escape["target"] if escape["phase"] == "out" else escape["back"]
        dist = math.hypot(tx - animal.x, ty - animal.y)
        # Head for the target, around the other animals.
        gx, gy = (tx - animal.x) / max(dist, 1e-6), (ty - animal.y) / max(dist, 1e-6)
        x1, y1, x2, y2 = self._cage_box
        # Others push it aside only well inside the cage, so it crosses the wall once.
        clear = x1 + 18.0 <= animal.x <= x2 - 18.0
        for other in self._neighbours(animal) if clear else []:
            d = math.hypot(animal.x - other.x, animal.y - other.y)
            if 1e-6 < d < 80.0:
                w = 2.0 * (80.0 - d) / 80.0
                ux, uy = (animal.x - other.x) / d, (animal.y - other.y) / d
                # Around the other animal on the side of the cage's middle, away from the walls.
                side = 1.0 if (-uy * ((x1 + x2) / 2 - animal.x) + ux * ((y1 + y2) / 2 - animal.y)) >= 0 else -1.0
                gx += w * (ux - side * uy)
                gy += w * (uy + side * ux)
        desired = math.atan2(gy, gx)
        animal.th = _wrap(animal.th + min(max(_wrap(desired - animal.th), -5.0 * _DT), 5.0 * _DT))
        animal.v += 0.2 * (85.0 - animal.v)
        step = min(animal.v * _DT, dist)
        edge = 12.0
        back_in = (escape["phase"] == "back" and x1 + edge <= animal.x <= x2 - edge
                   and y1 + edge <= animal.y <= y2 - edge)
        for turn in _SIDESTEPS:
            heading = animal.th + turn
            x, y = animal.x + step * math.cos(heading), animal.y + step * math.sin(heading)
            y = min(max(y, y1 + 30.0), y2 - 30.0)  # it leaves and comes back through a side wall
            if back_in:  # once back in the cage it does not step out again
                x, y = min(max(x, x1 + edge), x2 - edge), min(max(y, y1 + edge), y2 - edge)
            if not self._blocked(animal, x, y):
                animal.x, animal.y, animal.th = x, y, _wrap(heading)
                break
        else:
            escape["stuck"] += 1
        home = _MARGIN + 20.0
        if escape["phase"] == "out" and math.hypot(tx - animal.x, ty - animal.y) < 4.0:
            escape["phase"] = "away"
        elif back_in and (x1 + home <= animal.x <= x2 - home and y1 + home <= animal.y <= y2 - home
                          or escape["stuck"] > 2 * FPS):
            animal.escape = None
            animal.left = 0

    def _make_pose(self, rng: np.random.Generator, animal: _Animal, state: str) -> list[float]:
        s = animal.scale
        t = animal.age * _DT
        ph = animal.phase
        shape = _SHAPES.get(state, _SHAPES["moving"])
        a, b, hd, ha, hb, er, el, eb = (v * s for v in shape)
        bx, by, bth = animal.base
        cx, cy, th = animal.x, animal.y, animal.th
        hth_offset = 0.0
        if state in ("moving", "hyperactive"):
            stretch = 1.0 + 0.08 * min(animal.v / 200.0, 1.0)
            a, hd = a * stretch, hd * stretch
            hth_offset = 0.12 * math.sin(2 * math.pi * 1.3 * t + ph[0])
        elif state == "immobile":
            cx, cy, th = bx, by, bth
            b *= 1.0 + 0.015 * math.sin(2 * math.pi * animal.breath_hz * t + ph[1])
        elif state == "rearing":
            cx, cy, th = bx, by, bth
            hth_offset = 0.12 * math.sin(2 * math.pi * 0.7 * t + ph[2])
        elif state == "grooming":
            cx = bx + 0.9 * math.sin(2 * math.pi * 4.9 * t + ph[0])
            cy = by + 0.9 * math.sin(2 * math.pi * 5.7 * t + ph[1])
            th = bth + 0.06 * math.sin(2 * math.pi * 3.1 * t + ph[2])
            hth_offset = 0.35 * math.sin(2 * math.pi * 4.3 * t + ph[3])
            hd += 1.6 * s * math.sin(2 * math.pi * 6.1 * t + ph[4])
        elif state == "seizure_like":
            amp = 7.0 * s
            cx = bx + amp * math.sin(2 * math.pi * 6.2 * t + ph[0]) + float(rng.normal(0.0, 1.2))
            cy = by + amp * math.sin(2 * math.pi * 5.4 * t + ph[1]) + float(rng.normal(0.0, 1.2))
            th = bth + 0.35 * math.sin(2 * math.pi * 6.8 * t + ph[2])
            hth_offset = 0.3 * math.sin(2 * math.pi * 7.1 * t + ph[3])
        return [cx, cy, th, a, b, hd, th + hth_offset, ha, hb, er, el, eb]

    # ------------------------------------------------------------------ truth

    def _make_truth(self) -> None:
        p = self._pose
        cos, sin = np.cos(p[..., _TH]), np.sin(p[..., _TH])
        hcos, hsin = np.cos(p[..., _HTH]), np.sin(p[..., _HTH])

        def extent(a: np.ndarray, b: np.ndarray, c: np.ndarray, s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            return np.sqrt((a * c) ** 2 + (b * s) ** 2), np.sqrt((a * s) ** 2 + (b * c) ** 2)

        parts = []
        bex, bey = extent(p[..., _A], p[..., _B], cos, sin)
        parts.append((p[..., _CX], p[..., _CY], bex, bey))
        hx = p[..., _CX] + p[..., _HD] * hcos
        hy = p[..., _CY] + p[..., _HD] * hsin
        hex_, hey = extent(p[..., _HA], p[..., _HB], hcos, hsin)
        parts.append((hx, hy, hex_, hey))
        nose_r = 2.2 * np.ones_like(hx)
        parts.append((hx + 0.85 * p[..., _HA] * hcos, hy + 0.85 * p[..., _HA] * hsin, nose_r, nose_r))
        for side in (-1.0, 1.0):
            ex = hx - p[..., _EB] * hcos - side * p[..., _EL] * hsin
            ey = hy - p[..., _EB] * hsin + side * p[..., _EL] * hcos
            parts.append((ex, ey, p[..., _ER], p[..., _ER]))
        x1 = np.min([px - rx for px, _, rx, _ in parts], axis=0)
        x2 = np.max([px + rx for px, _, rx, _ in parts], axis=0)
        y1 = np.min([py - ry for _, py, _, ry in parts], axis=0)
        y2 = np.max([py + ry for _, py, _, ry in parts], axis=0)
        full = np.stack([x1, y1, x2, y2], axis=-1)
        clipped = full.copy()
        clipped[..., [0, 2]] = np.clip(full[..., [0, 2]], 0.0, WIDTH)
        clipped[..., [1, 3]] = np.clip(full[..., [1, 3]], 0.0, HEIGHT)
        area = (x2 - x1) * (y2 - y1)
        seen = np.clip(clipped[..., 2] - clipped[..., 0], 0, None) * np.clip(clipped[..., 3] - clipped[..., 1], 0, None)
        self._boxes = clipped
        self._visible = seen >= 0.5 * area
        centre_x = (clipped[..., 0] + clipped[..., 2]) / 2
        centre_y = (clipped[..., 1] + clipped[..., 3]) / 2
        inside = np.zeros_like(self._visible)
        for index, k in zip(*np.nonzero(self._visible)):
            point = (float(centre_x[index, k]), float(centre_y[index, k]))
            inside[index, k] = cv2.pointPolygonTest(self._zone, point, False) >= 0
        self._in_zone = inside

    def _truth(self, index: int) -> FrameTruth:
        objects = []
        for k in range(self.animal_count):
            if not self._visible[index, k]:
                continue
            state = BEHAVIOURS[self._state[index, k]]
            x1, y1, x2, y2 = (float(v) for v in self._boxes[index, k])
            label = "rearing" if state == "rearing" else "rodent"
            objects.append(TruthObject(k, label, (x1, y1, x2, y2), {"behaviour": state}))
        return FrameTruth(index, index / FPS, objects)

    def _make_timeline(self) -> list[TimelineEvent]:
        events: list[TimelineEvent] = []
        n = self.animal_count

        def runs(mask: np.ndarray) -> list[tuple[int, int]]:
            padded = np.concatenate([[False], mask, [False]]).astype(np.int8)
            edges = np.flatnonzero(np.diff(padded))
            return list(zip(edges[0::2].tolist(), edges[1::2].tolist()))

        for k in range(n):
            for behaviour in EVENT_BEHAVIOURS:
                code = BEHAVIOURS.index(behaviour)
                for f0, f1 in runs(self._state[:, k] == code):
                    if behaviour == "immobile" and (f1 - f0) / FPS < self.immobile_min_s - 1e-9:
                        continue
                    events.append(TimelineEvent(f"animal.{behaviour}", k, f0 / FPS, f1 / FPS, {}))
            for f0, f1 in runs(~self._in_zone[:, k]):
                events.append(TimelineEvent("animal.missing", k, f0 / FPS, f1 / FPS, {"expected": n, "seen": n - 1}))
        events.sort(key=lambda e: (e.start_s, e.track_id, e.kind))
        return events

    # ------------------------------------------------------------------ drawing

    def _make_background(self, rng: np.random.Generator) -> np.ndarray:
        x1, y1, x2, y2 = self._cage_box
        # The bench around the cage: brushed steel with a soft light fall-off.
        bench = np.array([118, 122, 126], np.float32)
        low = cv2.resize(rng.normal(0.0, 1.0, (9, 16)).astype(np.float32), (WIDTH, HEIGHT),
                         interpolation=cv2.INTER_CUBIC)
        streaks = cv2.blur(rng.normal(0.0, 1.0, (HEIGHT, WIDTH)).astype(np.float32), (41, 1))
        img = bench[None, None, :] + (6.0 * low + 10.0 * streaks)[..., None]
        image = np.clip(img, 0, 255).astype(np.uint8)

        # Cage: outer rim (translucent plastic), sloping walls, then the floor.
        rim = 16
        outer = np.array([[x1 - rim, y1 - rim], [x2 + rim, y1 - rim], [x2 + rim, y2 + rim], [x1 - rim, y2 + rim]],
                         np.int32)
        cv2.fillPoly(image, [outer], (196, 202, 200), cv2.LINE_AA)
        floor = np.array(self.zones["cage"], np.int32)
        for i in range(4):
            j = (i + 1) % 4
            quad = np.array([outer[i], outer[j], floor[j], floor[i]], np.int32)
            shade = (172, 180, 178) if i in (0, 3) else (150, 158, 158)
            cv2.fillPoly(image, [quad], shade, cv2.LINE_AA)
        cv2.polylines(image, [outer], True, (232, 236, 236), 2, cv2.LINE_AA)
        cv2.polylines(image, [outer + np.array([3, 3])], True, (140, 146, 146), 1, cv2.LINE_AA)

        # Bedding: aspen chips over a mottled base.
        fw, fh = x2 - x1, y2 - y1
        base = np.array([122, 168, 204], np.float32)
        mottle = cv2.resize(rng.normal(0.0, 1.0, (8, 14)).astype(np.float32), (fw, fh), interpolation=cv2.INTER_CUBIC)
        grain = cv2.GaussianBlur(rng.normal(0.0, 1.0, (fh, fw)).astype(np.float32), (0, 0), 1.2)
        bedding = base[None, None, :] * (1.0 + 0.06 * mottle + 0.10 * grain)[..., None]
        bed = np.clip(bedding, 0, 255).astype(np.uint8)
        count = int(fw * fh / 55)
        cx = rng.uniform(0, fw, count) * _SCALE
        cy = rng.uniform(0, fh, count) * _SCALE
        ax = rng.uniform(2.0, 5.5, count) * _SCALE
        ay = rng.uniform(0.8, 2.0, count) * _SCALE
        ang = rng.uniform(0, 180, count)
        tone = rng.uniform(0.72, 1.18, count)
        colours = np.minimum(255.0, tone[:, None] * np.array([118.0, 165.0, 206.0])).tolist()
        chips = zip(cx.astype(int).tolist(), cy.astype(int).tolist(), ax.astype(int).tolist(),
                    ay.astype(int).tolist(), ang.tolist(), colours)
        for x, y, a, b, angle, colour in chips:
            cv2.ellipse(bed, (x, y), (a, b), angle, 0, 360, colour, -1, cv2.LINE_AA, _SHIFT)
        bed = cv2.GaussianBlur(bed, (3, 3), 0.6)
        self._draw_nesting(rng, bed)
        image[y1:y2, x1:x2] = bed

        # A soft overhead light: brighter in the middle of the cage.
        yy, xx = np.mgrid[0:HEIGHT, 0:WIDTH].astype(np.float32)
        light = 1.06 - 0.16 * (((xx - WIDTH * 0.45) / WIDTH) ** 2 + ((yy - HEIGHT * 0.4) / HEIGHT) ** 2) * 2.0
        return np.clip(image.astype(np.float32) * light[..., None], 0, 255).astype(np.uint8)

    def _draw_nesting(self, rng: np.random.Generator, bed: np.ndarray) -> None:
        fh, fw = bed.shape[:2]
        # Shredded paper nest in one corner.
        corner = int(rng.integers(0, 4))
        nx = 55 if corner in (0, 3) else fw - 55
        ny = 50 if corner in (0, 1) else fh - 50
        nest = bed.copy()
        for _ in range(45):
            px, py = nx + rng.normal(0, 16), ny + rng.normal(0, 12)
            axes = (int(rng.uniform(3, 9) * _SCALE), int(rng.uniform(1.5, 3.5) * _SCALE))
            grey = int(rng.uniform(215, 250))
            cv2.ellipse(nest, (int(px * _SCALE), int(py * _SCALE)), axes, float(rng.uniform(0, 180)), 0, 360,
                        (grey, grey, grey - 4), -1, cv2.LINE_AA, _SHIFT)
        bed[:] = cv2.GaussianBlur(nest, (3, 3), 0.8)
        # A translucent red shelter somewhere else.
        sx = int(rng.uniform(70, fw - 110))
        sy = int(rng.uniform(50, fh - 100))
        if abs(sx - nx) < 90 and abs(sy - ny) < 80:
            sx = fw - sx - 60
        w, h = int(rng.uniform(55, 70)), int(rng.uniform(40, 52))
        roi = bed[sy:sy + h, sx:sx + w]
        tint = np.array([60, 50, 200], np.float32)
        roi[:] = np.clip(roi.astype(np.float32) * 0.55 + tint * 0.45, 0, 255).astype(np.uint8)
        cv2.rectangle(bed, (sx, sy), (sx + w - 1, sy + h - 1), (50, 40, 150), 2, cv2.LINE_AA)
        # A few food pellets.
        px0, py0 = rng.uniform(80, fw - 80), rng.uniform(60, fh - 60)
        for _ in range(int(rng.integers(3, 7))):
            px, py = px0 + rng.normal(0, 10), py0 + rng.normal(0, 8)
            cv2.ellipse(bed, (int(px * _SCALE), int(py * _SCALE)), (int(6 * _SCALE), int(3.5 * _SCALE)),
                        float(rng.uniform(0, 180)), 0, 360, (70, 105, 135), -1, cv2.LINE_AA, _SHIFT)
            cv2.ellipse(bed, (int((px - 1) * _SCALE), int((py - 1) * _SCALE)), (int(3 * _SCALE), int(1.5 * _SCALE)),
                        float(rng.uniform(0, 180)), 0, 360, (100, 135, 165), -1, cv2.LINE_AA, _SHIFT)

    def _initial_tail(self, k: int) -> np.ndarray:
        pose = self._pose[0, k]
        s = self._animals[k].scale
        segments, length = 14, 3.3 * s
        back = np.array([-math.cos(pose[_TH]), -math.sin(pose[_TH])])
        base = np.array([pose[_CX], pose[_CY]]) + back * pose[_A] * 0.9
        bend = np.array([-back[1], back[0]])
        steps = np.arange(segments + 1)[:, None]
        chain = base + back * length * steps + bend * 0.04 * (steps * length) ** 1.3 / 3.0
        return np.concatenate([chain, np.full((segments + 1, 1), length)], axis=1)

    @staticmethod
    def _advance_tail(chain: np.ndarray, pose: np.ndarray) -> None:
        """Moves the tail base under the body and lets every segment follow the one
        ahead of it: the tail trails along the path the body took."""
        c, s = math.cos(pose[_TH]), math.sin(pose[_TH])
        chain[0, 0] = pose[_CX] - c * pose[_A] * 0.9
        chain[0, 1] = pose[_CY] - s * pose[_A] * 0.9
        length = chain[0, 2]
        for j in range(1, len(chain)):
            dx, dy = chain[j, 0] - chain[j - 1, 0], chain[j, 1] - chain[j - 1, 1]
            d = math.hypot(dx, dy)
            if d < 1e-6:
                dx, dy, d = -c, -s, 1.0
            chain[j, 0] = chain[j - 1, 0] + dx / d * length
            chain[j, 1] = chain[j - 1, 1] + dy / d * length

    @staticmethod
    def _draw_shadow(image: np.ndarray, pose: np.ndarray) -> None:
        cx, cy = pose[_CX] + 2.0, pose[_CY] + 3.0
        reach = pose[_A] + pose[_HD] + 12.0
        x0, y0 = max(int(cx - reach), 0), max(int(cy - reach), 0)
        x1, y1 = min(int(cx + reach) + 1, WIDTH), min(int(cy + reach) + 1, HEIGHT)
        if x1 - x0 < 2 or y1 - y0 < 2:
            return
        mask = np.zeros((y1 - y0, x1 - x0), np.uint8)
        ang = math.degrees(pose[_TH])
        cv2.ellipse(mask, (int((cx - x0) * _SCALE), int((cy - y0) * _SCALE)),
                    (int((pose[_A] + 3) * _SCALE), int((pose[_B] + 3) * _SCALE)), ang, 0, 360, 110, -1,
                    cv2.LINE_AA, _SHIFT)
        hx = cx + pose[_HD] * math.cos(pose[_HTH]) - x0
        hy = cy + pose[_HD] * math.sin(pose[_HTH]) - y0
        cv2.ellipse(mask, (int(hx * _SCALE), int(hy * _SCALE)), (int((pose[_HA] + 2) * _SCALE),
                    int((pose[_HB] + 2) * _SCALE)), math.degrees(pose[_HTH]), 0, 360, 110, -1, cv2.LINE_AA, _SHIFT)
        mask = cv2.GaussianBlur(mask, (7, 7), 2.0)
        roi = image[y0:y1, x0:x1]
        inverse = cv2.merge([255 - mask] * 3)
        roi[:] = cv2.multiply(roi, inverse, scale=1.0 / 255.0)

    @staticmethod
    def _draw_animal(image: np.ndarray, pose: np.ndarray, chain: np.ndarray, colours: tuple) -> None:
        fur, highlight, ears, tail, eyes, nose = colours
        cx, cy, th = pose[_CX], pose[_CY], pose[_TH]
        if not (-90 < cx < WIDTH + 90 and -90 < cy < HEIGHT + 90):
            return
        aa = cv2.LINE_AA

        def pt(x: float, y: float) -> tuple[int, int]:
            return int(round(x * _SCALE)), int(round(y * _SCALE))

        def ellipse(x: float, y: float, a: float, b: float, angle: float, colour: tuple) -> None:
            cv2.ellipse(image, pt(x, y), (max(1, int(a * _SCALE)), max(1, int(b * _SCALE))), math.degrees(angle),
                        0, 360, colour, -1, aa, _SHIFT)

        points = np.round(chain[:, :2] * _SCALE).astype(np.int32)
        thirds = len(points) // 3
        cv2.polylines(image, [points[: thirds + 1]], False, tail, 3, aa, _SHIFT)
        cv2.polylines(image, [points[thirds: 2 * thirds + 1]], False, tail, 2, aa, _SHIFT)
        cv2.polylines(image, [points[2 * thirds:]], False, tail, 1, aa, _SHIFT)

        c, s = math.cos(th), math.sin(th)
        hth = pose[_HTH]
        hc, hs = math.cos(hth), math.sin(hth)
        hx, hy = cx + pose[_HD] * hc, cy + pose[_HD] * hs
        # Ears behind the head, then body, head, fur highlight, eyes and nose.
        for side in (-1.0, 1.0):
            ex = hx - pose[_EB] * hc - side * pose[_EL] * hs
            ey = hy - pose[_EB] * hs + side * pose[_EL] * hc
            cv2.circle(image, pt(ex, ey), int(pose[_ER] * _SCALE), fur, -1, aa, _SHIFT)
            cv2.circle(image, pt(ex + 0.6 * hc, ey + 0.6 * hs), int(pose[_ER] * 0.62 * _SCALE), ears, -1, aa, _SHIFT)
        ellipse(cx, cy, pose[_A], pose[_B], th, fur)
        ellipse(hx, hy, pose[_HA], pose[_HB], hth, fur)
        ellipse(cx + 0.15 * pose[_A] * c, cy + 0.15 * pose[_A] * s, pose[_A] * 0.62, pose[_B] * 0.45, th, highlight)
        ellipse(hx - 1.0 * hc, hy - 1.0 * hs, pose[_HA] * 0.5, pose[_HB] * 0.4, hth, highlight)
        tip = 0.85 * pose[_HA]
        cv2.circle(image, pt(hx + tip * hc, hy + tip * hs), int(2.2 * _SCALE), nose, -1, aa, _SHIFT)
        for side in (-1.0, 1.0):
            ex = hx + 2.5 * hc - side * pose[_HB] * 0.62 * hs
            ey = hy + 2.5 * hs + side * pose[_HB] * 0.62 * hc
            cv2.circle(image, pt(ex, ey), int(1.6 * _SCALE), eyes, -1, aa, _SHIFT)
