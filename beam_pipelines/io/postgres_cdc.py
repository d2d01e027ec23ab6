"""Change data capture from PostgreSQL logical replication, as a bounded source.

``ReadChangesFromPostgres`` reads, from a logical replication slot using the built-in
``test_decoding`` plugin, every change committed before the read began ("changes up to now"):
inserts, updates and deletes as Arrow tables (``lsn, xid, schema, table, op, row``; ``row`` is
the new tuple, or the key for deletes, as JSON). It *peeks* at the slot, so nothing is consumed
by reading; :class:`AcknowledgeChanges` advances the slot to the read's upper LSN only after the
outputs given to it are written. A run that fails before that re-reads the same changes
(at-least-once; idempotent sinks absorb the repeat).

Why the SQL interface (``pg_logical_slot_peek_changes`` / ``pg_replication_slot_advance``)
rather than psycopg2's streaming replication connection: a bounded read has a natural upper
LSN, and deferring the acknowledgement to after the sinks needs no replication connection held
open across the pipeline. Streaming (unbounded) capture is where the replication protocol fits.
The server needs ``wal_level = logical``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import apache_beam as beam
import orjson
import psycopg2
import pyarrow as pa
from apache_beam.metrics import Metrics

from beam_pipelines.io.postgres import NAMESPACE
from beam_pipelines.io.postgres import connect
from beam_pipelines.transforms.completion import RunAfter

__all__ = [
    'AcknowledgeChanges',
    'ReadChangesFromPostgres',
    'advance_slot',
    'current_lsn',
    'ensure_slot',
    'parse_test_decoding',
    'peek_changes',
]

_SLOT = re.compile(r'^[a-z0-9_]{1,63}$')
_HEADER = re.compile(r'^table (?P<schema>[^.]+)\.(?P<table>[^:]+): (?P<op>INSERT|UPDATE|DELETE): ')
_COLUMN = re.compile(r"(?P<name>[^\s\[]+)\[(?P<type>[^\]]+)\]:(?P<value>'(?:[^']|'')*'|\S+)")
_INT_TYPES = ('smallint', 'integer', 'bigint')
_FLOAT_TYPES = ('real', 'double precision', 'numeric')

CHANGE_SCHEMA = pa.schema(
    [
        ('lsn', pa.string()),
        ('xid', pa.int64()),
        ('schema', pa.string()),
        ('table', pa.string()),
        ('op', pa.string()),
        ('row', pa.string()),
    ]
)


def _value(kind: str, text: str) -> Any:
    if text == 'null':
        return None
    if text.startswith("'"):
        text = text[1:-1].replace("''", "'")
        return text
    if kind in _INT_TYPES:
        return int(text)
    if kind in _FLOAT_TYPES or kind.startswith('numeric'):
        return float(text)
    if kind == 'boolean':
        return text == 'true'
    return text


def parse_test_decoding(line: str) -> dict | None:
    """Parses one ``test_decoding`` change line; None for BEGIN/COMMIT and other lines."""
    head = _HEADER.match(line)
    if head is None:
        return None
    body = line[head.end() :]
    if body.startswith('old-key: '):  # UPDATE with a changed key: keep the new tuple
        body = body.split('new-tuple: ', 1)[-1]
    row = {m['name'].strip('"'): _value(m['type'], m['value']) for m in _COLUMN.finditer(body)}
    return {'schema': head['schema'], 'table': head['table'], 'op': head['op'].lower(), 'row': row}


def _check_slot(slot: str) -> str:
    if not _SLOT.match(slot):
        raise ValueError(f'slot must match [a-z0-9_]{{1,63}}, got {slot!r}')
    return slot


class ReadChangesFromPostgres(beam.PTransform):
    """Reads the changes committed before the read began, from a logical replication slot.

    Args:
        url: libpq URL or DSN of a server with ``wal_level = logical``.
        slot: replication slot name (created with ``test_decoding`` if missing).
        upper_lsn: the LSN to read up to; None for the server's current LSN at run time. Pass
            the value you will give :class:`AcknowledgeChanges` (see :func:`current_lsn`).
        batch_rows: changes per output table.
    """

    def __init__(
        self, url: str | None, slot: str, upper_lsn: str | None = None, batch_rows: int = 10_000
    ):
        super().__init__()
        if batch_rows < 1:
            raise ValueError('batch_rows must be >= 1')
        self._args = (url, _check_slot(slot), upper_lsn, batch_rows)

    def expand(self, pbegin):
        return (
            pbegin
            | 'Start' >> beam.Impulse()
            | 'PeekChanges' >> beam.ParDo(_PeekChangesFn(*self._args)).with_output_types(pa.Table)
        )


def ensure_slot(url: str | None, slot: str) -> bool:
    """Creates the logical replication slot (``test_decoding``) if it does not exist.

    Returns:
        True when this call created it (a consumer then starts from a full copy).
    """
    conn = connect(url)
    try:
        with conn, conn.cursor() as cur:
            cur.execute(
                'SELECT 1 FROM pg_replication_slots WHERE slot_name = %s', (_check_slot(slot),)
            )
            if cur.fetchone() is not None:
                return False
            cur.execute("SELECT pg_create_logical_replication_slot(%s, 'test_decoding')", (slot,))
            return True
    finally:
        conn.close()


def current_lsn(url: str | None) -> str:
    """The server's current WAL LSN: the upper bound of a "changes up to now" read."""
    conn = connect(url)
    try:
        with conn, conn.cursor() as cur:
            cur.execute('SELECT pg_current_wal_lsn()::text')
            return cur.fetchone()[0]
    finally:
        conn.close()


