"""The appliance configuration: schema (pydantic v2) and line-numbered YAML loading."""

from appliance.config.loader import (
    ConfigError,
    ConfigProblem,
    load_config,
    validate_files,
)
from appliance.config.schema import ApplianceConfig, ModelConfig, SourceConfig

__all__ = [
    "ApplianceConfig",
    "ConfigError",
    "ConfigProblem",
    "ModelConfig",
    "SourceConfig",
    "load_config",
    "validate_files",
]
