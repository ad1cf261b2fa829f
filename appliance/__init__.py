"""Shop-floor vision appliance."""

__version__ = "0.1.0"
