"""The ops API: ``python -m beam_pipelines.ops serve`` (see :mod:`beam_pipelines.ops.app`)."""
