"""Building blocks shared by every part of the config schema."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

Identifier = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")]


class Strict(BaseModel):
    """Refuses unknown keys; frozen so a loaded config cannot drift."""

    model_config = ConfigDict(extra="forbid", frozen=True)
