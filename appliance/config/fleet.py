"""The ``fleet:`` section: how the device's fleet agent takes pushed config bundles.

The agent reads this section from the config it owns (``appliance agent -c
/var/lib/appliance/config/current.yaml``) when it starts.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, ValidationInfo, field_validator

from appliance.config.base import Identifier, Strict
from appliance.fleet.keys import KeyFileError, load_public


def _resolve(value: Path, info: ValidationInfo) -> Path:
    from appliance.config.schema import resolve_path  # schema imports this module

    return resolve_path(value, info)


class FleetHealthConfig(Strict):
    """After a new config is swapped in, the restarted pipeline must answer on its /metrics
    within ``startup_s``, then stay healthy for ``window_s``."""

    startup_s: Annotated[float, Field(gt=0.0, le=3600.0)] = 120.0
    window_s: Annotated[float, Field(gt=0.0, le=3600.0)] = 60.0
    poll_s: Annotated[float, Field(gt=0.0, le=60.0)] = 1.0
    stop_timeout_s: Annotated[float, Field(gt=0.0, le=300.0)] = 20.0


class FleetMetricsConfig(Strict):
    """Where the agent serves its own metrics (not the pipeline's port)."""

    enabled: bool = True
    address: str = "127.0.0.1"
    port: Annotated[int, Field(ge=0, le=65535)] = 9110


class FleetConfig(Strict):
    public_key: Path
    groups: list[Identifier] = []
    state_dir: Path = Path("/var/lib/appliance/fleet")
    #: ``child``: the agent runs ``appliance run`` itself; ``systemd``: it restarts ``unit``;
    #: ``auto``: ``systemd`` when the agent itself runs as a systemd service, else ``child``.
    pipeline: Literal["auto", "child", "systemd"] = "auto"
    unit: str = "appliance.service"
    health: FleetHealthConfig = FleetHealthConfig()
    metrics: FleetMetricsConfig = FleetMetricsConfig()

    @field_validator("public_key")
    @classmethod
    def _public_key(cls, value: Path, info: ValidationInfo) -> Path:
        path = _resolve(value, info)
        try:
            load_public(path)
        except KeyFileError as exc:
            raise ValueError(str(exc)) from None
        return path

    @field_validator("state_dir")
    @classmethod
    def _state_dir(cls, value: Path, info: ValidationInfo) -> Path:
        return _resolve(value, info)
