"""Signed, versioned config bundles.

A bundle on the wire is a JSON envelope::

    {"schema": "appliance.fleet.envelope/1", "payload": "<base64 of the body>", "signature": "<base64>"}

The Ed25519 signature covers the body's exact bytes, so nothing has to be
canonicalised. The body is JSON::

    {"schema": "appliance.fleet.bundle/1", "version": 7, "created_at": "...", "expires_at": "...",
     "targets": {"devices": ["pack-line-3"], "groups": ["plant-a"]}, "canary_percent": 20.0,
     "config": "<the YAML text of the config>"}

A device accepts a bundle only when the signature verifies against its pinned key,
it is named (or one of its groups is), it falls inside the canary, the bundle has not
expired and its version is newer than any it accepted before.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from datetime import datetime, timezone
from typing import Annotated, Literal

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError, model_validator

ENVELOPE_SCHEMA = "appliance.fleet.envelope/1"
BUNDLE_SCHEMA = "appliance.fleet.bundle/1"


class Targets(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    devices: list[str] = []
    groups: list[str] = []

    @model_validator(mode="after")
    def _some(self) -> Targets:
        if not self.devices and not self.groups:
            raise ValueError("a bundle must name at least one device or group")
        return self


class BundleBody(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    schema_: Literal["appliance.fleet.bundle/1"] = Field(BUNDLE_SCHEMA, alias="schema")
    version: Annotated[int, Field(ge=1)]
    created_at: AwareDatetime
    expires_at: AwareDatetime
    targets: Targets
    canary_percent: Annotated[float, Field(gt=0.0, le=100.0)] = 100.0
    config: Annotated[str, Field(min_length=1)]


class Refusal(Exception):
    """Why a device refuses a bundle: ``code`` for machines, the message for people."""

    def __init__(self, code: str, reason: str, version: int | None = None) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason
        self.version = version


def canary_bucket(device: str) -> float:
    """A device's stable place in [0, 100): the same device is always in the same canary subset."""
    value = int.from_bytes(hashlib.sha256(f"appliance-canary/{device}".encode()).digest()[:8], "big")
    return value * 100.0 / 2**64


def in_canary(device: str, percent: float) -> bool:
    return percent >= 100.0 or canary_bucket(device) < percent


def envelope_id(envelope: bytes) -> str:
    """A short name for one published bundle (reports carry it, so a refusal can be matched)."""
    return hashlib.sha256(envelope).hexdigest()[:16]


def sign(body: BundleBody, key: Ed25519PrivateKey) -> bytes:
    payload = body.model_dump_json(by_alias=True).encode()
    envelope = {
        "schema": ENVELOPE_SCHEMA,
        "payload": base64.b64encode(payload).decode(),
        "signature": base64.b64encode(key.sign(payload)).decode(),
    }
    return json.dumps(envelope, indent=1).encode() + b"\n"


def open_envelope(envelope: bytes, key: Ed25519PublicKey) -> BundleBody:
    """The verified body of ``envelope``; raises :class:`Refusal` when it is forged or malformed."""
    try:
        outer = json.loads(envelope)
    except (ValueError, UnicodeDecodeError):
        raise Refusal("malformed", "not a bundle: the message is not JSON") from None
    if not isinstance(outer, dict) or outer.get("schema") != ENVELOPE_SCHEMA:
        raise Refusal("malformed", f"not a bundle: expected a JSON object with schema {ENVELOPE_SCHEMA!r}")
    try:
        payload = base64.b64decode(str(outer.get("payload", "")), validate=True)
        signature = base64.b64decode(str(outer.get("signature", "")), validate=True)
    except (binascii.Error, ValueError):
        raise Refusal("malformed", "not a bundle: payload or signature is not base64") from None
    try:
        key.verify(signature, payload)
    except InvalidSignature:
        raise Refusal("bad_signature", "bad signature: not signed by this fleet's key") from None
    try:
        return BundleBody.model_validate_json(payload)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in error['loc']) or 'body'}: {error['msg']}" for error in exc.errors()
        )
        raise Refusal("malformed", f"malformed bundle: {problems}") from None


def check_admissible(
    body: BundleBody, device: str, groups: list[str], highest_version: int, now: datetime
) -> None:
    """Raise :class:`Refusal` unless this device should apply ``body`` now."""
    version = body.version
    named = device in body.targets.devices or any(group in body.targets.groups for group in groups)
    if not named:
        targets = ", ".join([*body.targets.devices, *(f"group {g}" for g in body.targets.groups)])
        raise Refusal("not_for_this_device", f"bundle is for {targets}, not for device {device}", version)
    if not in_canary(device, body.canary_percent):
        raise Refusal(
            "outside_canary",
            f"device is outside the {body.canary_percent:g} % canary (its bucket is {canary_bucket(device):.1f})",
            version,
        )
    if body.expires_at <= now:
        raise Refusal("expired", f"bundle expired at {body.expires_at.isoformat()}", version)
    if version <= highest_version:
        raise Refusal(
            "replayed", f"version {version} is not newer than version {highest_version}, already accepted", version
        )


def utc(timestamp: float) -> datetime:
    return datetime.fromtimestamp(timestamp, tz=timezone.utc)


def peek(envelope: bytes) -> BundleBody:
    """The body of ``envelope`` *without* verifying it: for routing a push, never for applying."""
    try:
        outer = json.loads(envelope)
        return BundleBody.model_validate_json(base64.b64decode(outer["payload"], validate=True))
    except (ValueError, KeyError, TypeError, binascii.Error) as exc:
        raise Refusal("malformed", f"not a bundle: {exc}") from None
