"""The REST polling source against a real local HTTP server (every pagination style, retries,
rate limits, the incremental cursor), without Beam, under Beam's ``PeriodicImpulse``, and in the
flagship."""

from __future__ import annotations

import contextlib
import http.server
import json
import threading
import urllib.parse

import apache_beam as beam
import orjson
import pyarrow.parquet as pq
import pytest
from apache_beam.io.filesystems import FileSystems
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that
from apache_beam.testing.util import equal_to

from beam_pipelines import event_analytics
from beam_pipelines.columnar.timestamps import parse_timestamp
from beam_pipelines.generate_events import write_events
from beam_pipelines.io.rest_api import Cursor
from beam_pipelines.io.rest_api import RestApiError
from beam_pipelines.io.rest_api import RestApiSpec
from beam_pipelines.io.rest_api import RestPoller
from beam_pipelines.io.rest_source import ReadFromRestApi
from beam_pipelines.throttling import RetryPolicy

T0 = 1_714_521_600


def record(i: int, second: int | None = None) -> dict:
    return {
        'event_id': f'e{i}',
        'entity_id': f'u{i % 3}',
        'event_type': 'order',
        'timestamp': f'2024-05-01T00:{(second if second is not None else i) // 60:02d}:'
        f'{(second if second is not None else i) % 60:02d}Z',
        'value': float(i),
    }


class Api:
    """The server's data and behaviour; handlers read it under the lock."""

    def __init__(self, records):
        self.records = list(records)
        self.lock = threading.Lock()
        self.log: list[dict] = []
        self.failures: list[tuple[int, str | None]] = []  # (status, Retry-After) to answer first
        self.on_first_page = None  # called before answering a poll's first page
        self.max_page = 1000  # the API's own cap on a page, whatever the client asks
        self.link_base = None  # None: relative Link headers; else this origin

    def select(self, query: dict) -> list[dict]:
        since = query.get('since')
        if since is None:
            return list(self.records)
        limit = parse_timestamp(since)
        return [r for r in self.records if parse_timestamp(r['timestamp']) >= limit]  # inclusive


def _handler(api: Api):
    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_GET(self):
            url = urllib.parse.urlsplit(self.path)
            query = dict(urllib.parse.parse_qsl(url.query))
            with api.lock:
                api.log.append({'path': url.path, **query})
                if api.failures:
                    status, retry_after = api.failures.pop(0)
                    self.send_response(status)
                    if retry_after:
                        self.send_header('Retry-After', retry_after)
                    self.end_headers()
                    return
                first = query.get('offset', '0') == '0' and query.get('page', '1') == '1'
                if first and 'cursor' not in query and api.on_first_page:
                    api.on_first_page(api)
                rows = api.select(query)
            body, headers = self._page(url.path, query, rows)
            if body is None:
                self.send_response(404)
                self.end_headers()
                return
            data = orjson.dumps(body)
            self.send_response(200)
            self.send_header('Content-Type', 'application/json')
            self.send_header('Content-Length', str(len(data)))
            for k, v in headers.items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(data)

        def _page(self, path, query, rows):
            limit = min(int(query.get('limit', 1000)), api.max_page)
            if path == '/all':
                return rows, {}
            if path == '/offset':
                start = int(query['offset'])
                return {'data': rows[start : start + limit]}, {}
            if path == '/page':
                start = (int(query['page']) - 1) * limit
                return {'result': {'items': rows[start : start + limit]}}, {}
            if path == '/cursor':
                start = int(query.get('cursor', 0))
                following = start + 4 if start + 4 < len(rows) else None
                return {'items': rows[start : start + 4], 'meta': {'next': following}}, {}
            if path == '/link':
                start = int(query.get('start', 0))
                headers = {}
                if start + limit < len(rows):
                    q = {**query, 'start': start + limit}
                    link = f'/link?{urllib.parse.urlencode(q)}'
                    if api.link_base:
                        link = api.link_base + link
                    headers['Link'] = f'<{link}>; rel="next"'
                return rows[start : start + limit], headers
            return None, {}

    return Handler


