"""Scores a CSV time series with the anomaly detectors, through the same Beam transform the
pipelines use (``DetectAnomalies``), for evaluation on public data such as NAB.

::

    python -m beam_pipelines.detect_anomalies --input series.csv --timestamp_field timestamp \\
        --value_field value --output scores.csv [--key_field host] [--detector_spec spec.yaml]

writes ``timestamp,value,anomaly_score,is_anomaly`` in input order (``is_anomaly`` is 0 during
the warm-up). Timestamps are RFC 3339 / ISO 8601 (``2014-07-01 00:00:00`` too) or epoch
seconds; a time without an offset is read in ``--naive_timezone`` (default UTC). With
``--key_field`` each key is its own series. Beam options (``--runner`` ...) are passed on.
Input and output may be on any Beam filesystem (``gs://``, ``s3://``); on a remote runner the
scores pass through ``--temp_location``, which the workers and this launcher both reach.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import shutil
import sys
import tempfile
import uuid
import zoneinfo

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import GoogleCloudOptions

from beam_pipelines import cli
from beam_pipelines.anomaly.shard import score_schema
from beam_pipelines.anomaly.spec import DEFAULT_SPEC
from beam_pipelines.anomaly.spec import AnomalySpec
from beam_pipelines.anomaly.spec import SpecError
from beam_pipelines.anomaly.spec import load_spec
from beam_pipelines.columnar.timestamps import TIMESTAMP_TYPE
from beam_pipelines.io.sinks import WriteTablesToParquet
from beam_pipelines.transforms.detect import DetectAnomalies

__all__ = ['parse_time_us', 'read_series', 'run', 'score_series']

PROG = 'detect_anomalies'
SERIES = '_series'


def _parser():
    parser = cli.ArgumentParser(prog=f'python -m beam_pipelines.{PROG}', allow_abbrev=False)
    parser.add_argument('--input', required=True, help='CSV file with a header row.')
    parser.add_argument('--output', required=True, help='CSV file to write.')
    parser.add_argument('--timestamp_field', default='timestamp', help='Column of the times.')
    parser.add_argument('--value_field', default='value', help='Column of the values.')
    parser.add_argument('--key_field', default=None, help='Column naming the series of a row.')
    parser.add_argument(
        '--detector_spec', default=None, help='Detectors (JSON or YAML); default: built in.'
    )
    parser.add_argument(
        '--naive_timezone',
        default='UTC',
        help='Time zone of timestamps without an offset (IANA name, default UTC).',
    )
    return parser


def read_series(path, timestamp_field, value_field, key_field=None, naive_timezone='UTC'):
    """The CSV as (timestamp texts, epoch µs, values, keys, value texts).

    Raises:
        cli.UsageError: a missing column, or a time or value that cannot be read (with its row).
    """
    zone = zoneinfo.ZoneInfo(naive_timezone)
    stamps, micros, values, keys, texts = [], [], [], [], []
    with FileSystems.open(path) as raw, io.TextIOWrapper(raw, 'utf-8-sig', newline='') as f:
        reader = csv.DictReader(f)
        for name in (timestamp_field, value_field, key_field):
            if name is not None and name not in (reader.fieldnames or []):
                raise cli.UsageError(f'{path}: no column {name!r} (columns: {reader.fieldnames})')
        for line, row in enumerate(reader, start=2):
            raw = row[timestamp_field].strip()
            try:
                micros.append(parse_time_us(raw, zone))
            except ValueError:
                raise cli.UsageError(f'{path}:{line}: not a timestamp: {raw!r}') from None
            text = row[value_field].strip()
            try:
                values.append(float(text) if text else None)
            except ValueError:
                raise cli.UsageError(f'{path}:{line}: not a number: {text!r}') from None
            stamps.append(raw)
            texts.append(text)
            keys.append(row[key_field] if key_field else '')
    return stamps, np.array(micros, np.int64), values, keys, texts


def parse_time_us(raw: str, zone) -> int:
    """Epoch microseconds of a timestamp text (epoch seconds, or ISO 8601; naive in ``zone``)."""
    try:
        return round(float(raw) * 1_000_000)
    except ValueError:
        pass
    when = dt.datetime.fromisoformat(raw.replace('Z', '+00:00'))
    if when.tzinfo is None:
        when = when.replace(tzinfo=zone)
    return (when - dt.datetime(1970, 1, 1, tzinfo=dt.UTC)) // dt.timedelta(microseconds=1)


def score_series(
    micros: np.ndarray, values: list, keys: list, spec: AnomalySpec, argv: list[str] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Runs ``DetectAnomalies`` over the points; returns (scores, labels) in input order
    (labels: 1, 0, or -1 without a verdict)."""
    table = pa.table(
        {
            SERIES: pa.array(keys, pa.string()),
            'timestamp': pa.array(micros, pa.int64()).cast(TIMESTAMP_TYPE),
            'value': pa.array(values, pa.float64()),
        }
    )
    options = cli.parse_pipeline_args(list(argv or []))
    temp = options.view_as(GoogleCloudOptions).temp_location
    # The scores go through files the workers write and this process reads back: under
    # --temp_location when given (a remote runner's workers cannot write to our disk).
    local = temp is None
    work = (
        tempfile.mkdtemp(prefix='detect_anomalies_')
        if local
        else FileSystems.join(temp, f'detect_anomalies-{uuid.uuid4().hex}')
    )
    try:
        with beam.Pipeline(options=options) as p:
            detected = (
                p
                | 'Points' >> beam.Create([table])
                | 'Detect' >> DetectAnomalies(spec, key_columns=(SERIES,), num_shards=4)
            )
            _ = detected.scores | 'WriteScores' >> WriteTablesToParquet(
                FileSystems.join(work, 'scores'), score_schema((SERIES,))
            )
        files = sorted(m.path for m in FileSystems.match([work + '/scores*'])[0].metadata_list)
        parts = []
        for path in files:
            with FileSystems.open(path) as f:
                parts.append(pq.read_table(pa.BufferReader(f.read())))
    finally:
        if local:
            shutil.rmtree(work, ignore_errors=True)
        else:
            FileSystems.delete([work])
    scored = pa.concat_tables(parts) if parts else score_schema((SERIES,)).empty_table()
    return _in_input_order(table, scored)


