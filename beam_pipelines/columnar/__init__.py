"""Plain pyarrow/numpy algorithms with no Beam in them (unit-tested without a pipeline)."""