@contextlib.contextmanager
def serving(api: Api):
    server = http.server.ThreadingHTTPServer(('127.0.0.1', 0), _handler(api))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f'http://127.0.0.1:{server.server_address[1]}'
    finally:
        server.shutdown()
        server.server_close()


def poll_all(spec, cursor=None, **kwargs):
    import requests

    poller = RestPoller(spec, requests.Session(), **kwargs)
    lines, last = [], cursor or Cursor()
    for page, after in poller.poll(last):
        lines += page
        last = after
    return [orjson.loads(x).get('event_id') for x in lines], last, poller


SPECS = {
    'none': dict(pagination='none'),
    'offset': dict(pagination='offset', items_field='data', page_size=4),
    'page': dict(pagination='page', items_field='result.items', page_size=4),
    'cursor': dict(pagination='cursor', items_field='items', next_cursor_field='meta.next'),
    'link': dict(pagination='link', page_size=4),
}


@pytest.mark.parametrize('style', sorted(SPECS))
def test_every_pagination_style_reads_each_record_once(style):
    api = Api([record(i) for i in range(10)])
    path = {'none': 'all'}.get(style, style)
    with serving(api) as base:
        ids, cursor, poller = poll_all(RestApiSpec(f'{base}/{path}', **SPECS[style]))
    assert ids == [f'e{i}' for i in range(10)]
    # offset and page end on an empty page (a short page may be the API's own cap)
    assert poller.requests == {'none': 1, 'offset': 4, 'page': 4, 'cursor': 3, 'link': 3}[style]
    assert cursor.since == '2024-05-01T00:00:09Z' and cursor.boundary_ids == {'"e9"'}


def test_pages_capped_below_the_size_asked_for_are_read_to_the_end():
    api = Api([record(i) for i in range(10)])
    api.max_page = 3  # the client asks for 4
    with serving(api) as base:
        ids, _, poller = poll_all(RestApiSpec(f'{base}/offset', **SPECS['offset']))
        paged, _, _ = poll_all(RestApiSpec(f'{base}/page', **SPECS['page']))
    assert ids == [f'e{i}' for i in range(10)] and poller.requests == 5
    assert len(paged) == 10


def test_links_are_resolved_and_kept_on_the_api_origin():
    api = Api([record(i) for i in range(6)])
    with serving(api) as base:
        ids, _, _ = poll_all(RestApiSpec(f'{base}/link', **SPECS['link']))  # relative links
        assert ids == [f'e{i}' for i in range(6)]
        api.link_base = 'http://elsewhere.example'
        with pytest.raises(RestApiError, match='leaves the API origin'):
            poll_all(RestApiSpec(f'{base}/link', **SPECS['link']))


def test_without_since_a_history_longer_than_max_pages_is_an_error_not_a_silent_stop():
    api = Api([record(i) for i in range(10)])
    with serving(api) as base:
        with pytest.raises(RestApiError, match='max_pages'):
            poll_all(RestApiSpec(f'{base}/offset', **SPECS['offset'], max_pages=2))
        spec = RestApiSpec(
            f'{base}/offset', **{**SPECS['offset'], 'since_param': 'since'}, max_pages=2
        )
        first, cursor, _ = poll_all(spec)
        rest, _, _ = poll_all(spec, cursor)  # with since, the next poll goes on
    assert first == [f'e{i}' for i in range(8)] and rest == ['e8', 'e9']


