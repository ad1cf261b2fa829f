"""``appliance fleet keygen | sign | push`` as an operator meets them: exit codes and messages."""

from __future__ import annotations

import json

from appliance.cli import main
from appliance.fleet.bundle import open_envelope
from appliance.fleet.keys import load_public
from tests.support import free_port


def test_keygen_writes_a_pair_and_never_overwrites_a_private_key(tmp_path, capsys):
    private, public = tmp_path / "fleet.key", tmp_path / "fleet.pub"
    assert main(["fleet", "keygen", "--private", str(private), "--public", str(public)]) == 0
    assert private.stat().st_mode & 0o777 == 0o600
    load_public(public)
    before = private.read_bytes()
    assert main(["fleet", "keygen", "--private", str(private), "--public", str(public)]) == 1
    assert "refusing to overwrite" in capsys.readouterr().err
    assert private.read_bytes() == before


def test_sign_validates_the_config_first(tmp_path, capsys, fleet_keys):
    bad = tmp_path / "site.yaml"
    bad.write_text("sources:\n  - id: a\n    uri: ftp://x\n")
    out = tmp_path / "v1.bundle"
    args = ["fleet", "sign", str(bad), "--key", str(fleet_keys.private), "--version", "1", "--device", "d", "-o",
            str(out)]
    assert main(args) == 1
    assert f"{bad}:3: sources.0.uri: unsupported URI scheme 'ftp'" in capsys.readouterr().err
    assert not out.exists()
    assert main([*args, "--no-validate", "--canary", "25", "--expires-in", "2"]) == 0
    body = open_envelope(out.read_bytes(), load_public(fleet_keys.public))
    assert (body.version, body.targets.devices, body.canary_percent) == (1, ["d"], 25.0)
    assert (body.expires_at - body.created_at).total_seconds() == 7200
    assert body.config == bad.read_text()


def test_sign_needs_a_target_and_push_needs_a_broker(tmp_path, capsys, fleet_keys):
    config = tmp_path / "site.yaml"
    config.write_text("sources: [{id: a, uri: 'test://ball'}]\n")
    out = tmp_path / "v1.bundle"
    assert main(["fleet", "sign", str(config), "--key", str(fleet_keys.private), "--version", "1", "-o",
                 str(out)]) == 1
    assert "at least one device or group" in capsys.readouterr().err
    assert main(["fleet", "sign", str(config), "--key", str(fleet_keys.private), "--version", "1", "--group", "g",
                 "-o", str(out)]) == 0
    port = free_port()  # nothing listens there
    assert main(["fleet", "push", str(out), "--port", str(port)]) == 1
    assert f"broker 127.0.0.1:{port} refused the connection" in capsys.readouterr().err
    out.write_text(json.dumps({"schema": "something else"}))
    assert main(["fleet", "push", str(out), "--port", str(port)]) == 1
    assert "not a bundle" in capsys.readouterr().err
