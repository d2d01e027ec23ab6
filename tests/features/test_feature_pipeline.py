"""Feature extraction in Beam: a bounded run equals a TestStream streaming run; resampling with
explicit gap filling; and end to end, offline features (Parquet) equal the online vectors in
the real Redis for the same entity and time."""

from __future__ import annotations

import json

import apache_beam as beam
import numpy as np
import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.options.pipeline_options import StandardOptions
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.test_stream import TestStream
from apache_beam.testing.util import assert_that
from apache_beam.testing.util import equal_to
from apache_beam.transforms.window import TimestampedValue

from beam_pipelines import cli
from beam_pipelines import feature_pipeline
from beam_pipelines.columnar.timestamps import TIMESTAMP_TYPE
from beam_pipelines.features.resample import resample
from beam_pipelines.features.rolling import FeatureSpec
from beam_pipelines.io.feature_store import feature_key
from beam_pipelines.transforms.features import ExtractFeatures
from tests.io.test_redis import REDIS_URL
from tests.io.test_redis import client  # noqa: F401  (fixture)
from tests.io.test_redis import prefix  # noqa: F401  (fixture)

SPEC = FeatureSpec(horizons_secs=(60.0, 600.0), lags=2)
T0 = 1_700_000_000


def events(rows) -> pa.Table:
    """(entity, seconds after T0, type, value) rows."""
    return pa.table(
        {
            'event_id': [f'{r[0]}-{r[1]}' for r in rows],
            'entity_id': [r[0] for r in rows],
            'event_type': [r[2] for r in rows],
            'timestamp': pa.array([(T0 + r[1]) * 1_000_000 for r in rows], pa.int64()).cast(
                TIMESTAMP_TYPE
            ),
            'value': pa.array([r[3] for r in rows], pa.float64()),
        }
    )


def rows(n=120, seed=3):
    rng = np.random.default_rng(seed)
    out = []
    for entity in ('a', 'b'):
        t = np.cumsum(rng.integers(1, 40, n))
        out += [(entity, int(x), 'buy' if x % 3 else 'view', float(rng.normal(50, 5))) for x in t]
    return out


def rounded(table: pa.Table):
    for r in table.to_pylist():
        yield tuple(
            round(v, 9) if isinstance(v, float) else v
            for k, v in r.items()
            if k not in ('event_time',)
        )


def streaming() -> TestPipeline:
    options = PipelineOptions()
    options.view_as(StandardOptions).streaming = True
    return TestPipeline(options=options)


def test_a_stream_out_of_order_within_the_watermark_equals_the_batch_run():
    data = rows()
    # The plain computation, entity by entity, is the reference both runs must match.
    from beam_pipelines.features.rolling import EntityHistory
    from beam_pipelines.features.rolling import rolling_features

    expected = []
    for entity in ('a', 'b'):
        mine = sorted((r for r in data if r[0] == entity), key=lambda r: r[1])
        table, _ = rolling_features(EntityHistory.empty(), events(mine), SPEC)
        expected += list(rounded(table))
    stream = TestStream()
    horizon = max(r[1] for r in data) + 1
    for start in range(0, horizon, 600):
        part = [r for r in data if start <= r[1] < start + 600][::-1]  # newest first
        stream = stream.add_elements(
            [TimestampedValue(events(part[i : i + 7]), T0 + start) for i in range(0, len(part), 7)]
        )
        stream = stream.advance_watermark_to(T0 + start + 600)
    stream = stream.advance_watermark_to_infinity()
    with streaming() as p:
        got = p | stream | ExtractFeatures(SPEC, num_shards=2)
        assert_that(got.features | beam.FlatMap(rounded), equal_to(expected))
    with TestPipeline() as p:
        batch = p | beam.Create([events(data)]) | ExtractFeatures(SPEC, num_shards=2)
        assert_that(batch.features | beam.FlatMap(rounded), equal_to(expected), label='Batch')


def test_resampling_fills_gaps_explicitly():
    table = events(
        [('a', 0, 'x', 1.0), ('a', 10, 'x', 2.0), ('a', 185, 'x', 5.0), ('b', 60, 'x', None)]
    )
    zero = resample(table, 60, 'zero').to_pylist()
    assert [(r['entity_id'], r['count'], r['value'], r['filled']) for r in zero] == [
        ('a', 2, 3.0, False),
        ('a', 0, 0.0, True),
        ('a', 0, 0.0, True),
        ('a', 1, 5.0, False),
        ('b', 1, None, False),  # an event without a value: counted, no value
    ]
    ffill = [r['value'] for r in resample(table, 60, 'ffill', 'mean').to_pylist()]
    assert ffill[:4] == [1.5, 1.5, 1.5, 5.0]
    null = [r['value'] for r in resample(table, 60, 'null', 'last').to_pylist()]
    assert null[:4] == [2.0, None, None, 5.0]


def write_events(path, data):
    with open(path, 'wb') as f:
        for entity, t, typ, value in data:
            f.write(
                orjson.dumps(
                    {
                        'event_id': f'{entity}-{t}',
                        'entity_id': entity,
                        'event_type': typ,
                        'timestamp': T0 + t,
                        'value': value,
                    }
                )
                + b'\n'
            )


