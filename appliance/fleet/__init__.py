"""Fleet config push: signed, versioned bundles, the device's agent, and the operator's commands."""
