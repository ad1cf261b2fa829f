"""The appliance's model input of a rendered clip against the training's letterbox of the same frame."""

from __future__ import annotations

from appliance.pipeline.sources import InputSize
from tools.check_model_input import differences


def test_a_decoded_clean_room_frame_reaches_the_models_as_it_was_rendered():
    found = {d.name: d for d in differences("cleanroom", 9622, {4}, InputSize(480, 288))}
    appliance = found["appliance input"]
    # H.264 at the evaluation's bitrate, and GStreamer's own RGB to Y'CbCr on the way in: less than a level
    assert all(abs(v) < 1.0 for v in appliance.signed), appliance.line()
    assert appliance.absolute < 3.0 and appliance.border == 0.0, appliance.line()
