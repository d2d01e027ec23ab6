"""ParseEvents, CleanseEvents and ValidateEvents in a TestPipeline."""

from __future__ import annotations

import apache_beam as beam
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that
from apache_beam.testing.util import equal_to

from beam_pipelines.transforms.cleanse import CleanseEvents
from beam_pipelines.transforms.parse import ParseEvents
from beam_pipelines.transforms.validate import ValidateEvents
from tests.conftest import raw_lines

GOOD = {
    'event_id': 'e1',
    'event_type': 'Click',
    'entity_id': 'u1',
    'timestamp': '2024-05-01T12:00:00Z',
    'value': 2,
}


def _rows(tables):
    return [row for table in tables for row in table.to_pylist()]


def test_parse_cleanse_validate_split_events_and_dead_letters(schema):
    batch = raw_lines(
        [GOOD, b'not json', {**GOOD, 'event_id': 'e2', 'value': 'abc'}, {**GOOD, 'event_id': 'e3'}]
    )
    with TestPipeline() as p:
        parsed = p | 'Create' >> beam.Create([batch]) | 'Parse' >> ParseEvents(schema, 't')
        validated = (
            parsed.batches
            | 'Cleanse' >> CleanseEvents(schema)
            | 'Validate' >> ValidateEvents(schema, 't')
        )
        ids = (
            validated.valid
            | 'Rows' >> beam.FlatMap(lambda t: t.to_pylist())
            | 'Ids' >> beam.Map(lambda r: (r['event_id'], r['event_type'], r['value']))
        )
        assert_that(ids, equal_to([('e1', 'click', 2.0), ('e3', 'click', 2.0)]), label='Valid')
        stages = (
            (parsed.dead_letter, validated.dead_letter)
            | 'AllDead' >> beam.Flatten()
            | 'Stage' >> beam.Map(lambda d: (d['stage'], d['error_type']))
        )
        assert_that(
            stages,
            equal_to([('parse', 'json_decode_error'), ('validate', 'invalid_value')]),
            label='DeadLetters',
        )
