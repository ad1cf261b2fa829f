from __future__ import annotations

import numpy as np

from appliance.analytics.geometry import Line, Zone, ZoneTable, anchor_points


def test_zone_contains_points_inside_a_concave_polygon():
    # an L shape
    zone = Zone.for_frame("l", [(0, 0), (10, 0), (10, 4), (4, 4), (4, 10), (0, 10)], False, 100, 100)
    points = np.array([[2, 2], [8, 2], [8, 8], [2, 8], [-1, 5], [5, 5]], float)
    assert zone.contains(points).tolist() == [True, True, False, True, False, False]


def test_normalised_zone_scales_to_the_frame():
    zone = Zone.for_frame("half", [(0, 0), (0.5, 0), (0.5, 1), (0, 1)], True, 640, 360)
    assert zone.contains(np.array([[100, 300], [400, 100]], float)).tolist() == [True, False]


def test_anchor_points_centre_and_feet():
    boxes = np.array([[10, 20, 30, 60]], float)
    assert anchor_points(boxes, "center").tolist() == [[20, 40]]
    assert anchor_points(boxes, "bottom").tolist() == [[20, 60]]


def test_line_crossings_have_a_direction_and_respect_the_segment_ends():
    line = Line.for_frame("inspect", [(100, 0), (100, 200)], False, 640, 360)  # vertical, pointing down
    before = np.array([[90, 50], [110, 50], [90, 300], [90, 50], [95, 10]], float)
    after = np.array([[110, 50], [90, 50], [110, 300], [95, 60], [105, 12]], float)
    # left→right across a downward line goes from its right side to its left: +1
    assert line.crossings(before, after).tolist() == [1, -1, 0, 0, 1]


def test_the_zone_table_agrees_with_zone_contains():
    rng = np.random.default_rng(7)
    zones = {}
    for k in range(4):
        angles = np.sort(rng.uniform(0, 2 * np.pi, 7))
        radii = rng.uniform(40, 200, 7)
        centre = rng.uniform(200, 1000, 2)
        polygon = np.stack([np.cos(angles) * radii, np.sin(angles) * radii], axis=1) + centre
        zones[f"z{k}"] = Zone(f"z{k}", polygon)
    zones["flat"] = Zone("flat", np.array([[0, 0], [300, 0], [300, 300], [150, 300], [0, 300]], float))
    points = rng.uniform(0, 1280, (500, 2))
    table = ZoneTable(zones).contains(points)
    assert table.shape == (500, 5)
    for column, zone in enumerate(zones.values()):
        assert table[:, column].tolist() == zone.contains(points).tolist()
    assert table.any() and not table.all()
