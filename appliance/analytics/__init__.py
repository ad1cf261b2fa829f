"""Analytics: zones, lines and the rules that turn tracks into events."""
