"""The tile service (issue: tile and metric service)."""
