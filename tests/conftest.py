"""Shared fixtures: the default schema, raw batches built from lines, table helpers, a local
S3-compatible server."""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pyarrow as pa
import pytest

from beam_pipelines.columnar.batch import RawBatch
from beam_pipelines.columnar.cleanse import cleanse_table
from beam_pipelines.columnar.parse import parse_raw_batch
from beam_pipelines.columnar.timestamps import TIMESTAMP_TYPE
from beam_pipelines.columnar.validate import split_valid
from beam_pipelines.schema import Event
from beam_pipelines.schema import compile_schema

UTC = dt.UTC
# The credentials the local S3 server (moto) accepts.
S3_KEYS = {
    'aws_access_key_id': 'testing',
    'aws_secret_access_key': 'testing',
    'region_name': 'us-east-1',
}


@pytest.fixture(scope='session')
def schema():
    return compile_schema(Event)


def raw_lines(lines: list, uri: str = 'mem://events.jsonl') -> RawBatch:
    """A JSON Lines raw batch; dict items are encoded, bytes/str items kept as they are."""
    encoded = [
        orjson.dumps(x) if isinstance(x, dict) else x.encode() if isinstance(x, str) else x
        for x in lines
    ]
    offsets, pos = [], 0
    for line in encoded:
        offsets.append(pos)
        pos += len(line) + 1
    return RawBatch(uri, 'jsonl', offsets, lines=encoded)


def raw_block(lines: list, uri: str = 'mem://events.jsonl') -> RawBatch:
    """The same lines as :func:`raw_lines`, as a file reader yields them: one block of text."""
    batch = raw_lines(lines, uri)
    return batch._replace(lines=None, text=b''.join(line + b'\n' for line in batch.lines))


def run_columnar(lines: list, schema, as_block=False) -> tuple[pa.Table | None, list[dict]]:
    """Parse, cleanse and validate one batch without Beam: (valid table, dead letters); the
    lines come as a list (as message sources give them) or ``as_block`` (as files are read)."""
    parsed, dead = parse_raw_batch((raw_block if as_block else raw_lines)(lines), schema, 'test')
    if parsed is None:
        return None, dead
    parsed = parsed._replace(table=cleanse_table(parsed.table, schema, parsed.errors))
    valid, invalid = split_valid(parsed, schema, 'test')
    return valid, dead + invalid


def assert_block_gives_what_lines_give(lines: list, schema) -> None:
    """The same lines parsed as a file block and one by one give the same valid rows and the
    same dead letters, in the same order (processing times aside)."""
    by_lines = run_columnar(lines, schema)
    by_block = run_columnar(lines, schema, as_block=True)
    assert (by_block[0] is None) == (by_lines[0] is None)
    if by_lines[0] is not None:
        assert by_block[0].to_pylist() == by_lines[0].to_pylist()
    assert _timeless(by_block[1]) == _timeless(by_lines[1])


def _timeless(dead: list[dict]) -> list[dict]:
    return [{k: v for k, v in d.items() if k != 'processing_time'} for d in dead]


def events_table(rows: list[tuple]) -> pa.Table:
    """Clean events from (entity_id, event_type, epoch seconds, value) tuples."""
    return pa.table(
        {
            'event_id': [f'e{i}' for i in range(len(rows))],
            'entity_id': [r[0] for r in rows],
            'event_type': [r[1] for r in rows],
            'timestamp': pa.array([round(r[2] * 1e6) for r in rows], pa.int64()).cast(
                TIMESTAMP_TYPE
            ),
            'value': pa.array([r[3] for r in rows], pa.float64()),
        }
    )


def ts(seconds: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(seconds, UTC)


def free_port() -> int:
    """A TCP port on loopback that is free now."""
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def wait_for_port(port: int, timeout_secs: float = 60.0) -> bool:
    """Waits until something listens on ``127.0.0.1:port``; False on timeout."""
    deadline = time.monotonic() + timeout_secs
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(('127.0.0.1', port)) == 0:
                return True
        time.sleep(0.2)
    return False


@contextlib.contextmanager
def local_server(argv_for_port, timeout_secs: float = 60.0, env: dict | None = None):
    """Starts a server process on a free loopback port; yields the port; stops it after."""
    port = free_port()
    argv = argv_for_port(port)
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    try:
        if not wait_for_port(port, timeout_secs):
            pytest.fail(f'{argv[0]} did not listen on port {port} within {timeout_secs} s')
        yield port
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def service_unavailable(what: str, exc: Exception):
    """A test's server is not there: fail under CI (where the services must run), else skip."""
    if os.environ.get('CI'):
        pytest.fail(f'{what} is required under CI: {exc}')
    pytest.skip(f'no {what}: {exc}')


@pytest.fixture(scope='module')
def s3_endpoint():
    """A local S3-compatible server (moto in server mode on loopback): its endpoint URL."""
    server = str(Path(sys.executable).parent / 'moto_server')
    with local_server(lambda port: [server, '-H', '127.0.0.1', '-p', str(port)]) as port:
        yield f'http://127.0.0.1:{port}'
