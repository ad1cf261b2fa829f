from __future__ import annotations

from appliance.analytics.lifecycle import EpisodeTracker, Timing


def run(tracker: EpisodeTracker, frames: list[tuple[float, bool]]) -> list[tuple[str, float, float]]:
    out = []
    for t, active in frames:
        for tr in tracker.step(t, {"k": {}} if active else {}):
            out.append((tr.phase, tr.episode.began, tr.at))
    return out


def frames(seconds: float, active, fps: float = 5) -> list[tuple[float, bool]]:
    return [(i / fps, active(i / fps)) for i in range(int(seconds * fps))]


def test_start_waits_for_the_grace_time_and_dates_back_to_the_beginning():
    tracker = EpisodeTracker(Timing(start_after_s=2.0, end_after_s=1.0))
    out = run(tracker, frames(10, lambda t: 3 <= t < 7))
    assert out == [("start", 3.0, 5.0), ("end", 3.0, 6.8)]


def test_a_short_blip_starts_nothing():
    tracker = EpisodeTracker(Timing(start_after_s=2.0, end_after_s=1.0))
    assert run(tracker, frames(10, lambda t: 3 <= t < 4)) == []


def test_flicker_inside_the_hysteresis_makes_one_event():
    tracker = EpisodeTracker(Timing(start_after_s=1.0, end_after_s=1.5))
    # detected, with one-frame and 0.8 s gaps
    out = run(tracker, frames(12, lambda t: 1 <= t < 9 and not (3.0 <= t < 3.2) and not (5 <= t < 5.8)))
    assert [phase for phase, _, _ in out] == ["start", "end"]


def test_sparse_sightings_confirm_nothing_under_a_long_end_hysteresis_with_a_short_confirm_gap():
    """A false sighting every 2 s for 20 s: with a 10 s end hysteresis alone they would add up to a
    1 s confirmation; with a 1.5 s confirm gap each is forgotten before the next. A real condition
    still starts, and then a 4 s gap does not end it."""
    sparse = lambda t: round(t * 5) % 10 == 0  # noqa: E731
    long_end = Timing(start_after_s=1.0, end_after_s=10.0)
    assert run(EpisodeTracker(long_end), frames(20, sparse))[0][0] == "start"
    gapped = Timing(start_after_s=1.0, end_after_s=10.0, confirm_gap_s=1.5)
    assert run(EpisodeTracker(gapped), frames(20, sparse)) == []
    real = run(EpisodeTracker(gapped), frames(30, lambda t: 2 <= t < 6 or 10 <= t < 12))
    assert real == [("start", 2.0, 3.0), ("end", 2.0, 11.8)]  # one episode through the gap


def test_updates_come_at_their_interval_and_close_all_ends_open_episodes():
    tracker = EpisodeTracker(Timing(start_after_s=0.0, end_after_s=1.0, update_every_s=2.0))
    out = run(tracker, frames(7, lambda t: t >= 1))
    assert [p for p, _, _ in out] == ["start", "update", "update"]
    ends = tracker.close_all()
    assert [(e.phase, e.episode.began) for e in ends] == [("end", 1.0)]
    assert tracker.open == {}


def test_a_condition_seen_over_a_window_counts_its_grace_from_its_onset():
    # seen from t = 3 on, over a window that shows it 1.5 s after it began: it began at 1.5
    tracker = EpisodeTracker(Timing(start_after_s=2.0, end_after_s=1.0))
    out = []
    for t, active in frames(10, lambda t: 3 <= t < 7):
        for tr in tracker.step(t, {"k": {}} if active else {}, onset={"k": t - 1.5}):
            out.append((tr.phase, tr.episode.began, tr.at))
    assert out == [("start", 1.5, 3.6), ("end", 1.5, 6.8)]  # started 1.4 s earlier than without the onset
    tracker = EpisodeTracker(Timing(start_after_s=2.0, end_after_s=1.0))
    assert [tr.episode.began for tr in tracker.step(3.0, {"k": {}}, onset={"k": 9.0})] == []
    assert tracker.open["k"].began == 3.0  # an onset after now is now


def test_a_kept_episode_neither_ends_nor_moves_on_and_finish_ends_it_as_of_a_time():
    tracker = EpisodeTracker(Timing(start_after_s=1.0, end_after_s=1.0))
    for t in (0.0, 0.5, 1.0):
        tracker.step(t, {"a": {}})
    # not seen for 3 s, but kept (something may be replacing it): still open, last seen at 1.0
    for t in (1.5, 2.0, 3.0, 4.0):
        assert tracker.step(t, {}, kept=["a"]) == []
    assert tracker.open["a"].last_seen == 1.0
    ended = tracker.finish("a", 0.8)
    assert ended is not None and (ended.phase, ended.at) == ("end", 0.8)
    assert "a" not in tracker.open and tracker.finish("a", 5.0) is None
    # an episode that never started ends without a word
    tracker.step(5.0, {"b": {}})
    assert tracker.finish("b", 5.0) is None and "b" not in tracker.open


def test_the_grace_is_kept_to_the_frame_on_stream_times_of_a_15_fps_clip():
    # frame timestamps in seconds: 42/15 - 12/15 is 1.9999999999999998 in floating point, and the start
    # must not wait a frame longer for it (nor the end)
    tracker = EpisodeTracker(Timing(start_after_s=2.0, end_after_s=1.0))
    out = run(tracker, [(i / 15, 12 <= i < 60) for i in range(0, 120, 3)])
    assert out == [("start", 12 / 15, 42 / 15), ("end", 12 / 15, 57 / 15)]
