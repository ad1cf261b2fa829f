"""Which frames of a scene the detectors' training sees (``tools.training.data.scene_frames``)."""

from __future__ import annotations

from dataclasses import replace

from tools.training.data import RECIPES, scene_frames


def test_the_hazards_recipe_adds_the_first_seconds_of_fire_and_smoke() -> None:
    onsets = next(source for source in RECIPES["hazards"].sources if source.onsets)
    seed = 49  # fire, then its smoke (seed % 4 == 1)
    scene = onsets.make(seed, onsets.duration_s)
    starts = {event.kind: event.start_s for event in scene.timeline()  # type: ignore[attr-defined]
              if event.kind in ("fire.detected", "smoke.detected")}
    assert set(starts) == {"fire.detected", "smoke.detected"}

    kept = list(scene_frames(onsets, seed))
    every_third = [truth for index, (_, truth) in enumerate(scene.frames())  # type: ignore[attr-defined]
                   if index % onsets.every == seed % onsets.every]
    in_window = [truth for truth in every_third
                 if any(start <= truth.index / scene.fps <= start + onsets.onset_s for start in starts.values())]
    assert 0 < len(kept) == len(in_window) < len(every_third)
    labels = [{label for label, _ in objects} for _, objects in kept]
    assert all(label_set & {"fire", "smoke"} for label_set in labels[1:])  # seen from the window's first frames


def test_a_source_without_onsets_keeps_every_nth_frame() -> None:
    onsets = next(source for source in RECIPES["hazards"].sources if source.onsets)
    plain = replace(onsets, onsets=(), onset_s=0.0, duration_s=4.0)
    kept = list(scene_frames(plain, 48))
    assert len(kept) == len(range(48 % plain.every, 60, plain.every))


def test_one_hazard_scene_in_four_has_a_fire_without_smoke() -> None:
    onsets = next(source for source in RECIPES["hazards"].sources if source.onsets)
    kinds = {seed: {e.kind for e in onsets.make(seed, onsets.duration_s).timeline()  # type: ignore[attr-defined]
                    if e.kind.endswith(".detected")} for seed in range(48, 52)}
    assert kinds == {48: {"smoke.detected"}, 49: {"fire.detected", "smoke.detected"}, 50: {"smoke.detected"},
                     51: {"fire.detected"}}
