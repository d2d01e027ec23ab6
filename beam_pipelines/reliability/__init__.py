"""Reliability tooling: fault injection against the flagship and its sinks (``chaos``, ``inject``,
``servers``), and a corpus of hostile and malformed inputs for the parsers (``hostile``)."""
