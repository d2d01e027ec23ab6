"""Events on the wire as CSV or Avro (a schema file or a schema registry), into the parser."""

from __future__ import annotations

import io
import json
import struct
import threading
from http.server import BaseHTTPRequestHandler
from http.server import ThreadingHTTPServer

import fastavro
import pytest

from beam_pipelines import event_analytics
from beam_pipelines.columnar.batch import RawBatch
from beam_pipelines.columnar.parse import parse_raw_batch
from beam_pipelines.io.wire_formats import WireFormat
from beam_pipelines.schema import compile_schema
from beam_pipelines.schema import load_model
from tests.io.test_redis import REDIS_URL
from tests.io.test_redis import client  # noqa: F401  (fixture)
from tests.io.test_redis import prefix  # noqa: F401  (fixture)

SCHEMA = {
    'type': 'record',
    'name': 'Event',
    'fields': [
        {'name': 'event_id', 'type': 'string'},
        {'name': 'event_type', 'type': 'string'},
        {'name': 'entity_id', 'type': 'string'},
        {'name': 'timestamp', 'type': 'string'},
        {'name': 'value', 'type': ['null', 'double']},
    ],
}
EVENT = {
    'event_id': 'e1',
    'event_type': 'click',
    'entity_id': 'u1',
    'timestamp': '2026-11-24T10:00:00Z',
    'value': 2.5,
}


def avro_bytes(record) -> bytes:
    out = io.BytesIO()
    fastavro.schemaless_writer(out, fastavro.parse_schema(SCHEMA), record)
    return out.getvalue()


def parse(batch: RawBatch):
    schema = compile_schema(load_model('beam_pipelines.schema:Event'))
    return parse_raw_batch(batch, schema, 'test')


def raw(lines) -> RawBatch:
    return RawBatch('redis://x#s', 'jsonl', list(range(len(lines))), lines=lines)


def test_csv_records_decode_and_bad_ones_become_dead_letters():
    wire = WireFormat('csv', ('event_id', 'event_type', 'entity_id', 'timestamp', 'value'))
    batch = wire.decode_batch(
        raw(
            [b'e1,click,u1,2026-11-24T10:00:00Z,2.5', b'"e2",view,u2,2026-11-24T10:00:01Z,', b'x,y']
        )
    )
    assert batch.records == [
        {**EVENT, 'value': '2.5'},  # CSV carries text: the parser types it
        {
            'event_id': 'e2',
            'event_type': 'view',
            'entity_id': 'u2',
            'timestamp': '2026-11-24T10:00:01Z',
        },
    ]
    parsed, dead = parse(batch)
    assert parsed.table.num_rows == 2
    assert [(d['error_type'], d['payload'], d['source']) for d in dead] == [
        ('csv_decode_error', 'x,y', {'uri': 'redis://x#s', 'record': 2})
    ]


def test_avro_with_a_schema_file():
    wire = WireFormat('avro', avro_schema=json.dumps(SCHEMA))
    batch = wire.decode_batch(raw([avro_bytes(EVENT), b'\xff\xfe']))
    assert batch.records == [EVENT]
    assert [f[0] for f in batch.failures] == ['avro_decode_error']
    _, dead = parse(batch)
    assert dead[0]['payload_encoding'] == 'base64' and dead[0]['payload_format'] == 'avro'


@pytest.fixture
def registry():
    """A schema registry on loopback serving SCHEMA as id 7."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            if self.path != '/schemas/ids/7':
                self.send_error(404)
                return
            body = json.dumps({'schema': json.dumps(SCHEMA)}).encode()
            self.send_response(200)
            self.send_header('Content-Type', 'application/json')
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(('127.0.0.1', 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f'http://127.0.0.1:{server.server_address[1]}'
    server.shutdown()


def test_avro_in_the_registry_wire_format(registry):
    wire = WireFormat('avro', registry_url=registry)
    framed = b'\x00' + struct.pack('>I', 7) + avro_bytes(EVENT)
    unknown = b'\x00' + struct.pack('>I', 8) + avro_bytes(EVENT)
    batch = wire.decode_batch(raw([framed, unknown, avro_bytes(EVENT)]))
    assert batch.records == [EVENT]
    assert batch.positions == [0]
    assert [(f[0], f[3]) for f in batch.failures] == [
        ('avro_decode_error', 1),
        ('avro_decode_error', 2),
    ]


def test_the_flagship_reads_csv_from_a_redis_stream(tmp_path, client, prefix):  # noqa: F811
    stream = f'{prefix}csv'
    for line in (
        b'e1,click,u1,2026-11-24T10:00:00Z,2.5',
        b'e2,click,u1,2026-11-24T10:00:30Z,1',
        b'bad',
    ):
        client.xadd(stream, {'event': line})
    out = tmp_path / 'out'
    code = event_analytics.run(
        [
            '--source',
            'redis_stream',
            '--redis_url',
            REDIS_URL,
            '--stream_name',
            stream,
            '--stop_at_end',
            '--output_dir',
            str(out),
            '--wire_format',
            'csv',
            '--csv_columns',
            'event_id,event_type,entity_id,timestamp,value',
        ]
    )
    counts = json.loads((out / 'run_summary.json').read_text())['counts']
    assert code == 0
    assert (counts['read'], counts['valid'], counts['dead_letter']) == (3, 2, 1)


def test_wire_formats_check_their_settings():
    with pytest.raises(ValueError, match='columns'):
        WireFormat('csv')
    with pytest.raises(ValueError, match='not both'):
        WireFormat('avro')
    with pytest.raises(ValueError, match='json, csv or avro'):
        WireFormat('xml')


def test_avro_record_that_leaves_bytes_over_is_a_dead_letter():
    # Written with another schema (a field added at the end): read with ours, the record would
    # silently drop that field's data.
    wire = WireFormat('avro', avro_schema=json.dumps(SCHEMA))
    batch = wire.decode_batch(raw([avro_bytes(EVENT) + b'\x02x', b'', avro_bytes(EVENT)]))
    assert batch.records == [EVENT]
    assert [(f[0], f[3]) for f in batch.failures] == [
        ('avro_decode_error', 0),
        ('avro_decode_error', 1),
    ]
    assert '2 bytes left after the record' in batch.failures[0][1]
    assert batch.failures[1][1].startswith('not a valid Avro record: an empty message')
