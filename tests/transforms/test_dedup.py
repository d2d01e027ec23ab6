"""DeduplicateEvents in a TestPipeline."""

from __future__ import annotations

import apache_beam as beam
import pyarrow as pa
import pytest
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that
from apache_beam.testing.util import equal_to

from beam_pipelines.transforms.dedup import DeduplicateEvents


@pytest.mark.parametrize('spill', [False, True], ids=['in-memory shuffle', 'spilled shuffle'])
def test_deduplicate_keeps_first_copy_across_batches(tmp_path, spill):
    def table(ids, uri, first):
        return pa.table(
            {
                'event_id': ids,
                '_uri': [uri] * len(ids),
                '_pos': pa.array(range(first, first + len(ids)), pa.int64()),
            }
        )

    tables = [table(['a', 'b', 'a'], 'f1', 0), table(['b', 'c'], 'f0', 10), table(['a'], 'f0', 99)]
    with TestPipeline() as p:
        result = (
            p
            | beam.Create(tables)
            | 'Dedup' >> DeduplicateEvents(num_shards=3, spill_dir=str(tmp_path) if spill else None)
        )
        kept = result.events | beam.FlatMap(
            lambda t: [(r['event_id'], r['_uri'], r['_pos']) for r in t.to_pylist()]
        )
        assert_that(
            kept, equal_to([('a', 'f0', 99), ('b', 'f0', 10), ('c', 'f0', 11)]), label='Kept'
        )
        total = result.duplicates | beam.CombineGlobally(sum)
        assert_that(total, equal_to([3]), label='Duplicates')
    # Spilled, only paths crossed the shuffle: the rows went through files in the directory.
    assert bool(list(tmp_path.glob('*.arrow'))) == spill
