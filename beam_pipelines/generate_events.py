"""Writes realistic sample events, with the faults real feeds have, in any input format.

Many entities (a few very busy) and event types; mixed timestamp formats (RFC 3339 with ``Z`` or
an offset, epoch seconds, epoch milliseconds); untidy values (padded and upper-case types,
numeric strings); extra fields; and, by default, about 1% exact duplicates, 1% malformed records
(JSON Lines and CSV only: truncated JSON, invalid UTF-8, wrong column counts), 1% schema-invalid
records, 2% out-of-order and late events and a few injected anomalies. Seeded: the same flags
give the same bytes.

    python -m beam_pipelines.generate_events --events 100000 --output data/events.jsonl
    python -m beam_pipelines.generate_events --events 100000 --output data/events.parquet
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import datetime as dt
import io
import os
import sys

import fastavro
import numpy as np
import orjson
import pyarrow as pa
import pyarrow.parquet as pq

from beam_pipelines.io.files import FORMATS
from beam_pipelines.io.files import infer_format

__all__ = ['GeneratorConfig', 'generate_records', 'main', 'write_events']

EVENT_TYPES = (
    'page_view',
    'click',
    'search',
    'add_to_cart',
    'purchase',
    'login',
    'api_call',
    'logout',
)
_TYPE_WEIGHTS = np.array([30, 25, 12, 8, 4, 6, 12, 3], dtype=float)
_SOURCES = ('web', 'ios', 'android', 'api')
_COUNTRIES = ('DE', 'FR', 'US', 'GB', 'IN', 'BR', 'JP')
_START = dt.datetime(2024, 5, 1, tzinfo=dt.UTC)
CSV_COLUMNS = ('event_id', 'event_type', 'entity_id', 'timestamp', 'value', 'source', 'country')


@dataclasses.dataclass(frozen=True)
class GeneratorConfig:
    events: int = 100_000
    seed: int = 42
    entities: int = 1_000
    duration_secs: float = 3_600.0
    duplicate_rate: float = 0.01
    malformed_rate: float = 0.01
    invalid_rate: float = 0.01
    disorder_rate: float = 0.02
    anomaly_rate: float = 0.0005
    tidy: bool = False  # one timestamp format (epoch seconds), no untidy types or values


def _timestamp(epoch: float, style: int, rng: np.random.Generator):
    if style == 0:
        return (
            dt.datetime.fromtimestamp(epoch, dt.UTC)
            .isoformat(timespec='milliseconds')
            .replace('+00:00', 'Z')
        )
    if style == 1:
        offset = dt.timedelta(hours=int(rng.choice([2, -5, 9, 5.5 * 2]) / 1), minutes=0)
        tz = dt.timezone(offset)
        return dt.datetime.fromtimestamp(epoch, tz).isoformat(timespec='seconds')
    if style == 2:
        return round(epoch, 3) if rng.random() < 0.5 else int(epoch)
    return int(epoch * 1000)


def _value(event_type: str, rng: np.random.Generator) -> float | None:
    if event_type in ('login', 'logout'):
        return None
    if event_type == 'purchase':
        return round(float(rng.lognormal(3.5, 0.6)), 2)
    if event_type == 'api_call':
        return round(float(rng.gamma(4.0, 25.0)), 1)  # latency, ms
    if event_type == 'page_view':
        return round(float(rng.exponential(30.0)), 1)  # dwell time, s
    return float(rng.integers(1, 10))


def _invalidate(record: dict, rng: np.random.Generator) -> dict:
    kind = int(rng.integers(0, 7))
    record = dict(record)
    if kind == 0:
        record.pop('entity_id')
    elif kind == 1:
        record['event_type'] = '   '
    elif kind == 2:
        record['value'] = 'n/a'
    elif kind == 3:
        record['timestamp'] = 'yesterday at noon'
    elif kind == 4:
        record['timestamp'] = '2024-05-01T10:00:00'  # no offset: ambiguous
    elif kind == 5:
        record['event_id'] = 12345
    else:
        record['timestamp'] = 99_999_999_999_999  # epoch ms in the year 5138
    return record


def generate_records(config: GeneratorConfig) -> tuple[list, dict[str, int]]:
    """Returns the records (dicts; bytes for malformed JSON lines) and what was injected."""
    rng = np.random.default_rng(config.seed)
    n = config.events
    ranks = np.arange(1, config.entities + 1, dtype=float)
    entity_p = 1.0 / ranks**0.8
    entity_p /= entity_p.sum()
    entities = rng.choice(config.entities, size=n, p=entity_p)
    types = rng.choice(len(EVENT_TYPES), size=n, p=_TYPE_WEIGHTS / _TYPE_WEIGHTS.sum())
    base = _START.timestamp()
    times = base + np.sort(rng.uniform(0, config.duration_secs, size=n))
    disorder = rng.random(n) < config.disorder_rate
    times[disorder] -= rng.uniform(5, 900, size=int(disorder.sum()))  # out of order and late
    styles = rng.choice(4, size=n, p=[0.4, 0.2, 0.2, 0.2])
    if config.tidy:
        styles[:] = 2
    roll = rng.random(n)
    injected = {
        'duplicates': 0,
        'malformed': 0,
        'invalid': 0,
        'anomalies': 0,
        'out_of_order': int(disorder.sum()),
    }
    records: list = []
    for i in range(n):
        event_type = EVENT_TYPES[types[i]]
        value = _value(event_type, rng)
        if value is not None and rng.random() < config.anomaly_rate:
            value = round(value * float(rng.uniform(20, 50)), 2)
            injected['anomalies'] += 1
        shown_type = event_type
        if rng.random() < 0.05 and not config.tidy:
            shown_type = f' {event_type.upper()} '
        record = {
            'event_id': f'evt-{config.seed}-{i:09d}',
            'event_type': shown_type,
            'entity_id': f'user-{entities[i]:06d}',
            'timestamp': round(float(times[i]), 3)
            if config.tidy
            else _timestamp(float(times[i]), int(styles[i]), rng),
            'value': str(value)
            if value is not None and rng.random() < 0.05 and not config.tidy
            else value,
            'source': _SOURCES[int(rng.integers(0, len(_SOURCES)))],
        }
        if rng.random() < 0.3:
            record['country'] = _COUNTRIES[int(rng.integers(0, len(_COUNTRIES)))]
        r = roll[i]
        if r < config.invalid_rate:
            record = _invalidate(record, rng)
            injected['invalid'] += 1
        elif r < config.invalid_rate + config.malformed_rate:
            record = _malform(record, rng)
            injected['malformed'] += 1
        records.append(record)
        if records and rng.random() < config.duplicate_rate and i > 10:
            # A retransmission of an earlier record, arriving a little later.
            back = int(rng.integers(1, min(i, 500)))
            previous = records[-1 - back]
            if isinstance(previous, dict):
                records.append(previous)
                injected['duplicates'] += 1
    return records, injected


def _malform(record: dict, rng: np.random.Generator) -> bytes:
    line = orjson.dumps(record)
    kind = int(rng.integers(0, 3))
    if kind == 0:
        return line[: max(1, len(line) // 2)]  # truncated
    if kind == 1:
        return line[:10] + b'\xff\xfe' + line[10:]  # invalid UTF-8
    return b'event ' + line.replace(b'"', b'')  # not JSON at all


def write_events(records: list, path: str, fmt: str) -> None:
    """Writes records in ``fmt``; malformed records are rendered per format (or skipped)."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    if fmt == 'jsonl':
        with open(path, 'wb') as f:
            for r in records:
                f.write((r if isinstance(r, bytes) else orjson.dumps(r)) + b'\n')
    elif fmt == 'csv':
        _write_csv(records, path)
    elif fmt == 'avro':
        _write_avro([r for r in records if isinstance(r, dict)], path)
    else:
        _write_parquet([r for r in records if isinstance(r, dict)], path)


