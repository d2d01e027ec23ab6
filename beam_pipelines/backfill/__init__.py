"""Scheduled and historical reruns of a pipeline over date partitions.

``partitions`` (dates and path templates) and ``record`` (the resumable record) know nothing of
Beam or processes; ``runner`` starts the runs; ``launcher`` is the command line. See
:mod:`beam_pipelines.backfill.launcher` for usage.
"""