class _PeekChangesFn(beam.DoFn):
    def __init__(self, url, slot, upper_lsn, batch_rows):
        self._url = url
        self._slot = slot
        self._upper_lsn = upper_lsn
        self._batch_rows = batch_rows

    def setup(self):
        self._changes = Metrics.counter(NAMESPACE, 'postgres_changes_read')

    def process(self, _) -> Iterator[pa.Table]:
        ensure_slot(self._url, self._slot)
        upper = self._upper_lsn or current_lsn(self._url)
        for changes in peek_changes(self._url, self._slot, upper, self._batch_rows):
            self._changes.inc(len(changes))
            rows = [{**c, 'row': orjson.dumps(c['row']).decode()} for c in changes]
            yield pa.Table.from_pylist(rows, schema=CHANGE_SCHEMA)


def peek_changes(
    url: str | None, slot: str, upper_lsn: str, batch_rows: int = 10_000
) -> Iterator[list[dict]]:
    """Reads the slot's changes up to ``upper_lsn`` without consuming them, in LSN order.

    Yields:
        Lists of up to ``batch_rows`` changes, each ``{'lsn', 'xid', 'schema', 'table', 'op',
        'row'}`` with ``row`` a dict (see :func:`parse_test_decoding`); BEGIN/COMMIT lines are
        left out. Nothing is acknowledged: call :func:`advance_slot` once they are written.
    """
    conn = connect(url)
    try:
        # A named cursor lives on the server: the changes stream, never all in memory.
        with conn, conn.cursor(name='bp_changes') as cur:
            cur.itersize = batch_rows
            cur.execute(
                'SELECT lsn::text, xid::text::bigint, data FROM '
                "pg_logical_slot_peek_changes(%s, %s::pg_lsn, NULL, 'skip-empty-xacts', '1')",
                (_check_slot(slot), upper_lsn),
            )
            while rows := cur.fetchmany(batch_rows):
                batch = []
                for lsn, xid, data in rows:
                    change = parse_test_decoding(data)
                    if change is not None:
                        batch.append({'lsn': lsn, 'xid': xid, **change})
                if batch:
                    yield batch
    finally:
        conn.close()


class AcknowledgeChanges(beam.PTransform):
    """Advances the slot to ``upper_lsn`` once every given PCollection is complete."""

    def __init__(self, url: str | None, slot: str, upper_lsn: str):
        super().__init__()
        self._url = url
        self._slot = _check_slot(slot)
        self._upper_lsn = upper_lsn

    def expand(self, outputs):
        return outputs | 'AdvanceAfterOutputs' >> RunAfter(
            advance_slot, self._url, self._slot, self._upper_lsn
        )


def advance_slot(url: str | None, slot: str, upper_lsn: str) -> str:
    """Acknowledges every change up to ``upper_lsn``: the slot will not return them again.

    Returns:
        ``upper_lsn``.
    """
    conn = connect(url)
    try:
        with conn, conn.cursor() as cur:
            cur.execute(
                'SELECT pg_replication_slot_advance(%s, %s::pg_lsn)',
                (_check_slot(slot), upper_lsn),
            )
    except psycopg2.errors.ObjectNotInPrerequisiteState:
        pass  # already at or past that LSN: nothing to acknowledge
    finally:
        conn.close()
    return upper_lsn
