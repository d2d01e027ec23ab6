"""The PostgreSQL warehouse schema: versioned, idempotent migrations and daily partitions.

Tables (in the schema given, ``public`` by default):

* ``events`` — clean events, range-partitioned by ``event_time`` into daily partitions created
  on demand; primary key ``(event_id, event_time)``. PostgreSQL requires the partition key in
  every unique constraint; an event's time is part of its data, so a re-run upserts the same
  row and ``count(*) = count(distinct event_id)`` holds.
* ``aggregates`` — one row per (entity_id, event_type, window_start, window_end); streaming and
  incremental runs also record the pane it holds (``pane_timing``, ``pane_index``,
  ``is_final``; NULL for batch runs, whose rows are final).
* ``anomalies`` — scored points from the anomaly detectors.
* ``dead_letters`` — the project's envelope, keyed by a hash of its content and origin, so a
  re-run does not add copies.
* ``quality``, ``quality_windows`` — data-quality measurements per source and run / window.
* ``gdpr_keys``, ``gdpr_tombstones``, ``gdpr_audit`` — per-subject data keys (wrapped), erased
  subjects (as pseudonyms) and the audit trail of GDPR requests (see :mod:`beam_pipelines.gdpr`).
* ``backup_jobs``, ``sync_jobs`` — job records of backups and syncs.
* ``bp_schema_migrations`` — which migrations ran.

Every data table has ``loaded_at``: when the row was last written, moved by a trigger on update.
"""

from __future__ import annotations

import datetime as dt
import logging

from beam_pipelines.io.postgres import ident

__all__ = ['MIGRATIONS', 'ensure_event_partitions', 'migrate']

_LOGGER = logging.getLogger(__name__)

