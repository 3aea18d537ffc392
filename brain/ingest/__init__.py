"""Ingest: department files onto the canonical model (see brain.ingest.pipeline)."""
