"""The stores a subject's data can be in: PostgreSQL, Redis, files (Parquet, JSON Lines, text).

Each module offers ``find`` (what is held, for access requests), ``erase`` (delete, returning
counts) and works from a :class:`~beam_pipelines.gdpr.subject.Subject`.
"""