MIGRATIONS: tuple[tuple[int, str, str], ...] = (
    (
        1,
        'events, aggregates, anomalies, dead letters',
        """
        CREATE TABLE IF NOT EXISTS {s}.events (
            event_id text NOT NULL,
            event_type text NOT NULL,
            entity_id text NOT NULL,
            event_time timestamptz NOT NULL,
            value double precision,
            source text,
            attributes jsonb,
            loaded_at timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (event_id, event_time)
        ) PARTITION BY RANGE (event_time);
        CREATE INDEX IF NOT EXISTS events_entity_time ON {s}.events (entity_id, event_time);
        CREATE INDEX IF NOT EXISTS events_type_time ON {s}.events (event_type, event_time);

        CREATE TABLE IF NOT EXISTS {s}.aggregates (
            entity_id text NOT NULL,
            event_type text NOT NULL,
            window_start timestamptz NOT NULL,
            window_end timestamptz NOT NULL,
            count bigint NOT NULL,
            value_count bigint NOT NULL,
            sum double precision,
            min double precision,
            max double precision,
            mean double precision,
            stddev double precision,
            p50 double precision,
            p95 double precision,
            loaded_at timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (entity_id, event_type, window_start, window_end)
        );
        CREATE INDEX IF NOT EXISTS aggregates_window ON {s}.aggregates (window_start);

        CREATE TABLE IF NOT EXISTS {s}.anomalies (
            entity_id text NOT NULL,
            event_type text NOT NULL,
            detector text NOT NULL,
            event_time timestamptz NOT NULL,
            value double precision,
            score double precision NOT NULL,
            is_anomaly boolean NOT NULL,
            statistics jsonb,
            loaded_at timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (entity_id, event_type, detector, event_time)
        );
        CREATE INDEX IF NOT EXISTS anomalies_flagged
            ON {s}.anomalies (event_time) WHERE is_anomaly;

        CREATE TABLE IF NOT EXISTS {s}.dead_letters (
            id text PRIMARY KEY,
            stage text NOT NULL,
            error_type text NOT NULL,
            error_message text NOT NULL,
            payload text,
            payload_encoding text NOT NULL,
            payload_format text NOT NULL,
            source jsonb,
            pipeline text NOT NULL,
            processing_time timestamptz NOT NULL,
            event_time timestamptz
        );
        CREATE INDEX IF NOT EXISTS dead_letters_time ON {s}.dead_letters (processing_time);
        CREATE INDEX IF NOT EXISTS dead_letters_type ON {s}.dead_letters (stage, error_type);
        """,
    ),
    (
        2,
        'aggregate panes (streaming and incremental runs)',
        """
        ALTER TABLE {s}.aggregates
            ADD COLUMN IF NOT EXISTS pane_timing text,
            ADD COLUMN IF NOT EXISTS pane_index bigint,
            ADD COLUMN IF NOT EXISTS is_final boolean;
        """,
    ),
    (
        3,
        'data quality per source and run',
        """
        CREATE TABLE IF NOT EXISTS {s}.quality (
            pipeline text NOT NULL,
            run_key text NOT NULL,
            source text NOT NULL,
            measured_at timestamptz NOT NULL,
            score double precision,
            completeness double precision,
            validity double precision,
            uniqueness double precision,
            timeliness double precision,
            consistency double precision,
            accuracy double precision,
            records_read bigint NOT NULL,
            dead_letters bigint NOT NULL,
            duplicates bigint NOT NULL,
            events bigint NOT NULL,
            lag_p50_secs double precision,
            lag_p95_secs double precision,
            lag_max_secs double precision,
            details jsonb,
            breaches jsonb,
            PRIMARY KEY (pipeline, run_key, source)
        );
        CREATE INDEX IF NOT EXISTS quality_measured ON {s}.quality (measured_at);

        CREATE TABLE IF NOT EXISTS {s}.quality_windows (
            LIKE {s}.quality INCLUDING DEFAULTS,
            window_start timestamptz NOT NULL,
            window_end timestamptz NOT NULL,
            PRIMARY KEY (pipeline, run_key, source, window_start)
        );
        """,
    ),
    (
        4,
        'dead-letter replay attempts',
        """
        ALTER TABLE {s}.dead_letters
            ADD COLUMN IF NOT EXISTS attempts integer NOT NULL DEFAULT 1,
            ADD COLUMN IF NOT EXISTS last_attempt_at timestamptz;
        """,
    ),
    (
        5,
        'loaded_at on every table, kept by trigger; GDPR key store, tombstones and audit; '
        'backup and sync job records',
        """
        -- loaded_at is when a row was last written, by any writer: the watermark of incremental
        -- backups and syncs. ON CONFLICT DO UPDATE fires BEFORE UPDATE triggers, so upserts move
        -- it too.
        ALTER TABLE {s}.dead_letters
            ADD COLUMN IF NOT EXISTS loaded_at timestamptz NOT NULL DEFAULT now();
        ALTER TABLE {s}.quality
            ADD COLUMN IF NOT EXISTS loaded_at timestamptz NOT NULL DEFAULT now();
        ALTER TABLE {s}.quality_windows
            ADD COLUMN IF NOT EXISTS loaded_at timestamptz NOT NULL DEFAULT now();
        CREATE OR REPLACE FUNCTION {s}.bp_touch_loaded_at() RETURNS trigger
            LANGUAGE plpgsql AS $$ BEGIN NEW.loaded_at := now(); RETURN NEW; END $$;
        CREATE OR REPLACE TRIGGER bp_touch_loaded_at BEFORE UPDATE ON {s}.events
            FOR EACH ROW EXECUTE FUNCTION {s}.bp_touch_loaded_at();
        CREATE OR REPLACE TRIGGER bp_touch_loaded_at BEFORE UPDATE ON {s}.aggregates
            FOR EACH ROW EXECUTE FUNCTION {s}.bp_touch_loaded_at();
        CREATE OR REPLACE TRIGGER bp_touch_loaded_at BEFORE UPDATE ON {s}.anomalies
            FOR EACH ROW EXECUTE FUNCTION {s}.bp_touch_loaded_at();
        CREATE OR REPLACE TRIGGER bp_touch_loaded_at BEFORE UPDATE ON {s}.dead_letters
            FOR EACH ROW EXECUTE FUNCTION {s}.bp_touch_loaded_at();
        CREATE OR REPLACE TRIGGER bp_touch_loaded_at BEFORE UPDATE ON {s}.quality
            FOR EACH ROW EXECUTE FUNCTION {s}.bp_touch_loaded_at();
        CREATE OR REPLACE TRIGGER bp_touch_loaded_at BEFORE UPDATE ON {s}.quality_windows
            FOR EACH ROW EXECUTE FUNCTION {s}.bp_touch_loaded_at();
        CREATE INDEX IF NOT EXISTS events_loaded_at ON {s}.events (loaded_at);
        CREATE INDEX IF NOT EXISTS aggregates_loaded_at ON {s}.aggregates (loaded_at);
        CREATE INDEX IF NOT EXISTS anomalies_loaded_at ON {s}.anomalies (loaded_at);
        CREATE INDEX IF NOT EXISTS dead_letters_loaded_at ON {s}.dead_letters (loaded_at);

        -- Per-subject data keys, wrapped by a master key (never stored here). Deleting a row
        -- shreds every copy of the subject's encrypted fields. Backups leave this table out.
        CREATE TABLE IF NOT EXISTS {s}.gdpr_keys (
            subject text PRIMARY KEY,
            master_key_id text NOT NULL,
            wrapped_key bytea NOT NULL,
            created_at timestamptz NOT NULL DEFAULT now()
        );
        -- Erased subjects, as keyed pseudonyms only: ingestion, replays, backfills and restores
        -- drop what matches.
        CREATE TABLE IF NOT EXISTS {s}.gdpr_tombstones (
            pseudonym text PRIMARY KEY,
            request_id text NOT NULL,
            erased_at timestamptz NOT NULL DEFAULT now()
        );
        -- What was done, by whom, with counts; no personal data.
        CREATE TABLE IF NOT EXISTS {s}.gdpr_audit (
            request_id text PRIMARY KEY,
            action text NOT NULL,
            requested_by text NOT NULL,
            started_at timestamptz NOT NULL,
            finished_at timestamptz,
            status text NOT NULL,
            stores jsonb,
            counts jsonb,
            error text
        );
        CREATE TABLE IF NOT EXISTS {s}.backup_jobs (
            backup_id text PRIMARY KEY,
            mode text NOT NULL,
            parent_id text,
            archive text NOT NULL,
            started_at timestamptz NOT NULL,
            finished_at timestamptz,
            status text NOT NULL,
            watermark timestamptz,
            rows bigint,
            bytes bigint,
            manifest jsonb,
            error text
        );
        CREATE TABLE IF NOT EXISTS {s}.sync_jobs (
            job_id text PRIMARY KEY,
            name text NOT NULL,
            source text NOT NULL,
            destination text NOT NULL,
            mode text NOT NULL,
            started_at timestamptz NOT NULL,
            finished_at timestamptz,
            status text NOT NULL,
            rows_read bigint NOT NULL DEFAULT 0,
            rows_written bigint NOT NULL DEFAULT 0,
            rows_failed bigint NOT NULL DEFAULT 0,
            watermark_from text,
            watermark_to text,
            lag_secs double precision,
            error text
        );
        CREATE INDEX IF NOT EXISTS sync_jobs_name ON {s}.sync_jobs (name, started_at);
        """,
    ),
)


