"""`appliance bench --analytics` measures every use case's tracking, rules and events on
30 moving objects (the figure is a benchmark's, not asserted here)."""

from __future__ import annotations

from appliance.bench import ANALYTICS_SCENES, run_analytics


def test_analytics_benchmark_times_each_use_case(capsys) -> None:
    figures = run_analytics(objects=30, frames=120, repeats=2)
    assert set(ANALYTICS_SCENES) == {"defects", "ppe", "ppe+looks", "ppe+items", "animals", "presence"}
    assert set(figures) == {*ANALYTICS_SCENES, "frame_to_rgb"}
    assert all(0.0 < ms < 1000.0 for ms in figures.values()), figures
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("analytics ")]
    assert len(lines) == 7 and "frame to RGB" in lines[-1] and "snapshots" in lines[-1]
    lines = lines[:-1]
    # the scenes are eventful: people without their items, animals running (the rules are exercised)
    events = {line.split()[1]: int(line.rsplit("; ", 1)[1].split()[0]) for line in lines}
    assert events["ppe"] > 0 and events["ppe+looks"] > 0 and events["animals"] > 0 and events["presence"] > 0, lines