@pytest.mark.e2e
def test_offline_features_equal_the_online_vectors(tmp_path, client, prefix):  # noqa: F811
    data = rows(200, seed=8)
    write_events(tmp_path / 'events.jsonl', data)
    out = tmp_path / 'out'
    args = ['--input', str(tmp_path / 'events.jsonl'), '--output_dir', str(out)]
    args += ['--redis_url', REDIS_URL, '--redis_prefix', prefix, '--feature_horizons', '1m,10m']
    args += ['--resample_secs', '300', '--feature_event_types', 'buy']
    assert feature_pipeline.run(args) == 0
    summary = json.loads((out / 'run_summary.json').read_text())
    assert summary['counts']['features'] == len(data) and summary['balanced']
    assert summary['counts']['online_feature_vectors'] == 2
    offline = pq.read_table(out / 'features').sort_by(
        [('entity_id', 'ascending'), ('event_time', 'ascending')]
    )
    stats = json.loads((out / 'features' / '_normalization.json').read_text())['columns']
    assert set(stats) >= {'count_1m', 'mean_10m', 'ratio_buy_10m', 'lag_1'}
    for entity in ('a', 'b'):
        mine = offline.filter(pa.compute.equal(offline.column('entity_id'), entity)).to_pylist()
        last = mine[-1]
        online = {
            k.decode(): v.decode() for k, v in client.hgetall(feature_key(prefix, entity)).items()
        }
        assert int(online.pop('event_time_us')) == int(last['event_time'].timestamp() * 1_000_000)
        for name, text in online.items():
            want = last[name]
            if want is None:
                assert text == ''
            elif isinstance(want, float):
                assert float(text) == want, name  # exactly the offline value
            else:
                assert text == str(want), name
        assert last['mean_10m_norm'] == pytest.approx(
            (last['mean_10m'] - stats['mean_10m']['mean']) / stats['mean_10m']['stddev']
        )
    series = pq.read_table(out / 'timeseries').to_pylist()
    assert sum(r['count'] for r in series) == len(data)
    assert any(r['filled'] for r in series) or all(r['count'] for r in series)


def test_saved_statistics_are_applied_as_they_are(tmp_path):
    data = rows(60, seed=1)
    write_events(tmp_path / 'events.jsonl', data)
    train = tmp_path / 'train'
    base = ['--input', str(tmp_path / 'events.jsonl'), '--feature_horizons', '1m']
    assert feature_pipeline.run([*base, '--output_dir', str(train)]) == 0
    stats_path = train / 'features' / '_normalization.json'
    serve = tmp_path / 'serve'
    assert (
        feature_pipeline.run(
            [*base, '--output_dir', str(serve), '--normalization_stats', str(stats_path)]
        )
        == 0
    )
    assert not (serve / 'features' / '_normalization.json').exists()  # applied, not recomputed
    a = pq.read_table(train / 'features').sort_by('event_id').column('count_1m_norm').to_pylist()
    b = pq.read_table(serve / 'features').sort_by('event_id').column('count_1m_norm').to_pylist()
    assert a == b


@pytest.mark.parametrize(
    'extra, fragment',
    [
        (['--normalization_stats', 'x.json'], 'need --features'),
        (['--features', '--feature_horizons', '5 minutes'], 'positive duration'),
        (['--features', '--state_dir', '/tmp/s'], 'incrementally'),
        (['--features', '--normalization_stats', '/nonexistent.json'], 'nonexistent'),
    ],
)
def test_bad_feature_flags_are_one_line_errors(tmp_path, extra, fragment):
    from beam_pipelines import event_analytics

    (tmp_path / 'e.jsonl').write_text('{}\n')
    with pytest.raises(cli.UsageError, match=fragment):
        event_analytics.run(
            ['--input', str(tmp_path / 'e.jsonl'), '--output_dir', str(tmp_path), *extra]
        )


def test_the_latest_anomaly_score_is_the_entitys_own_model():
    from beam_pipelines.anomaly.model import KeyModel
    from beam_pipelines.anomaly.spec import parse_spec

    anomaly = parse_spec(
        {
            'warmup': 5,
            'detectors': [{'kind': 'zscore', 'window': 20}],
            'calibration': {'kind': 'fixed'},
        }
    )
    spec = FeatureSpec(horizons_secs=(60.0,), lags=1, anomaly=anomaly)
    data = rows(80, seed=5)
    expected = []
    for entity in ('a', 'b'):
        model = KeyModel(anomaly)
        for _, t, _, v in sorted((r for r in data if r[0] == entity), key=lambda r: r[1]):
            expected.append((f'{entity}-{t}', round(model.update(float(T0 + t), v).score, 12)))
    with TestPipeline() as p:
        got = p | beam.Create([events(data)]) | ExtractFeatures(spec, num_shards=2)
        pairs = got.features | beam.FlatMap(
            lambda t: [(r['event_id'], round(r['anomaly_score'], 12)) for r in t.to_pylist()]
        )
        assert_that(pairs, equal_to(expected))