def _in_input_order(points: pa.Table, scored: pa.Table) -> tuple[np.ndarray, np.ndarray]:
    # Scores come sorted by key and time; rows with the same key and time keep their order, so
    # the n-th input row of a (key, time) is the n-th scored one.
    slots: dict[tuple, list[int]] = {}
    keys = points.column(SERIES).to_pylist()
    times = points.column('timestamp').cast(pa.int64()).to_pylist()
    for i, kt in enumerate(zip(keys, times, strict=True)):
        slots.setdefault(kt, []).append(i)
    scores = np.zeros(points.num_rows)
    labels = np.full(points.num_rows, -1, np.int8)
    s_keys = scored.column(SERIES).to_pylist()
    s_times = scored.column('event_time').cast(pa.int64()).to_pylist()
    s_scores = scored.column('anomaly_score').to_pylist()
    s_labels = scored.column('is_anomaly').to_pylist()
    taken: dict[tuple, int] = {}
    for kt, score, label in zip(zip(s_keys, s_times, strict=True), s_scores, s_labels, strict=True):
        n = taken.get(kt, 0)
        taken[kt] = n + 1
        i = slots[kt][n]
        scores[i] = score
        labels[i] = -1 if label is None else int(label)
    return scores, labels


def run(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args, beam_args = _parser().parse_known_args(argv)
    try:
        spec = load_spec(args.detector_spec) if args.detector_spec else DEFAULT_SPEC
    except SpecError as exc:
        raise cli.UsageError(f'--detector_spec {exc}') from None
    try:
        zoneinfo.ZoneInfo(args.naive_timezone)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise cli.UsageError(
            f'--naive_timezone: unknown time zone {args.naive_timezone!r}'
        ) from None
    # The launcher reads and writes files itself: give Beam's filesystems the options (S3
    # endpoint and keys, GCS project) first.
    FileSystems.set_options(cli.parse_pipeline_args(beam_args))
    try:
        stamps, micros, values, keys, raw_values = read_series(
            args.input, args.timestamp_field, args.value_field, args.key_field, args.naive_timezone
        )
    except OSError as exc:
        raise cli.UsageError(f'--input {args.input}: {exc.strerror or exc}') from None
    scores, labels = score_series(micros, values, keys, spec, beam_args)
    with (
        FileSystems.create(args.output, 'text/csv') as raw,
        io.TextIOWrapper(raw, 'utf-8', newline='') as f,
    ):
        out = csv.writer(f)
        out.writerow(['timestamp', 'value', 'anomaly_score', 'is_anomaly'])
        for stamp, value, score, label in zip(stamps, raw_values, scores, labels, strict=True):
            out.writerow([stamp, value, f'{score:.6f}', int(label == 1)])
    flagged = int((labels == 1).sum())
    print(
        f'{PROG}: scored {len(stamps):,} points of {len(set(keys)):,} series; '
        f'{flagged:,} anomalies -> {args.output}'
    )
    return 0


if __name__ == '__main__':
    cli.configure_logging()
    cli.exit_now(cli.main(PROG, run))
