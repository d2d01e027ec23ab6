"""Dataset profiling: ``stats`` (mergeable profiles, no Beam) and ``launcher`` (the command,
``python -m beam_pipelines.profile``)."""