def test_records_without_an_id_or_a_time_are_passed_on_once():
    no_id = {'entity_id': 'u', 'timestamp': '2024-05-01T00:00:09Z', 'value': 1.0}
    no_time = {'event_id': 'x', 'timestamp': 'soon'}
    api = Api([record(9), no_id, no_time, {**record(8), 'event_id': 1}])
    with serving(api) as base:
        spec = RestApiSpec(f'{base}/all')
        _, cursor, _ = poll_all(spec)
        api.records += [{**record(9), 'event_id': '1'}]  # id "1" is not id 1
        again, later, _ = poll_all(spec, cursor)
    assert len(cursor.boundary_ids) == 2 and len(cursor.timeless) == 1
    assert again == ['1']
    assert Cursor.from_json(later.to_json()) == later


def test_the_cursor_reads_only_what_is_new_even_at_the_boundary_time():
    api = Api([record(i) for i in range(6)])
    with serving(api) as base:
        spec = RestApiSpec(f'{base}/offset', **{**SPECS['offset'], 'since_param': 'since'})
        first, cursor, _ = poll_all(spec)
        # Nothing new: the inclusive `since` returns e5 again, and it is not passed on again.
        again, same, _ = poll_all(spec, cursor)
        # A record at the boundary second (e6 at 00:05, like e5) and later ones.
        api.records += [record(6, second=5), record(7), record(8)]
        later, last, _ = poll_all(spec, same)
    assert first == [f'e{i}' for i in range(6)]
    assert (again, same) == ([], cursor)
    assert later == ['e6', 'e7', 'e8']
    assert [q.get('since') for q in api.log if q['offset'] == '0'] == [
        None,
        '2024-05-01T00:00:05Z',
        '2024-05-01T00:00:05Z',
    ]
    assert last.since == '2024-05-01T00:00:08Z'
    assert Cursor.from_json(last.to_json()) == last


def test_without_a_since_parameter_the_client_filters():
    api = Api([record(i) for i in range(5)])
    with serving(api) as base:
        spec = RestApiSpec(f'{base}/all')
        _, cursor, _ = poll_all(spec)
        api.records.append(record(5))
        ids, _, _ = poll_all(spec, cursor)
    assert ids == ['e5']


def test_records_without_a_time_are_passed_on_for_the_pipeline_to_judge():
    api = Api([record(1), {'event_id': 'x', 'timestamp': 'soon'}, 7])
    with serving(api) as base:
        import requests

        poller = RestPoller(RestApiSpec(f'{base}/all'), requests.Session())
        (lines, cursor), *_ = list(poller.poll(Cursor()))
    assert [orjson.loads(x) for x in lines][1:] == [{'event_id': 'x', 'timestamp': 'soon'}, 7]
    assert cursor.boundary_ids == {'"e1"'}


def test_transient_failures_are_retried_honouring_retry_after():
    api = Api([record(i) for i in range(3)])
    api.failures = [(503, None), (429, '3'), (502, None)]
    slept = []
    with serving(api) as base:
        ids, _, poller = poll_all(
            RestApiSpec(f'{base}/all'), retry=RetryPolicy(4, 0.01, 1.0), sleep=slept.append
        )
    assert ids == ['e0', 'e1', 'e2'] and poller.requests == 4
    assert slept == [0.01, 3.0, 0.04]


def test_refusals_and_exhausted_retries_fail_the_poll():
    api = Api([record(0)])
    with serving(api) as base:
        with pytest.raises(RestApiError, match='HTTP 404'):
            poll_all(RestApiSpec(f'{base}/nothing-here'))
        api.failures = [(500, None)] * 3
        with pytest.raises(RestApiError, match='after 3 attempts'):
            poll_all(RestApiSpec(f'{base}/all'), retry=RetryPolicy(3, 0.0), sleep=lambda s: None)
        with pytest.raises(RestApiError, match='not a list'):
            poll_all(RestApiSpec(f'{base}/all', items_field='data'))


def test_requests_are_paced():
    api = Api([record(i) for i in range(12)])
    now = [0.0]
    slept = []

    def sleep(secs):
        slept.append(secs)
        now[0] += secs

    with serving(api) as base:
        spec = RestApiSpec(f'{base}/offset', **SPECS['offset'], requests_per_sec=5)
        poll_all(spec, sleep=sleep, clock=lambda: now[0])
    assert sum(slept) == pytest.approx(3 * 0.2)  # 4 requests: the first free, then 5 a second


