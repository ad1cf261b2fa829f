"""Signed bundles: what verifies, what is refused and why, and the stable canary subset."""

from __future__ import annotations

import base64
import json
from datetime import datetime, timedelta, timezone

import pytest

from appliance.fleet.bundle import (
    BundleBody,
    Refusal,
    Targets,
    canary_bucket,
    check_admissible,
    in_canary,
    open_envelope,
    peek,
    sign,
)
from appliance.fleet.commands import push_topics
from appliance.fleet.keys import KeyFileError, load_private, load_public

NOW = datetime(2026, 11, 27, 8, 0, tzinfo=timezone.utc)


def body(version: int = 3, devices: tuple[str, ...] = ("dev-1",), groups: tuple[str, ...] = (),
         canary: float = 100.0, expires: datetime | None = None) -> BundleBody:
    return BundleBody(version=version, created_at=NOW, expires_at=expires or NOW + timedelta(hours=1),
                      targets=Targets(devices=list(devices), groups=list(groups)), canary_percent=canary,
                      config="sources: [{id: a, uri: 'test://ball'}]\n")


def refusal_code(call) -> str:
    with pytest.raises(Refusal) as caught:
        call()
    return caught.value.code


def test_a_signed_bundle_opens_with_the_pinned_key_and_nothing_else(fleet_keys):
    envelope = sign(body(), load_private(fleet_keys.private))
    opened = open_envelope(envelope, load_public(fleet_keys.public))
    assert opened.version == 3 and opened.config.startswith("sources:")
    forged = sign(body(), load_private(fleet_keys.rogue_private))
    assert refusal_code(lambda: open_envelope(forged, load_public(fleet_keys.public))) == "bad_signature"


def test_a_changed_byte_in_the_payload_breaks_the_signature(fleet_keys):
    outer = json.loads(sign(body(), load_private(fleet_keys.private)))
    payload = base64.b64decode(outer["payload"]).replace(b'"version":3', b'"version":9')
    outer["payload"] = base64.b64encode(payload).decode()
    tampered = json.dumps(outer).encode()
    assert peek(tampered).version == 9  # readable for routing …
    assert refusal_code(lambda: open_envelope(tampered, load_public(fleet_keys.public))) == "bad_signature"


@pytest.mark.parametrize("message", [b"not json", b"[1, 2]", b'{"schema": "appliance.fleet.envelope/1"}',
                                     b'{"schema": "appliance.fleet.envelope/1", "payload": "%%", "signature": ""}'])
def test_garbage_is_refused_as_malformed(fleet_keys, message):
    assert refusal_code(lambda: open_envelope(message, load_public(fleet_keys.public))) in ("malformed",
                                                                                            "bad_signature")


def test_admissibility_target_group_expiry_and_version():
    check_admissible(body(), "dev-1", [], highest_version=2, now=NOW)
    check_admissible(body(devices=(), groups=("line-3",)), "dev-9", ["plant", "line-3"], highest_version=0, now=NOW)
    assert refusal_code(lambda: check_admissible(body(), "dev-2", ["line-3"], 0, NOW)) == "not_for_this_device"
    expired = body(expires=NOW - timedelta(seconds=1))
    assert refusal_code(lambda: check_admissible(expired, "dev-1", [], 0, NOW)) == "expired"
    assert refusal_code(lambda: check_admissible(body(version=3), "dev-1", [], 3, NOW)) == "replayed"
    assert refusal_code(lambda: check_admissible(body(version=2), "dev-1", [], 3, NOW)) == "replayed"


def test_a_bundle_must_name_a_target():
    with pytest.raises(ValueError, match="at least one device or group"):
        body(devices=())


def test_the_canary_is_a_stable_growing_subset_of_about_the_asked_share():
    devices = [f"line-{i}" for i in range(2000)]
    assert [canary_bucket(d) for d in devices[:50]] == [canary_bucket(d) for d in devices[:50]]
    at_10 = {d for d in devices if in_canary(d, 10)}
    at_30 = {d for d in devices if in_canary(d, 30)}
    assert at_10 < at_30  # raising the share keeps the devices that already have it
    assert 0.07 < len(at_10) / len(devices) < 0.13
    assert all(in_canary(d, 100) for d in devices)
    outside = next(d for d in devices if d not in at_10)
    assert refusal_code(lambda: check_admissible(body(devices=(outside,), canary=10), outside, [], 0, NOW)) == (
        "outside_canary"
    )


def test_push_topics_for_devices_groups_and_a_device_list():
    topics = push_topics(body(devices=("dev-1",), groups=("line-3",)), None)
    assert topics == ["fleet/dev-1/config/desired", "fleet/group/line-3/config/desired"]
    listed = [f"cam-{i}" for i in range(200)]
    canary = push_topics(body(groups=("line-3",), canary=25), listed)
    assert canary == [f"fleet/{d}/config/desired" for d in listed if in_canary(d, 25)]
    assert 0 < len(canary) < len(listed)


def test_key_files_are_checked(tmp_path, fleet_keys):
    with pytest.raises(KeyFileError, match="not an Ed25519 public key|not a PEM public key"):
        load_public(fleet_keys.private)
    with pytest.raises(KeyFileError, match="refusing to overwrite"):
        from appliance.fleet.keys import generate

        generate(fleet_keys.private, tmp_path / "other.pub")
    assert (fleet_keys.private.stat().st_mode & 0o777) == 0o600
