"""A plain per-element Beam pipeline doing the flagship's parse + validate + window work.

This is how such a pipeline is usually hand-written: ``ReadFromText`` yields one line per
element, ``json.loads`` and the pydantic model (or, with ``--validation light``, a few
hand-written checks) check one record at a time (failures to a dead letter output), events are
timestamped, put in fixed windows and combined per key. It exists so ``make bench`` can report
the columnar flagship's speed as a ratio to it.

    python -m beam_pipelines.baselines.per_element --input events.jsonl --output_dir out_base
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import sys
from typing import NamedTuple

import apache_beam as beam
import pydantic
from apache_beam import coders
from apache_beam import pvalue
from apache_beam.io import textio
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.transforms import window

from beam_pipelines.columnar.timestamps import parse_timestamp
from beam_pipelines.schema import Event

__all__ = ['build', 'run']

DEAD = 'dead'


class _LightEvent(NamedTuple):
    entity_id: str
    event_type: str
    value: float | None
    timestamp: dt.datetime


def _light_validate(record) -> _LightEvent:
    """Hand-written checks: required strings, a number or null, a timestamp."""
    if not isinstance(record, dict):
        raise ValueError('not an object')
    ids = [record.get(k) for k in ('event_id', 'event_type', 'entity_id')]
    if not all(isinstance(v, str) and v.strip() for v in ids):
        raise ValueError('missing id field')
    value = record.get('value')
    if value is not None:
        value = float(value)
        if isinstance(record['value'], bool) or not math.isfinite(value):
            raise ValueError('bad value')
    return _LightEvent(
        ids[2].strip(), ids[1].strip().lower(), value, parse_timestamp(record.get('timestamp'))
    )


class _ParseValidateFn(beam.DoFn):
    def __init__(self, validation: str):
        self._validate = Event.model_validate if validation == 'pydantic' else _light_validate

    def process(self, line: bytes):
        try:
            record = json.loads(line)  # bytes: invalid UTF-8 raises ValueError here
            event = self._validate(record)
        except (ValueError, TypeError, pydantic.ValidationError) as exc:
            payload = line.decode('utf-8', 'backslashreplace')
            yield pvalue.TaggedOutput(DEAD, {'payload': payload, 'error': str(exc)[:200]})
            return
        yield window.TimestampedValue(event, event.timestamp.timestamp())


class _StatsFn(beam.CombineFn):
    """count, value count, sum, min, max, mean and sample stddev (Welford/Chan)."""

    def create_accumulator(self):
        return (0, 0, 0.0, math.inf, -math.inf, 0.0, 0.0)

    def add_input(self, acc, value):
        count, n, total, lo, hi, mean, m2 = acc
        if value is None:
            return (count + 1, n, total, lo, hi, mean, m2)
        n += 1
        delta = value - mean
        mean += delta / n
        return (
            count + 1,
            n,
            total + value,
            min(lo, value),
            max(hi, value),
            mean,
            m2 + delta * (value - mean),
        )

    def merge_accumulators(self, accumulators):
        out = self.create_accumulator()
        for count, n, total, lo, hi, mean, m2 in accumulators:
            c0, n0, t0, lo0, hi0, mean0, m20 = out
            nn = n0 + n
            if nn:
                delta = mean - mean0
                mean0 = mean0 + delta * n / nn
                m20 = m20 + m2 + delta * delta * n0 * n / nn
            out = (c0 + count, nn, t0 + total, min(lo0, lo), max(hi0, hi), mean0, m20)
        return out

    def extract_output(self, acc):
        count, n, total, lo, hi, mean, m2 = acc
        return {
            'count': count,
            'value_count': n,
            'sum': total if n else None,
            'min': lo if n else None,
            'max': hi if n else None,
            'mean': mean if n else None,
            'stddev': math.sqrt(m2 / (n - 1)) if n > 1 else None,
        }


def _format(kv, win=beam.DoFn.WindowParam):
    (entity_id, event_type), stats = kv
    return json.dumps(
        {
            'entity_id': entity_id,
            'event_type': event_type,
            'window_start': win.start.to_utc_datetime().isoformat(),
            **stats,
        }
    )


def build(
    p, input_pattern: str, output_dir: str, window_secs: float = 60.0, validation: str = 'pydantic'
):
    results = (
        p
        # Bytes, not str: the default UTF-8 coder kills the pipeline on one invalid line.
        | 'ReadLines' >> textio.ReadFromText(input_pattern, coder=coders.BytesCoder())
        | 'ParseValidate'
        >> beam.ParDo(_ParseValidateFn(validation)).with_outputs(DEAD, main='events')
    )
    _ = (
        results.events
        | 'Window' >> beam.WindowInto(window.FixedWindows(window_secs))
        | 'KeyByEntityType' >> beam.Map(lambda e: ((e.entity_id, e.event_type), e.value))
        | 'Stats' >> beam.CombinePerKey(_StatsFn())
        | 'Format' >> beam.Map(_format)
        | 'WriteAggregates' >> textio.WriteToText(f'{output_dir}/aggregates/part')
    )
    _ = (
        results[DEAD]
        | 'DeadToJson' >> beam.Map(json.dumps)
        | 'WriteDead' >> textio.WriteToText(f'{output_dir}/dead_letter/part')
    )


def run(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog='per_element')
    parser.add_argument('--input', required=True)
    parser.add_argument('--output_dir', required=True)
    parser.add_argument('--window_size_secs', type=float, default=60.0)
    parser.add_argument(
        '--validation',
        choices=('pydantic', 'light'),
        default='pydantic',
        help='pydantic: the Event model per record; light: hand-written checks.',
    )
    args, beam_args = parser.parse_known_args(argv)
    with beam.Pipeline(options=PipelineOptions(beam_args)) as p:
        build(p, args.input, args.output_dir, args.window_size_secs, args.validation)
    return 0


if __name__ == '__main__':
    sys.exit(run())
