"""The ``fleet:`` section is checked like the rest of the config: ``file:line: key: reason``."""

from __future__ import annotations

from appliance.config.loader import load_config, validate_files


def test_fleet_problems_are_reported_with_their_line(tmp_path, fleet_keys):
    bad = tmp_path / "site.yaml"
    bad.write_text(
        "sources: [{id: a, uri: 'test://ball'}]\n"
        "fleet:\n"
        f"  public_key: {fleet_keys.private}\n"
        "  pipeline: docker\n"
        "  health: {window_s: -1}\n"
    )
    problems = [str(p) for p in validate_files([bad])]
    assert problems == [
        f"{bad}:3: fleet.public_key: {fleet_keys.private}: not a PEM public key",
        f"{bad}:4: fleet.pipeline: Input should be 'auto', 'child' or 'systemd' (got 'docker')",
        f"{bad}:5: fleet.health.window_s: Input should be greater than 0 (got -1)",
    ]


def test_relative_paths_resolve_against_the_config_file(tmp_path, fleet_keys):
    (tmp_path / "fleet.pub").write_bytes(fleet_keys.public.read_bytes())
    good = tmp_path / "site.yaml"
    good.write_text("sources: [{id: a, uri: 'test://ball'}]\nfleet: {public_key: fleet.pub, state_dir: state}\n")
    fleet = load_config(good).fleet
    assert fleet is not None
    assert (fleet.public_key, fleet.state_dir) == (tmp_path / "fleet.pub", tmp_path / "state")
    assert (fleet.pipeline, fleet.health.window_s, fleet.metrics.port) == ("auto", 60.0, 9110)
