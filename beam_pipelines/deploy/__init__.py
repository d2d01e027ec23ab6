"""Deployment: Dataflow flex templates, schedules. ``python -m beam_pipelines.deploy --help``."""
