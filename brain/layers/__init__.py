"""The layer catalog (issue: tile and metric service)."""