@pytest.mark.parametrize('spec_args', [dict(url='ftp://x'), dict(url='http://x', pagination='?')])
def test_bad_specs(spec_args):
    with pytest.raises(ValueError):
        RestApiSpec(**spec_args)


def _ids(batch):
    return [orjson.loads(line)['event_id'] for line in batch.lines]


def test_periodic_polls_keep_the_cursor_in_beam_state():
    api = Api([])
    added = iter(range(100))

    def grow(api):  # every poll finds three new records
        api.records += [record(next(added)) for _ in range(3)]

    api.on_first_page = grow
    with serving(api) as base:
        spec = RestApiSpec(f'{base}/offset', **{**SPECS['offset'], 'since_param': 'since'})
        with TestPipeline() as p:
            read = p | ReadFromRestApi(spec, poll_secs=0.3, stop_after_secs=1.2)
            ids = read.batches | beam.FlatMap(_ids)
            polls = 4  # ticks at 0, 0.3, 0.6 and 0.9 s
            assert_that(ids, equal_to([f'e{i}' for i in range(3 * polls)]))
    sinces = [q.get('since') for q in api.log if q['offset'] == '0']
    assert len(sinces) == polls and sinces[0] is None
    assert sinces[1:] == sorted(sinces[1:]) and len(set(sinces[1:])) == polls - 1


def test_a_state_file_carries_the_cursor_between_bounded_runs(tmp_path):
    api = Api([record(i) for i in range(4)])
    state_file = str(tmp_path / 'cursor.json')

    with serving(api) as base:
        with TestPipeline() as p:
            read = p | ReadFromRestApi(RestApiSpec(f'{base}/all'), state_file=state_file)
            assert_that(read.batches | beam.FlatMap(_ids), equal_to([f'e{i}' for i in range(4)]))
            _ = read.state | beam.MapTuple(lambda src, dst: FileSystems.rename([src], [dst]))
        api.records.append(record(4))
        with TestPipeline() as p:
            read = p | ReadFromRestApi(RestApiSpec(f'{base}/all'), state_file=state_file)
            assert_that(read.batches | beam.FlatMap(_ids), equal_to(['e4']))
            _ = read.state | beam.MapTuple(lambda src, dst: FileSystems.rename([src], [dst]))
    with open(state_file, 'rb') as f:
        assert Cursor.from_json(f.read()).since == '2024-05-01T00:00:04Z'


def _rest_args(base, out, *more):
    return [
        '--source',
        'rest_api',
        '--rest_url',
        f'{base}/offset',
        '--rest_pagination',
        'offset',
        '--rest_items_field',
        'data',
        '--rest_page_size',
        '50',
        '--rest_since_param',
        'since',
        '--output_dir',
        str(out),
        *more,
    ]


