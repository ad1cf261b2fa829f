"""Events: something that happened, with evidence (see appliance.types.Event)."""
