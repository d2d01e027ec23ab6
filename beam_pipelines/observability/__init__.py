"""Observability: the project's metric names and their export to Prometheus."""