def migrate(conn, schema: str = 'public') -> list[int]:
    """Applies the migrations not yet applied to ``schema``; safe to run concurrently.

    Returns:
        The versions applied by this call.
    """
    s = ident(schema)
    applied = []
    with conn, conn.cursor() as cur:
        cur.execute('SELECT pg_advisory_xact_lock(hashtext(%s))', (f'bp_migrate:{schema}',))
        cur.execute(f'CREATE SCHEMA IF NOT EXISTS {s}')
        cur.execute(
            f'CREATE TABLE IF NOT EXISTS {s}.bp_schema_migrations ('
            'version integer PRIMARY KEY, name text NOT NULL, '
            'applied_at timestamptz NOT NULL DEFAULT now())'
        )
        cur.execute(f'SELECT version FROM {s}.bp_schema_migrations')
        done = {row[0] for row in cur.fetchall()}
        for version, name, sql in MIGRATIONS:
            if version in done:
                continue
            cur.execute(sql.format(s=s))
            cur.execute(
                f'INSERT INTO {s}.bp_schema_migrations (version, name) VALUES (%s, %s)',
                (version, name),
            )
            applied.append(version)
            _LOGGER.info('applied warehouse migration %d (%s) to schema %s', version, name, schema)
    return applied


def partition_name(day: dt.date) -> str:
    return f'events_p{day:%Y%m%d}'


def ensure_event_partitions(cur, schema: str, days: list[dt.date]) -> None:
    """Creates the daily ``events`` partitions that do not exist yet.

    Creation takes a transaction-level advisory lock, so concurrent loaders cannot race; it is
    only taken when a partition is missing.
    """
    s = ident(schema)
    for day in days:
        name = partition_name(day)
        # Quoted as the table was created: unquoted, a mixed-case schema folds to lower case,
        # the partition is never found, and every batch takes the lock below.
        cur.execute('SELECT to_regclass(%s)', (f'{s}.{ident(name)}',))
        if cur.fetchone()[0] is not None:
            continue
        cur.execute('SELECT pg_advisory_xact_lock(hashtext(%s))', (f'bp_partition:{schema}',))
        cur.execute(
            f'CREATE TABLE IF NOT EXISTS {s}.{ident(name)} PARTITION OF {s}.events '
            'FOR VALUES FROM (%s) TO (%s)',
            (
                f'{day.isoformat()} 00:00:00+00',
                f'{(day + dt.timedelta(days=1)).isoformat()} 00:00:00+00',
            ),
        )
