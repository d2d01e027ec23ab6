"""Reference pipelines written the usual per-element way, for benchmarks to compare against."""
