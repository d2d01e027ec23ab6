"""``python -m beam_pipelines.profile``: profiles a dataset, schema-free.

::

    python -m beam_pipelines.profile --input 'data/*.jsonl' [--output profile.json] \\
        [--input_format jsonl|csv|avro|parquet] [Beam flags: --runner ...]

Reads the files with the flagship's reader (any Beam filesystem; JSON Lines split into byte
ranges), profiles each batch and merges the profiles in one combine: per field its JSON types,
null count and ratio, distinct estimate, numeric min/max/mean/quantiles and a 10-bin histogram,
string lengths and top values; records that cannot be decoded are counted by error type. CSV
cells, which have no types, are profiled as what they read as (an integer, a number, a string;
empty is null). Prints a table and writes the whole profile as JSON.
"""

from __future__ import annotations

import json
import sys

import apache_beam as beam
import orjson
from apache_beam.io.filesystems import FileSystems

from beam_pipelines import cli
from beam_pipelines.columnar.batch import RawBatch
from beam_pipelines.io.files import FORMATS
from beam_pipelines.io.files import ReadEventFiles
from beam_pipelines.profile.stats import DatasetProfile

__all__ = ['profile_batch', 'run']

PROG = 'profile'


def _parser():
    parser = cli.ArgumentParser(prog=f'python -m beam_pipelines.{PROG}', allow_abbrev=False)
    parser.add_argument('--input', required=True, help='Glob of files (any Beam filesystem).')
    parser.add_argument(
        '--input_format', choices=FORMATS, default=None, help='Default: by extension.'
    )
    parser.add_argument(
        '--output',
        default='profile.json',
        help='Where to write the profile as JSON (any Beam filesystem; default profile.json).',
    )
    parser.add_argument('--batch_rows', type=int, default=50_000, help='Records per batch.')
    return parser


def profile_batch(raw: RawBatch) -> DatasetProfile:
    """The profile of one raw batch (records that do not decode are counted, not dropped)."""
    profile = DatasetProfile()
    for failure in raw.failures:
        profile.add_undecodable(failure[0])
    lines = raw.line_list()
    if lines is not None:
        records = []
        for line in lines:
            try:
                record = orjson.loads(line)
            except orjson.JSONDecodeError:
                profile.add_undecodable('json_decode_error')
                continue
            if isinstance(record, dict):
                records.append(record)
            else:
                profile.add_undecodable('not_an_object')
        profile.add_records(records)
    elif raw.records is not None:
        profile.add_records(raw.records)
    elif raw.table is not None and raw.fmt == 'csv':
        # CSV has no types: a cell is profiled as what it reads as (empty: null).
        profile.add_records(
            [{k: _csv_value(v) for k, v in r.items()} for r in raw.table.to_pylist()]
        )
    elif raw.table is not None:
        profile.add_table(raw.table)
    return profile


def _csv_value(text):
    if text is None or text == '':
        return None
    if not isinstance(text, str):
        return text
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


class MergeProfilesFn(beam.CombineFn):
    def create_accumulator(self):
        return DatasetProfile()

    def add_input(self, accumulator, profile):
        return accumulator.merge(profile)

    def merge_accumulators(self, accumulators):
        accumulators = iter(accumulators)
        first = next(accumulators)
        for other in accumulators:
            first.merge(other)
        return first

    def extract_output(self, accumulator):
        return accumulator.to_dict()


def _fmt(x) -> str:
    if x is None:
        return ''
    if isinstance(x, float):
        return f'{x:.4g}'
    return str(x)


def format_profile(profile: dict) -> str:
    rows = [('field', 'types', 'nulls', 'distinct~', 'min', 'p50', 'max')]
    for name, f in profile['fields'].items():
        num = f.get('numeric') or {}
        lengths = f.get('string_length') or {}
        rows.append(
            (
                name,
                ','.join(f['types']),
                f'{f["null_ratio"]:.1%}',
                str(f['distinct_estimate']),
                _fmt(num['min']) if num else f'len {lengths.get("min", "")}',
                _fmt(num.get('p50')),
                _fmt(num['max']) if num else f'len {lengths.get("max", "")}',
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ['  '.join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    head = (
        f'{PROG}: {profile["rows"]:,} records, {len(profile["fields"])} fields, '
        f'{profile["undecodable"]:,} undecodable {profile["undecodable_by_error"] or ""}'
    ).rstrip()
    return '\n'.join([head, *lines])


def run(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args, beam_args = _parser().parse_known_args(argv)
    options = cli.parse_pipeline_args(beam_args)
    FileSystems.set_options(options)
    if not FileSystems.match([args.input])[0].metadata_list:
        raise cli.UsageError(f'--input {args.input!r} matched no files')
    with beam.Pipeline(options=options) as p:
        _ = (
            p
            | 'ReadFiles' >> ReadEventFiles(args.input, args.input_format, args.batch_rows)
            | 'ProfileBatches' >> beam.Map(profile_batch)
            | 'MergeProfiles' >> beam.CombineGlobally(MergeProfilesFn())
            | 'WriteProfile' >> beam.Map(_write, args.output)
        )
    # Written by the workers, read back here: the same on every runner.
    with FileSystems.open(args.output) as f:
        profile = json.loads(f.read())
    print(format_profile(profile))
    print(f'{PROG}: wrote {args.output}')
    return 0


def _write(profile: dict, output: str) -> dict:
    with FileSystems.create(output, 'application/json') as f:
        f.write(json.dumps(profile, indent=2, ensure_ascii=False).encode())
    return profile