@pytest.mark.e2e
def test_the_flagship_reads_an_api_like_a_file(tmp_path):
    records = [record(i, second=i // 4) for i in range(230)]
    records += [{**records[7]}, {'event_id': 'bad', 'entity_id': 'u', 'event_type': 'x'}]
    api = Api(records)
    with serving(api) as base:
        assert event_analytics.run(_rest_args(base, tmp_path / 'api', '--stop_at_end')) == 0
    path = tmp_path / 'events.jsonl'
    write_events(records, str(path), 'jsonl')
    assert event_analytics.run(['--input', str(path), '--output_dir', str(tmp_path / 'file')]) == 0
    summaries = [
        json.loads((tmp_path / d / 'run_summary.json').read_text()) for d in ('api', 'file')
    ]
    assert summaries[0]['counts'] == summaries[1]['counts']
    assert summaries[0]['counts']['read'] == 232 and summaries[0]['counts']['duplicates'] == 1


@pytest.mark.e2e
def test_incremental_runs_poll_from_the_committed_cursor(tmp_path):
    api = Api([record(i) for i in range(40)])
    state = str(tmp_path / 'state')
    with serving(api) as base:
        args = _rest_args(base, tmp_path / 'out', '--state_dir', state)
        assert event_analytics.run(args) == 0
        api.records += [record(i) for i in range(40, 50)]
        assert event_analytics.run(args) == 0
        assert event_analytics.run(args) == 0
    sinces = [q.get('since') for q in api.log if q['offset'] == '0']
    assert sinces == [None, '2024-05-01T00:00:39Z', '2024-05-01T00:00:49Z']
    events = FileSystems.match([str(tmp_path / 'out' / 'events' / 'run-*')])[0].metadata_list
    ids = [i for m in events for i in pq.read_table(m.path).column('event_id').to_pylist()]
    assert sorted(ids) == sorted(f'e{i}' for i in range(50))  # each once, across the runs


@pytest.mark.parametrize(
    'args, match',
    [
        (['--source', 'rest_api', '--stop_at_end'], '--rest_url'),
        (['--source', 'rest_api', '--rest_url', 'http://127.0.0.1:9/x'], '--stop_at_end'),
        (['--source', 'rest_api', '--rest_url', 'file:///x', '--stop_at_end'], 'http'),
        (
            [
                '--source',
                'rest_api',
                '--rest_url',
                'http://h/x',
                '--stop_at_end',
                '--rest_poll_secs',
                '0',
            ],
            '--rest_poll_secs',
        ),
    ],
)
def test_rest_source_flags(tmp_path, args, match):
    from beam_pipelines import cli

    with pytest.raises(cli.UsageError, match=match):
        event_analytics.run([*args, '--output_dir', str(tmp_path)])


@pytest.mark.e2e
def test_the_local_continuous_mode_polls_on_every_tick(tmp_path, capsys):
    api = Api([])
    added = iter(range(100))
    api.on_first_page = lambda api: api.records.extend(record(next(added)) for _ in range(3))
    with serving(api) as base:
        args = _rest_args(base, tmp_path / 'out', '--state_dir', str(tmp_path / 'state'))
        assert event_analytics.run([*args, '--every', '0.1s', '--runs', '3']) == 0
    printed = capsys.readouterr().out
    assert printed.count('event_analytics: read 3 records') == 3  # each tick reads what is new
    events = FileSystems.match([str(tmp_path / 'out' / 'events' / 'run-*')])[0].metadata_list
    ids = [i for m in events for i in pq.read_table(m.path).column('event_id').to_pylist()]
    assert sorted(ids) == sorted(f'e{i}' for i in range(9))


def test_the_cursor_state_works_on_the_streaming_direct_runner():
    """The poll's state spec (a pickled Cursor) encodes on the BundleBasedDirectRunner too, the
    runner of streaming tests: ticks from a TestStream, three new records found per poll."""
    from apache_beam.options.pipeline_options import PipelineOptions
    from apache_beam.options.pipeline_options import StandardOptions
    from apache_beam.testing.test_stream import TestStream

    from beam_pipelines.io.rest_source import _PollFn

    api = Api([])
    added = iter(range(100))
    api.on_first_page = lambda api: api.records.extend(record(next(added)) for _ in range(3))
    options = PipelineOptions()
    options.view_as(StandardOptions).streaming = True
    with serving(api) as base:
        spec = RestApiSpec(f'{base}/all', since_param='since')
        ticks = TestStream().add_elements([('api', None)]).add_elements([('api', None)])
        with TestPipeline(options=options) as p:
            batches = (
                p
                | ticks.advance_watermark_to_infinity()
                | beam.ParDo(_PollFn(spec, None, None, RetryPolicy())).with_outputs(
                    'state', main='batches'
                )
            )
            assert_that(batches.batches | beam.FlatMap(_ids), equal_to([f'e{i}' for i in range(6)]))