def _write_csv(records: list, path: str) -> None:
    text = io.StringIO()
    writer = csv.writer(text, lineterminator='\n')
    writer.writerow(CSV_COLUMNS)
    with open(path, 'wb') as f:
        f.write(text.getvalue().encode())
        for r in records:
            text.seek(0)
            text.truncate()
            if isinstance(r, bytes):
                if b'\xff' in r:
                    f.write(b'evt-bad,click,user-1,\xff\xfe,1.0,web,DE\n')
                else:
                    f.write(b'evt-short,click\n')  # wrong number of columns
                continue
            writer.writerow(['' if r.get(c) is None else r.get(c) for c in CSV_COLUMNS])
            f.write(text.getvalue().encode())


_AVRO_SCHEMA = {
    'type': 'record',
    'name': 'Event',
    'fields': [
        {'name': 'event_id', 'type': ['null', 'string', 'long']},
        {'name': 'event_type', 'type': ['null', 'string']},
        {'name': 'entity_id', 'type': ['null', 'string']},
        {'name': 'timestamp', 'type': ['null', 'string', 'long', 'double']},
        {'name': 'value', 'type': ['null', 'double', 'string']},
        {'name': 'source', 'type': ['null', 'string']},
        {'name': 'country', 'type': ['null', 'string'], 'default': None},
    ],
}


