"""Table sync: keeps a destination (PostgreSQL or Redis) in step with a source PostgreSQL table.

::

    python -m beam_pipelines.sync --name events_to_replica \\
        --source_url postgresql://bp@warehouse/prod --source_table events \\
        --dest_url postgresql://bp@replica/prod --dest_schema mirror --create_table

    python -m beam_pipelines.sync --name aggregates_to_redis \\
        --source_url postgresql://bp@warehouse/prod --source_table aggregates \\
        --dest_url redis://cache:6379/0 --rename window_start=start,window_end=end \\
        --ttl_secs 86400 --every 30s

Modes:

* ``--mode watermark`` (default): reads the rows whose ``--watermark_column`` (a ``timestamptz``
  set to ``now()`` on every write: the warehouse's ``loaded_at``) lies in ``(last committed,
  upper]``, ``upper`` chosen so that no transaction still open can write at or below it (see
  :func:`beam_pipelines.sync.source.safe_upper_bound`), streamed through a server-side cursor in
  ``--batch_rows`` batches. Deleted source rows are not seen in this mode (nor by ``--full``,
  which re-upserts every row but removes nothing): use CDC to carry deletes.
* ``--mode cdc``: applies the changes of a logical replication slot (``test_decoding``; the
  server needs ``wal_level = logical``) in LSN order: inserts and updates as upserts, deletes as
  deletes; the slot is advanced only after the destination committed them. The first run copies
  the table in full after creating the slot. Known limits: ``test_decoding`` does not send the
  unchanged TOASTed values of an UPDATE (large text/jsonb values; such a row would carry the
  placeholder ``unchanged-toast-datum``: keep CDC to tables without large values, or use
  watermark mode), and ``numeric`` values arrive as floats.

Between source and destination: ``--rename``, ``--cast``, ``--transform module:function``
(``pyarrow.Table -> pyarrow.Table``) and ``--columns`` (see :mod:`beam_pipelines.sync.mapping`).
Rows the transform or the destination rejects are counted as failed and dead-lettered in the
project's envelope (stage ``sync``) to ``dead_letters`` of the jobs schema or
``--dead_letter_file``; ``rows_read = rows_written + rows_failed``. Writes retry transient errors
(lost connections, serialization failures, Redis connection errors) up to ``--max_retries``
times with exponential backoff and jitter. PostgreSQL writes are a COPY into a temporary table
and an upsert on the key (:mod:`beam_pipelines.sync.postgres_dest`); the Redis layout is in
:mod:`beam_pipelines.sync.redis_dest`. Each run is a row of ``sync_jobs`` (warehouse migration 5)
in ``--jobs_schema`` of the source database: counts, watermarks, lag, status, masked URLs.

Why plain Python and not a Beam pipeline: a sync is one ordered stream of batches under one
watermark (or one LSN) that may move only after the destination has committed everything below
it, and CDC changes must be applied in order. Beam's strengths, parallel unordered bundles and
runner-managed retries, would have to be undone here; a loop states it directly.
"""

from beam_pipelines.sync.mapping import Mapping
from beam_pipelines.sync.runner import JobResult
from beam_pipelines.sync.runner import SyncConfig
from beam_pipelines.sync.runner import sync_once

__all__ = ['JobResult', 'Mapping', 'SyncConfig', 'sync_once']
