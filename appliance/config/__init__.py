"""The appliance configuration: ``schema`` (pydantic v2) and ``loader`` (YAML with
line-numbered errors). Import from those modules; this package stays light so that
the rule modules can use ``appliance.config.base`` without loading the schema."""