def _write_avro(records: list[dict], path: str) -> None:
    rows = [{c: r.get(c) for c in CSV_COLUMNS} for r in records]
    with open(path, 'wb') as f:
        fastavro.writer(f, fastavro.parse_schema(_AVRO_SCHEMA), rows, codec='deflate')


def _write_parquet(records: list[dict], path: str) -> None:
    def text(v):
        return None if v is None else str(v)

    def number(v):
        try:
            return None if v is None else float(v)
        except ValueError:
            return None

    columns = {
        'event_id': pa.array([text(r.get('event_id')) for r in records], pa.string()),
        'event_type': pa.array([r.get('event_type') for r in records], pa.string()),
        'entity_id': pa.array([r.get('entity_id') for r in records], pa.string()),
        'timestamp': pa.array([text(r.get('timestamp')) for r in records], pa.string()),
        'value': pa.array([number(r.get('value')) for r in records], pa.float64()),
        'source': pa.array([r.get('source') for r in records], pa.string()),
        'country': pa.array([r.get('country') for r in records], pa.string()),
    }
    pq.write_table(pa.table(columns), path, row_group_size=100_000)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog='generate_events', description=__doc__.split('\n\n')[0])
    parser.add_argument(
        '--output', required=True, help='File to write; with --files > 1, a name pattern with {i}.'
    )
    parser.add_argument(
        '--format',
        choices=FORMATS,
        default=None,
        help='Output format (default: from the extension).',
    )
    parser.add_argument('--events', type=int, default=100_000, help='How many events.')
    parser.add_argument('--files', type=int, default=1, help='Split the events over N files.')
    parser.add_argument('--seed', type=int, default=42, help='Random seed.')
    parser.add_argument('--entities', type=int, default=1_000, help='Distinct entity_ids.')
    parser.add_argument(
        '--duration_secs', type=float, default=3_600.0, help='Event-time span of the data.'
    )
    parser.add_argument(
        '--clean',
        action='store_true',
        help='Clean input: no duplicates, malformed or invalid records, one timestamp format '
        '(epoch seconds), no untidy types or values.',
    )
    args = parser.parse_args(argv)
    fmt = args.format or infer_format(args.output)
    if fmt is None:
        parser.error(f'cannot tell the format of {args.output}: pass --format')
    if args.events < 0 or args.files < 1 or args.entities < 1:
        parser.error('--events must be >= 0, --files and --entities >= 1')
    rates = (
        {'duplicate_rate': 0.0, 'malformed_rate': 0.0, 'invalid_rate': 0.0, 'tidy': True}
        if args.clean
        else {}
    )
    config = GeneratorConfig(
        events=args.events,
        seed=args.seed,
        entities=args.entities,
        duration_secs=args.duration_secs,
        **rates,
    )
    records, injected = generate_records(config)
    paths = [args.output.format(i=i) if args.files > 1 else args.output for i in range(args.files)]
    if args.files > 1 and len(set(paths)) != len(paths):
        parser.error('--output needs an {i} placeholder with --files > 1')
    size = -(-len(records) // args.files)
    for k, path in enumerate(paths):
        write_events(records[k * size : (k + 1) * size], path, fmt)
    if fmt in ('avro', 'parquet'):
        injected['malformed'] = 0  # binary formats cannot carry malformed lines
    print(
        f'generate_events: wrote {len(records):,} records to {len(paths)} {fmt} file(s) '
        f'({", ".join(f"{k} {v:,}" for k, v in injected.items())})',
        file=sys.stderr,
    )
    return 0


if __name__ == '__main__':
    sys.exit(main())
