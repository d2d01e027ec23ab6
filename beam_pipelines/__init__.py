"""beam_pipelines: unified batch and streaming event pipelines on Apache Beam.

The hot path is Arrow-first: events travel as ``pyarrow.Table`` batches from the
source through parsing, cleansing, validation, deduplication and partial
aggregation; only per-(key, window) partial aggregates are shuffled.
"""

__version__ = '0.1.0'
