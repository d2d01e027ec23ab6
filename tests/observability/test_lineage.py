"""OpenLineage events of flagship runs, to a file and to an HTTP endpoint, and the Mermaid
diagram of the pipeline graph."""

from __future__ import annotations

import json

import pytest

from beam_pipelines import event_analytics
from beam_pipelines.generate_events import GeneratorConfig
from beam_pipelines.generate_events import generate_records
from beam_pipelines.generate_events import write_events
from beam_pipelines.observability.lineage import Lineage
from beam_pipelines.observability.lineage import dataset_id
from beam_pipelines.observability.lineage import table_id
from tests.io.test_alerts import Hook
from tests.io.test_alerts import webhook
from tests.io.test_postgres import pg_schema  # noqa: F401  (fixture)
from tests.io.test_postgres import pg_url  # noqa: F401  (fixture)

pytestmark = pytest.mark.e2e


def sample(tmp_path):
    records, _ = generate_records(GeneratorConfig(events=800, seed=2, entities=10))
    path = tmp_path / 'events.jsonl'
    write_events(records, str(path), 'jsonl')
    return path


def test_a_run_emits_start_and_complete_with_datasets_counts_and_column_lineage(
    tmp_path,
    pg_url,  # noqa: F811
    pg_schema,  # noqa: F811
):
    path, out, log = sample(tmp_path), tmp_path / 'out', tmp_path / 'lineage.jsonl'
    argv = ['--input', str(path), '--output_dir', str(out), '--lineage_file', str(log)]
    argv += ['--postgres_url', pg_url, '--pg_schema', pg_schema]
    assert event_analytics.run(argv) == 0
    start, complete = (json.loads(line) for line in log.read_text().splitlines())
    assert (start['eventType'], complete['eventType']) == ('START', 'COMPLETE')
    assert start['run']['runId'] == complete['run']['runId']
    assert complete['job'] == {
        **complete['job'],
        'namespace': 'beam_pipelines',
        'name': 'event_analytics',
    }
    assert start['run']['facets']['processing_engine']['name'] == 'Apache Beam'
    (source,) = complete['inputs']
    assert (source['namespace'], source['name']) == ('file', str(path))
    counts = json.loads((out / 'run_summary.json').read_text())['counts']
    outputs = {(o['namespace'], o['name']): o for o in complete['outputs']}
    expected_rows = {
        ('file', str(out / 'events')): counts['valid'],
        ('file', str(out / 'aggregates')): counts['aggregates'],
        ('file', str(out / 'dead_letter')): counts['dead_letter'],
        table_id(pg_url, pg_schema, 'events'): counts['postgres_events'],
        table_id(pg_url, pg_schema, 'aggregates'): counts['postgres_aggregates'],
    }
    for key, rows in expected_rows.items():
        assert outputs[key]['outputFacets']['outputStatistics']['rowCount'] == rows, key
    assert table_id(pg_url, pg_schema, 'events')[0].startswith('postgres://')
    columns = outputs[('file', str(out / 'aggregates'))]['facets']['columnLineage']['fields']
    (count_from,) = columns['count']['inputFields']
    assert (count_from['name'], count_from['field']) == (str(path), 'event_id')
    assert columns['count']['transformationType'] == 'AGGREGATION'
    assert {f['field'] for f in columns['p95']['inputFields']} == {'value'}
    assert columns['window_start']['inputFields'][0]['field'] == 'timestamp'
    diagram = (out / 'lineage.mmd').read_text()
    assert diagram.startswith('flowchart LR') and '["Deduplicate"]' in diagram
    assert 'Count' not in diagram  # the summary's bookkeeping is left out


def test_events_go_to_an_http_endpoint(tmp_path):
    path, hook = sample(tmp_path), Hook()
    with webhook(hook) as url:
        base = url.rsplit('/', 1)[0]
        argv = ['--input', str(path), '--output_dir', str(tmp_path / 'o'), '--lineage_url', base]
        assert event_analytics.run(argv) == 0
    assert [e['eventType'] for e in hook.bodies] == ['START', 'COMPLETE']


def test_a_failed_run_is_a_fail_event_with_the_error(tmp_path):
    log = tmp_path / 'l.jsonl'
    lineage = Lineage('job', 'ns', str(log), None)
    try:
        raise ValueError('the disk is full')
    except ValueError as exc:
        lineage.fail([], [], exc)
    (event,) = (json.loads(line) for line in log.read_text().splitlines())
    assert event['eventType'] == 'FAIL'
    error = event['run']['facets']['errorMessage']
    assert error['message'] == 'the disk is full' and 'ValueError' in error['stackTrace']


@pytest.mark.parametrize(
    ('location', 'expected'),
    [
        ('s3://bucket/events/2026/*.jsonl', ('s3://bucket', 'events/2026/*.jsonl')),
        ('gs://b/out/events', ('gs://b', 'out/events')),
        ('redis://cache:6380/2', ('redis://cache:6380', '/2')),
    ],
)
def test_dataset_names_follow_openlineage_conventions(location, expected):
    assert dataset_id(location) == expected
