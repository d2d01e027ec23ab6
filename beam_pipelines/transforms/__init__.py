"""Composite PTransforms of the event pipelines (parse, cleanse, validate, dedup, aggregate)."""
