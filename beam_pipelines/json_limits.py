"""Limits on JSON shared by every path that reads it (the ingestion service, the parsers).

No imports: the ingestion service stays free of pyarrow and Beam.
"""

__all__ = ['MAX_DEPTH']

# The nesting orjson writes back (extra fields and dead-letter payloads are written as JSON; its
# reader goes to 1024): deeper JSON is refused everywhere, with a clear error.
MAX_DEPTH = 254
