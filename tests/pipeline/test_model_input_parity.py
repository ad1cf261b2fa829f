"""The appliance's model input of a rendered clip against the training's letterbox of the same frame."""

from __future__ import annotations

import re

from tools import check_model_input


def test_a_decoded_clean_room_frame_reaches_the_models_as_it_was_rendered(capsys):
    assert check_model_input.main(["--scene", "cleanroom", "--seed", "9622", "--frames", "4"]) == 0
    line = next(row for row in capsys.readouterr().out.splitlines() if "appliance input" in row)
    levels = dict(re.findall(r"\b([RGB]) ([+-]\d+\.\d+)", line))
    # H.264 at the evaluation's bitrate, and GStreamer's own RGB to Y'CbCr on the way in: less than a level
    assert set(levels) == {"R", "G", "B"}
    assert all(abs(float(v)) < 1.0 for v in levels.values()), line
    assert float(re.search(r"\|diff\| (\d+\.\d+)", line).group(1)) < 3.0, line
    assert line.endswith("border max 0"), line
