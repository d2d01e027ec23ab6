"""Retention: data older than each dataset's ``retention_days`` is removed, and reported.

Datasets and the time that ages them:

==============  ===================  ==============================================
dataset         warehouse table      files (under each output directory)
==============  ===================  ==============================================
events          events (event_time)  ``events/*.parquet`` (timestamp)
aggregates      aggregates           ``aggregates/*.parquet`` (window_end)
anomalies       anomalies            ``anomalies/*.parquet`` (event_time)
dead_letters    dead_letters         ``dead_letter/*.jsonl`` (processing_time)
quality         quality, _windows    ``quality*/*.parquet`` (measured_at)
features        -                    ``features/*.parquet`` (event_time)
timeseries      -                    ``timeseries/*.parquet`` (bucket_start)
late            -                    ``late/*.jsonl`` (processing_time)
retractions     -                    ``retractions/*.parquet`` (window_end)
==============  ===================  ==============================================

Whole daily ``events`` partitions past the cutoff are dropped (instant, no vacuum debt); the
rest is deleted row by row. Files entirely past the cutoff are deleted, files straddling it are
rewritten without the expired rows.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import io
import logging
import re

import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from beam_pipelines.backup.archive import list_files
from beam_pipelines.gdpr.stores.files import read_bytes
from beam_pipelines.gdpr.stores.files import replace_file
from beam_pipelines.io.postgres import ident

__all__ = ['DATASETS', 'Dataset', 'apply_retention', 'parse_retention']

_LOGGER = logging.getLogger(__name__)
_DAILY = re.compile(r'events_p(\d{8})')


@dataclasses.dataclass(frozen=True)
class Dataset:
    tables: tuple[tuple[str, str], ...]  # (table, time column)
    folders: tuple[str, ...]
    file_column: str


DATASETS = {
    'events': Dataset((('events', 'event_time'),), ('events',), 'timestamp'),
    'aggregates': Dataset((('aggregates', 'window_end'),), ('aggregates',), 'window_end'),
    'anomalies': Dataset((('anomalies', 'event_time'),), ('anomalies',), 'event_time'),
    'dead_letters': Dataset(
        (('dead_letters', 'processing_time'),), ('dead_letter',), 'processing_time'
    ),
    'quality': Dataset(
        (('quality', 'measured_at'), ('quality_windows', 'measured_at')),
        ('quality', 'quality_windows'),
        'measured_at',
    ),
    'features': Dataset((), ('features',), 'event_time'),
    'timeseries': Dataset((), ('timeseries',), 'bucket_start'),
    'late': Dataset((), ('late',), 'processing_time'),
    'retractions': Dataset((), ('retractions',), 'window_end'),
}


def parse_retention(default_days: float | None, overrides: list[str]) -> dict[str, float]:
    """``--retention_days 30 --retention events=7 --retention dead_letters=14`` -> days per
    dataset (datasets with no figure are kept forever).

    Raises:
        ValueError: an unknown dataset or a figure that is not a positive number.
    """
    days = {name: default_days for name in DATASETS if default_days is not None}
    for item in overrides:
        name, _, value = item.partition('=')
        if name not in DATASETS:
            raise ValueError(f'--retention {item}: datasets are {", ".join(DATASETS)}')
        try:
            days[name] = float(value)
        except ValueError:
            raise ValueError(f'--retention {item}: expected DATASET=DAYS') from None
    for name, d in days.items():
        if not d > 0:
            raise ValueError(f'retention of {name} must be > 0 days, got {d}')
    return days


def _partitions(cur, schema: str) -> list[tuple[str, dt.datetime]]:
    """The daily ``events`` partitions and their upper bounds, read from their names
    (``events_pYYYYMMDD``, see :func:`~beam_pipelines.io.warehouse_schema.partition_name`):
    independent of ``DateStyle``, and other partitions (a DEFAULT one) are left alone."""
    cur.execute(
        'SELECT c.relname FROM pg_inherits i '
        'JOIN pg_class c ON c.oid = i.inhrelid JOIN pg_class p ON p.oid = i.inhparent '
        'JOIN pg_namespace n ON n.oid = p.relnamespace '
        "WHERE n.nspname = %s AND p.relname = 'events'",
        (schema,),
    )
    out = []
    for (name,) in cur.fetchall():
        match = _DAILY.fullmatch(name)
        if match:
            day = dt.datetime.strptime(match.group(1), '%Y%m%d').replace(tzinfo=dt.UTC)
            out.append((name, day + dt.timedelta(days=1)))
    return out


def _warehouse(conn, schema: str, days: dict[str, float], now: dt.datetime, dry_run: bool):
    s = ident(schema)
    report = {}
    with conn, conn.cursor() as cur:
        for name, d in days.items():
            cutoff = now - dt.timedelta(days=d)
            for table, column in DATASETS[name].tables:
                where = f'{ident(column)} < %s'
                if dry_run:
                    cur.execute(f'SELECT count(*) FROM {s}.{ident(table)} WHERE {where}', (cutoff,))
                    report[table] = cur.fetchone()[0]
                    continue
                removed = 0
                if table == 'events':
                    for part, upper in _partitions(cur, schema):
                        if upper <= cutoff:
                            cur.execute(f'SELECT count(*) FROM {s}.{ident(part)}')
                            removed += cur.fetchone()[0]
                            cur.execute(f'DROP TABLE {s}.{ident(part)}')
                cur.execute(f'DELETE FROM {s}.{ident(table)} WHERE {where}', (cutoff,))
                removed += cur.rowcount
                report[table] = removed
    return report


def _file_cutoff_mask(path: str, data: bytes, column: str, cutoff: dt.datetime):
    if path.endswith('.jsonl'):
        lines = data.splitlines(keepends=True)
        times = [orjson.loads(line).get(column) for line in lines]
        expired = [t is not None and dt.datetime.fromisoformat(t) < cutoff for t in times]
        kept = b''.join(line for line, e in zip(lines, expired) if not e)
        return sum(expired), len(lines), kept
    table = pq.read_table(io.BytesIO(data))
    if column not in table.column_names:
        return 0, table.num_rows, data
    expired = pc.fill_null(
        pc.less(table.column(column), pa.scalar(cutoff, table.column(column).type)), False
    )
    n = pc.sum(expired).as_py() or 0
    if not n:
        return 0, table.num_rows, data
    out = io.BytesIO()
    pq.write_table(table.filter(pc.invert(expired)), out)
    return n, table.num_rows, out.getvalue()


def _files(roots: list[str], days: dict[str, float], now: dt.datetime, dry_run: bool):
    report = {}
    for root in roots:
        for path in list_files(root):
            relative = path[len(root.rstrip('/')) + 1 :]
            for name, d in days.items():
                dataset = DATASETS[name]
                if relative.split('/', 1)[0] not in dataset.folders:
                    continue
                if not path.endswith(('.parquet', '.jsonl')):
                    continue
                cutoff = now - dt.timedelta(days=d)
                data = read_bytes(path)
                expired, total, kept = _file_cutoff_mask(path, data, dataset.file_column, cutoff)
                if expired:
                    report[name] = report.get(name, 0) + expired
                    if not dry_run:
                        replace_file(path, None if expired == total else kept)
    return report


def apply_retention(
    conn, schema: str, roots: list[str], days: dict[str, float], now=None, dry_run=False
) -> dict:
    """Removes what is past retention; returns what was (or, with ``dry_run``, would be)
    removed: rows per warehouse table and per file dataset."""
    now = now or dt.datetime.now(dt.UTC)
    report = {
        'cutoffs': {n: (now - dt.timedelta(days=d)).isoformat() for n, d in days.items()},
        'postgres': _warehouse(conn, schema, days, now, dry_run) if conn is not None else {},
        'files': _files(roots, days, now, dry_run),
        'dry_run': dry_run,
    }
    _LOGGER.info('retention: %s', report)
    return report
